package archcheck

import (
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestRepository enforces the rules on this repository and on plugin-sdk.
func TestRepository(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	pkgs, err := List(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages in %s", len(pkgs), root)
	}
	vs, err := Check("example.org/backend", pkgs)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		t.Errorf("import rule broken: %s", v)
	}
	sdk, err := List(filepath.Join(root, "plugin-sdk"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range CheckSDK("example.org/backend", sdk) {
		t.Errorf("import rule broken: %s", v)
	}
}

// TestRejectsViolations runs the checker on a fixture module that breaks
// every rule; each must be reported.
func TestRejectsViolations(t *testing.T) {
	pkgs, err := List("testdata/bad")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := Check("example.org/bad", pkgs)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vs {
		got = append(got, v.String())
	}
	sort.Strings(got)
	want := []string{
		"core must not import plugins",
		"triggers must not import the rest of the module",
		"plugin alpha imports plugin beta without declaring it",
		"form a cycle: alpha → gamma → alpha",
	}
	joined := strings.Join(got, "\n")
	for _, w := range want {
		if !strings.Contains(joined, w) {
			t.Errorf("violation %q not reported; got:\n%s", w, joined)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d violations, want %d:\n%s", len(got), len(want), joined)
	}
	sdkVs := CheckSDK("example.org/backend", []Package{{ImportPath: "example.org/backend/plugin-sdk/x", Imports: []string{"example.org/backend/core"}}})
	if len(sdkVs) != 1 {
		t.Errorf("CheckSDK did not reject an SDK package importing the daemon: %v", sdkVs)
	}
}
