package triggers

import "strconv"

// Priority orders the handlers of a point: higher values run first.
// Any int is allowed; the named bands below are conventions.
type Priority int

// Named priority bands. Use them (or an offset from them, e.g. PriorityCache+1)
// rather than bare numbers, so that plugins keep a readable relative order.
const (
	// PriorityFirst is for handlers that must see a request before anybody
	// else (access control, request rewriting).
	PriorityFirst Priority = 1000
	// PriorityCache is the band of caches that may answer a request
	// instead of the network (the pubsub cache).
	PriorityCache Priority = 100
	// PriorityDefault is the priority of an ordinary handler.
	PriorityDefault Priority = 0
	// PriorityLast is for handlers that must run after everybody else.
	PriorityLast Priority = -1000
)

// Action is what an interceptor decided.
type Action uint8

// The decisions an interceptor can take. The zero value is ActionContinue.
const (
	// ActionContinue lets the next handler run.
	ActionContinue Action = iota
	// ActionCancel stops the workflow: the caller must not perform the action.
	ActionCancel
	// ActionAnswer stops with a result (short-circuit, e.g. a cache hit).
	ActionAnswer
	// ActionSkipRest skips the remaining handlers; the workflow continues normally.
	ActionSkipRest
)

// String returns the lowercase name of the action ("continue", "cancel",
// "answer", "skip-rest"), or "Action(n)" for an unknown value.
func (a Action) String() string {
	switch a {
	case ActionContinue:
		return "continue"
	case ActionCancel:
		return "cancel"
	case ActionAnswer:
		return "answer"
	case ActionSkipRest:
		return "skip-rest"
	default:
		return "Action(" + strconv.Itoa(int(a)) + ")"
	}
}

// Decision is what an interceptor returns: an action, plus a result when the
// action is ActionAnswer (Result is ignored otherwise). The zero value is
// Continue.
type Decision[Res any] struct {
	Action Action
	Result Res
}

// Continue lets the next handler run.
func Continue[Res any]() Decision[Res] { return Decision[Res]{Action: ActionContinue} }

// Cancel stops the chain; the caller must not perform the action.
func Cancel[Res any]() Decision[Res] { return Decision[Res]{Action: ActionCancel} }

// Answer stops the chain with r as the result of the operation; the caller
// uses r instead of performing the action (a cache hit).
func Answer[Res any](r Res) Decision[Res] { return Decision[Res]{Action: ActionAnswer, Result: r} }

// SkipRest stops the chain; the caller performs the action normally.
func SkipRest[Res any]() Decision[Res] { return Decision[Res]{Action: ActionSkipRest} }

// Outcome is the result of Run.
type Outcome[Res any] struct {
	// Result is set when Action == ActionAnswer, zero otherwise.
	Result Res
	// Action is the decision that ended the chain: ActionContinue when every
	// handler continued (or none is registered), ActionCancel, ActionAnswer
	// or ActionSkipRest.
	Action Action
	// By is the owner of the handler that cancelled, answered or skipped
	// ("" when Action is ActionContinue).
	By string
}

// Answered reports whether a handler answered: the caller must use Result
// instead of performing the action.
func (o Outcome[Res]) Answered() bool { return o.Action == ActionAnswer }

// Cancelled reports whether a handler cancelled: the caller must not perform
// the action.
func (o Outcome[Res]) Cancelled() bool { return o.Action == ActionCancel }

// Proceed reports whether the caller should perform the action itself:
// nobody answered or cancelled (every handler continued, or one skipped the
// rest).
func (o Outcome[Res]) Proceed() bool {
	return o.Action == ActionContinue || o.Action == ActionSkipRest
}
