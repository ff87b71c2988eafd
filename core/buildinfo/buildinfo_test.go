package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20260102150405-abcdef123456+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abcdef1234567890abcdef1234567890abcdef12"},
			{Key: "vcs.time", Value: "2026-01-02T15:04:05Z"}, {Key: "vcs.modified", Value: "true"}}}
	in := fromBuildInfo(bi, "")
	if in.Version != "v0.0.0-20260102150405-abcdef123456+dirty" || in.Revision != "abcdef1234567890abcdef1234567890abcdef12" ||
		!in.Dirty || in.Time != "2026-01-02T15:04:05Z" || in.GoVersion != "go1.26.8" || in.ShortRevision() != "abcdef123456" {
		t.Errorf("%+v", in)
	}
	if s := in.String(); !strings.HasPrefix(s, "v0.0.0-20260102150405-abcdef123456+dirty (revision abcdef123456, modified work tree, go1.26.8, ") {
		t.Errorf("String() = %q", s)
	}
	// A link-time version wins; a build without VCS data is "devel".
	if in := fromBuildInfo(bi, "v1.2.3"); in.Version != "v1.2.3" || !in.Dirty {
		t.Errorf("override: %+v", in)
	}
	if in := fromBuildInfo(&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, ""); in.Version != Devel || in.Revision != "" || in.Dirty {
		t.Errorf("no vcs: %+v", in)
	}
	if in := fromBuildInfo(nil, ""); in.Version != Devel || in.GoVersion == "" || in.Platform == "" {
		t.Errorf("no build info: %+v", in)
	}
}
