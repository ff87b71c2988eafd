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
	"syscall"
)

// ExecutablePrefix starts the file name of every third-party plugin
// executable; the rest of the name is the plugin's name.
const ExecutablePrefix = "backend-plugin-"

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Refused is a plugin file Discover does not run, and why.
type Refused struct {
	Name, Path, Reason string
}

// Discover lists the third-party plugins in dirs: regular executable files
// named backend-plugin-NAME (NAME lowercase letters, digits, '-' and '_').
// A directory that does not exist is skipped; when two directories hold the
// same name, the first directory wins. pins maps plugin names to the sha256
// (hex) their executable must have. A file is run only when it and its
// directory (after symlinks) are safe from other users: see checkOwnership.
// Files that are not used are logged as warnings with path and reason;
// those refused for their ownership or mode are also returned (shown as
// refused by `plugins list`). The specs are sorted by name.
func Discover(dirs []string, pins map[string]string, log *slog.Logger) ([]Spec, []Refused, error) {
	if log == nil {
		log = slog.Default()
	}
	found := map[string]Spec{}
	var refused []Refused
	self, _ := os.Executable()
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read plugin directory: %w", err)
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
			}
			if reason := checkOwnership(dir, path, self); reason != "" {
				log.Warn("refusing plugin file: "+reason, "path", path, "plugin", name)
				refused = append(refused, Refused{Name: name, Path: path, Reason: reason})
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
	return specs, refused, nil
}

// checkOwnership says why path (listed in dir) must not be run, or "": the
// file (symlinks resolved) must be owned by root or the daemon's user and
// not writable by group or others; the directory it is listed in and the
// one it resolves to likewise, except a root-owned sticky directory (such
// as /tmp), accepted because the file itself must then be owned by root or
// the daemon's user. The daemon's own executable is exempt.
func checkOwnership(dir, path, self string) string {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "cannot resolve: " + err.Error()
	}
	if self != "" {
		if s, err := filepath.EvalSymlinks(self); err == nil && s == real {
			return ""
		}
	}
	uid := uint32(os.Geteuid())
	st, err := os.Stat(real)
	if err != nil {
		return err.Error()
	}
	owner := fileOwner(st)
	if owner != 0 && owner != uid {
		return fmt.Sprintf("owned by uid %d, not by root or the daemon's user (uid %d)", owner, uid)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Sprintf("writable by group or others (mode %o)", st.Mode().Perm())
	}
	dirs := []string{dir}
	if rd := filepath.Dir(real); rd != dir {
		dirs = append(dirs, rd)
	}
	for _, d := range dirs {
		ds, err := os.Stat(d)
		if err != nil {
			return err.Error()
		}
		downer := fileOwner(ds)
		sticky := ds.Mode()&fs.ModeSticky != 0
		switch {
		case downer != 0 && downer != uid:
			return fmt.Sprintf("its directory %s is owned by uid %d, not by root or the daemon's user (uid %d)", d, downer, uid)
		case ds.Mode().Perm()&0o022 != 0 && !(sticky && downer == 0):
			return fmt.Sprintf("its directory %s is writable by group or others (mode %o): another user could replace the file", d, ds.Mode().Perm())
		}
	}
	return ""
}

func fileOwner(st fs.FileInfo) uint32 {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Uid
	}
	return ^uint32(0)
}

func executable(path string) func() *exec.Cmd {
	return func() *exec.Cmd { return exec.Command(path) }
}
