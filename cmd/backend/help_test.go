package main

import (
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryCommandHasExamples: every command people run shows an
// Example: section in its help.
func TestEveryCommandHasExamples(t *testing.T) {
	root := newApp(strings.NewReader(""), io.Discard, io.Discard).rootCommand()
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		if !c.HasSubCommands() {
			n++
			if strings.TrimSpace(c.Example) == "" {
				t.Errorf("%s has no Example", c.CommandPath())
			}
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	if n < 40 {
		t.Errorf("only %d commands found", n)
	}
	e := newEnv(t)
	out, _, code := e.cli(t, "pubsub", "items", "--help")
	if code != exitOK || !strings.Contains(out, "Examples:\n  backend pubsub items -p alice") {
		t.Errorf("help of pubsub items: %d\n%s", code, out)
	}
}

// TestUsageErrorsNameTheHelp: a usage error names the help of the command
// it happened in, and an unknown command gets a suggestion.
func TestUsageErrorsNameTheHelp(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"pubsub", "items", "-p", "a", "-n", "b", "--bogus"}, []string{"unknown flag: --bogus", "Run 'backend pubsub items --help' for usage."}},
		{[]string{"pubsub", "itmes"}, []string{`unknown command "itmes" for "backend pubsub": did you mean items?`, "Run 'backend pubsub --help' for usage."}},
		{[]string{"statsu"}, []string{`did you mean status?`, "Run 'backend --help' for usage."}},
		{[]string{"profile", "lsit"}, []string{`did you mean list or set?`, "Run 'backend profile --help' for usage."}},
		{[]string{"pubsub", "node"}, []string{`missing command for "backend pubsub node"`, "Run 'backend pubsub node --help' for usage."}},
		{[]string{"profile", "show"}, []string{"accepts 1 arg(s)", "Run 'backend profile show --help' for usage."}},
		{[]string{"cache", "sync", "-p", "alice"}, []string{`required flag(s) "node" not set`, "Run 'backend cache sync --help' for usage."}},
	} {
		_, stderr, code := e.cli(t, tc.args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d", tc.args, code)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%v: stderr %q lacks %q", tc.args, stderr, w)
			}
		}
	}
	// With no command at all: the help, exit 0.
	if out, _, code := e.cli(t); code != exitOK || !strings.Contains(out, "Available Commands:") {
		t.Errorf("backend alone: %d %q", code, out)
	}
}
