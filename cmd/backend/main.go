// Command backend is the daemon (`backend serve`) and its command-line
// client (every other command). See README.md and DESIGN §9 for the
// command vocabulary, which is a contract for scripts.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// linkVersion may be set at build time with -ldflags "-X
// main.linkVersion=v1.2.3"; otherwise the version comes from the Go build
// information (package buildinfo).
var linkVersion string

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Exit codes of DESIGN §9.
const (
	exitOK          = 0
	exitFailed      = 1 // a refused or failed request
	exitUsage       = 2 // wrong usage
	exitUnreachable = 3 // the daemon cannot be reached
)

// run executes one command line and returns the process exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return newApp(stdin, stdout, stderr).execute(args)
}

// execute runs args and maps the outcome to an exit code, printing errors
// as DESIGN §9 says.
func (a *app) execute(args []string) int {
	root := a.rootCommand()
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	code := exitFailed
	var ue *usageError
	var ce *unreachableError
	switch {
	case errors.As(err, &ce):
		code = exitUnreachable
	case errors.As(err, &ue), isCobraUsage(err):
		code = exitUsage
	}
	a.printError(err, code, cmd)
	return code
}

// usageError marks wrong usage (exit code 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return &usageError{fmt.Errorf(format, a...)} }
