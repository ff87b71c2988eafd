package pluginhost

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// ExecutablePrefix starts the file name of every third-party plugin
// executable; the rest of the name is the plugin's name.
const ExecutablePrefix = "backend-plugin-"

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Discover lists the third-party plugins in dirs: regular executable files
// named backend-plugin-NAME (NAME lowercase letters, digits, '-' and '_').
// A directory that does not exist is skipped; when two directories hold the
// same name, the first directory wins. pins maps plugin names to the sha256
// (hex) their executable must have. Files that are not used (not executable,
// writable by others, a bad name, a duplicate) are logged as warnings. The
// specs are sorted by name.
func Discover(dirs []string, pins map[string]string, log *slog.Logger) ([]Spec, error) {
	if log == nil {
		log = slog.Default()
	}
	found := map[string]Spec{}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read plugin directory: %w", err)
		}
		for _, e := range entries {
			name, ok := strings.CutPrefix(e.Name(), ExecutablePrefix)
			if !ok {
				continue
			}
			path := filepath.Join(dir, e.Name())
			if !nameRE.MatchString(name) {
				log.Warn("ignoring plugin file: the name after "+ExecutablePrefix+" must be lowercase letters, digits, '-' or '_'", "path", path)
				continue
			}
			info, err := os.Stat(path) // follows symlinks
			if err != nil {
				log.Warn("ignoring plugin file", "path", path, "error", err)
				continue
			}
			switch {
			case !info.Mode().IsRegular():
				log.Warn("ignoring plugin file: not a regular file", "path", path)
				continue
			case info.Mode().Perm()&0o111 == 0:
				log.Warn("ignoring plugin file: not executable", "path", path)
				continue
			case info.Mode().Perm()&0o002 != 0:
				log.Warn("ignoring plugin file: writable by any user", "path", path)
				continue
			}
			if prev, dup := found[name]; dup {
				log.Warn("ignoring plugin file: a plugin of that name was found first", "path", path, "used", prev.Cmd().Path)
				continue
			}
			found[name] = Spec{Name: name, Cmd: executable(path), SHA256: pins[name]}
		}
	}
	for name := range pins {
		if _, ok := found[name]; !ok {
			log.Warn("a sha256 pin names a plugin that is not installed", "plugin", name)
		}
	}
	specs := make([]Spec, 0, len(found))
	for _, sp := range found {
		specs = append(specs, sp)
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	return specs, nil
}

func executable(path string) func() *exec.Cmd {
	return func() *exec.Cmd { return exec.Command(path) }
}
