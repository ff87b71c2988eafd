package pluginhost

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"

	sdk "example.org/backend/plugin-sdk"
)

// SelfCommand returns a Spec.Cmd that re-executes the daemon's own binary as
// `EXECUTABLE SUBCOMMAND PLUGIN` (e.g. `backend __plugin microblog`); the
// hidden subcommand calls ServeBuiltin. First-party plugins thus run out of
// process without a separate install.
func SelfCommand(subcommand, pluginName string) func() *exec.Cmd {
	return func() *exec.Cmd {
		exe, err := os.Executable()
		if err != nil {
			exe = os.Args[0]
		}
		return exec.Command(exe, subcommand, pluginName)
	}
}

// BuiltinSpecs returns the specs of the first-party plugins of registry,
// each re-executing the daemon with subcommand, sorted by name.
func BuiltinSpecs(subcommand string, registry map[string]*sdk.Plugin) []Spec {
	specs := make([]Spec, 0, len(registry))
	for name := range registry {
		specs = append(specs, Spec{Name: name, Cmd: SelfCommand(subcommand, name), FirstParty: true})
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	return specs
}

// ServeBuiltin serves the first-party plugin name of registry in this
// process, for the hidden subcommand: it returns when the daemon closes the
// plugin, or an error if the name is unknown or the process was not started
// by the daemon. Nothing may be written to stdout before it.
func ServeBuiltin(name string, registry map[string]*sdk.Plugin) error {
	p, ok := registry[name]
	if !ok {
		known := make([]string, 0, len(registry))
		for n := range registry {
			known = append(known, n)
		}
		sort.Strings(known)
		return fmt.Errorf("unknown built-in plugin %q (built in: %s)", name, strings.Join(known, ", "))
	}
	return sdk.Serve(p)
}
