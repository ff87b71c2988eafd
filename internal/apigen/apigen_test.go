// Package apigen holds the test that keeps the committed API code in step
// with proto/: it regenerates into a temporary directory with Debian's
// protoc and the generator versions pinned in go.mod, and fails on any
// difference.
package apigen

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestGeneratedAPIIsCurrent(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("protoc is missing (apt-get install -y protobuf-compiler)")
		}
		t.Skip("protoc is missing (apt-get install -y protobuf-compiler)")
	}
	root, _ := filepath.Abs("../..")
	out := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(root, "scripts/genproto.sh"), out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("genproto: %v\n%s", err, b)
	}
	seen := map[string]bool{}
	filepath.WalkDir(filepath.Join(out, "api"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		seen[rel] = true
		want, _ := os.ReadFile(p)
		got, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Errorf("%s is generated but not committed (run scripts/genproto.sh)", rel)
			return nil
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what proto/ generates (run scripts/genproto.sh)", rel)
		}
		return nil
	})
	filepath.WalkDir(filepath.Join(root, "api"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".go" {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if !seen[rel] {
			t.Errorf("%s is committed but no longer generated from proto/", rel)
		}
		return nil
	})
	if len(seen) == 0 {
		t.Fatal("genproto generated nothing")
	}
}
