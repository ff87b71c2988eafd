package pluginhost

import (
	"debug/buildinfo"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"

	sdk "example.org/backend/plugin-sdk"
)

// SelfCommand returns a Spec.Cmd for the first-party plugin pluginName:
// its own executable backend-plugin-NAME when one is installed beside the
// daemon's executable and is safe to run (see Beside: a small binary, so a
// plugin process does not carry the daemon's code and package
// initialisations), else the daemon's own binary re-executed as
// `EXECUTABLE SUBCOMMAND PLUGIN` (e.g. `backend __plugin microblog`), whose
// hidden subcommand calls ServeBuiltin. First-party plugins thus run out of
// process without a separate install. The choice is made at each start.
func SelfCommand(subcommand, pluginName string) func() *exec.Cmd {
	return func() *exec.Cmd {
		exe, err := os.Executable()
		if err != nil {
			exe = os.Args[0]
		}
		if path, reason := Beside(exe, pluginName); path != "" && reason == "" {
			return exec.Command(path)
		}
		return exec.Command(exe, subcommand, pluginName)
	}
}

// Beside looks for the standalone executable of the first-party plugin
// name in the directory of the daemon's executable exe (symlinks
// resolved): the file backend-plugin-NAME there. It returns its path ("" if
// there is none) and why it must not be run ("" if it may): it must be a
// regular executable file owned by root or the daemon's user and not
// writable by group or others, in a directory likewise (checkOwnership), so
// that nobody but its owner could have put or changed it there; and it
// must come from the daemon's build (buildMismatch), so that a plugin left
// from an older install does not parse with an older parser.
func Beside(exe, name string) (path, reason string) {
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	dir := filepath.Dir(exe)
	path = filepath.Join(dir, ExecutablePrefix+name)
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", ""
	case err != nil:
		return path, err.Error()
	case !info.Mode().IsRegular():
		return path, "not a regular file"
	case info.Mode().Perm()&0o111 == 0:
		return path, "not executable"
	}
	if reason := checkOwnership(dir, path, ""); reason != "" {
		return path, reason
	}
	self, err := buildinfo.ReadFile(exe)
	if err != nil {
		return path, "the daemon's build cannot be read: " + err.Error()
	}
	plugin, err := buildinfo.ReadFile(path)
	if err != nil {
		return path, "not a Go executable: " + err.Error()
	}
	return path, buildMismatch(self, plugin)
}

// buildMismatch says how the build of a first-party plugin's executable
// differs from the daemon's ("" when it does not): another Go release, or,
// when either carries version-control stamps (go build in a git checkout),
// another revision or one modified differently. Builds without stamps
// (-buildvcs=false) are told apart by the Go release only.
func buildMismatch(daemon, plugin *debug.BuildInfo) string {
	if daemon.GoVersion != plugin.GoVersion {
		return fmt.Sprintf("built with %s, the daemon with %s: install the plugin built with the daemon", plugin.GoVersion, daemon.GoVersion)
	}
	d, p := vcsStamps(daemon), vcsStamps(plugin)
	if d != p && (d != "" || p != "") {
		return fmt.Sprintf("built from %s, the daemon from %s: install the plugin built with the daemon", orUnknown(p), orUnknown(d))
	}
	return ""
}

// vcsStamps is a build's revision and modified flag ("" without stamps).
func vcsStamps(bi *debug.BuildInfo) string {
	var rev, mod string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			mod = s.Value
		}
	}
	if rev == "" {
		return ""
	}
	if mod == "true" {
		return "revision " + rev + " (modified)"
	}
	return "revision " + rev
}

func orUnknown(s string) string {
	if s == "" {
		return "an unstamped build"
	}
	return s
}

// BuiltinSpecs returns the specs of the first-party plugins of registry,
// each run by SelfCommand (its own executable beside the daemon's, or the
// daemon re-executed with subcommand), sorted by name.
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
