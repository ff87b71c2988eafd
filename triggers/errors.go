package triggers

import (
	"errors"
	"fmt"
	"runtime/debug"
)

var (
	// ErrDuplicateBinding is returned by Attach when an owner binds the same
	// point twice (in one call or across calls).
	ErrDuplicateBinding = errors.New("duplicate binding")
	// ErrInvalidBinding is returned by Attach for a nil binding, a nil point
	// or a nil handler.
	ErrInvalidBinding = errors.New("invalid binding")
	// ErrInvalidAction is wrapped in the error Run returns when a handler
	// returns a Decision whose Action is not one of the four known actions.
	ErrInvalidAction = errors.New("invalid action")
)

// HandlerError is the error Run or Notify returns for a handler that
// returned an error: it names the point and the owner of the handler.
// Its message is "triggers: <point id>/<owner>: <err>"; errors.Is and
// errors.As see through it.
type HandlerError struct {
	Point string // id of the point or event
	Owner string // owner of the handler
	Err   error  // what the handler returned
}

// Error implements error.
func (e *HandlerError) Error() string {
	return "triggers: " + e.Point + "/" + e.Owner + ": " + e.Err.Error()
}

// Unwrap returns the handler's error.
func (e *HandlerError) Unwrap() error { return e.Err }

// PanicError is the error Run or Notify returns for a handler that panicked.
// The panic is recovered: it never crosses the bus.
type PanicError struct {
	Point string // id of the point or event
	Owner string // owner of the handler
	Value any    // the value given to panic
	Stack []byte // stack of the panicking goroutine, as from debug.Stack
}

// Error implements error: "triggers: <point id>/<owner>: panic: <value>".
func (e *PanicError) Error() string {
	return fmt.Sprintf("triggers: %s/%s: panic: %v", e.Point, e.Owner, e.Value)
}

// Unwrap returns the panic value when it is an error (e.g. a runtime.Error),
// nil otherwise.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

func newPanicError(point, owner string, v any) *PanicError {
	return &PanicError{Point: point, Owner: owner, Value: v, Stack: debug.Stack()}
}
