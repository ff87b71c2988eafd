// Package buildinfo says which build of the daemon is running: the module
// version, the VCS revision and dirty flag, and the Go version, read from
// the build information the Go toolchain embeds in every binary (go build
// stamps the version from the git tag or commit since Go 1.24). It is what
// `backend version`, `backend --version`, `backend status` and the
// backend_build_info metric show.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Devel is the version of a build without a version: `go test` binaries,
// and builds outside a VCS checkout (`go build -buildvcs=false`).
const Devel = "devel"

// Info describes one build.
type Info struct {
	// Version is the module version: a release tag (v1.2.0), a
	// pseudo-version naming the commit (v0.0.0-20260102150405-abcdef123456,
	// with +dirty when the work tree was modified), the value given with
	// -ldflags "-X main.version=…", or Devel.
	Version string `json:"version"`
	// Revision is the VCS commit the binary was built from ("" unknown).
	Revision string `json:"revision"`
	// Time is the commit time of Revision, RFC 3339 ("" unknown).
	Time string `json:"vcs_time"`
	// Dirty reports a build from a modified work tree.
	Dirty bool `json:"dirty"`
	// GoVersion is the Go toolchain (go1.26.8).
	GoVersion string `json:"go_version"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform"`
}

// Read returns the running binary's build information. override, when not
// empty (a version given at link time), replaces the module version.
func Read(override string) Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return fromBuildInfo(nil, override)
	}
	return fromBuildInfo(bi, override)
}

func fromBuildInfo(bi *debug.BuildInfo, override string) Info {
	in := Info{Version: Devel, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			in.Version = v
		}
		if bi.GoVersion != "" {
			in.GoVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Revision = s.Value
			case "vcs.time":
				in.Time = s.Value
			case "vcs.modified":
				in.Dirty = s.Value == "true"
			}
		}
	}
	if override != "" {
		in.Version = override
	}
	if in.Dirty && in.Version == Devel {
		in.Version += "+dirty"
	}
	return in
}

// ShortRevision is the first 12 digits of the revision ("" unknown).
func (in Info) ShortRevision() string {
	if len(in.Revision) > 12 {
		return in.Revision[:12]
	}
	return in.Revision
}

// String is the one-line form: "v1.2.0 (revision abcdef123456, dirty,
// go1.26.8, linux/amd64)".
func (in Info) String() string {
	var parts []string
	if r := in.ShortRevision(); r != "" {
		parts = append(parts, "revision "+r)
	}
	if in.Dirty {
		parts = append(parts, "modified work tree")
	}
	parts = append(parts, in.GoVersion, in.Platform)
	return fmt.Sprintf("%s (%s)", in.Version, strings.Join(parts, ", "))
}
