package testsvc

import "testing"

// Uses records that the running test talks to a real server (e.g.
// "postgres", "prosody", "ejabberd"). The test script counts these lines to
// print how many tests ran against each server and to fail in CI when a
// suite ran none.
func Uses(t testing.TB, server string) {
	t.Helper()
	t.Logf("uses-server: %s", server)
}
