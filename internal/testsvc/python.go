package testsvc

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// PythonInterpreter is the interpreter of Python plugins: Debian's, with
// python3-grpcio, python3-protobuf and python3-cryptography (the python3
// first on PATH may be another build without them).
const PythonInterpreter = "/usr/bin/python3"

var (
	pythonOnce sync.Once
	pythonErr  error
)

// Python returns PythonInterpreter once it imports the Python plugin SDK's
// runtime modules, and records that the test uses it ("python", see Uses).
// Without them the test skips, and fails under CI=true (RequireOrSkip).
func Python(t testing.TB) string {
	t.Helper()
	pythonOnce.Do(func() {
		out, err := exec.Command(PythonInterpreter, "-c", "import grpc, google.protobuf, cryptography").CombinedOutput()
		if err != nil {
			pythonErr = fmt.Errorf("%w: %s cannot import grpc, google.protobuf and cryptography (apt-get install -y python3-grpcio python3-protobuf python3-cryptography): %v %s",
				ErrNotInstalled, PythonInterpreter, err, bytes.TrimSpace(out))
		}
	})
	RequireOrSkip(t, pythonErr)
	Uses(t, "python")
	return PythonInterpreter
}

// PackPythonPlugin packs a Python plugin script of the repository (a path
// relative to the repository root, e.g.
// "plugin-sdk/python/tests/testplugin.py") with the SDK's
// backend-plugin-pack into dir/backend-plugin-NAME, as a user installs
// one, and returns the file's path.
func PackPythonPlugin(t testing.TB, script, dir, name string) string {
	t.Helper()
	py := Python(t)
	_, here, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(here), "..", "..")
	out := filepath.Join(dir, "backend-plugin-"+name)
	cmd := exec.Command(py, filepath.Join(root, "plugin-sdk", "python", "backend-plugin-pack"), filepath.Join(root, script), "-o", out)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PYTHONDONTWRITEBYTECODE=1"}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pack %s: %v\n%s", script, err, b)
	}
	return out
}
