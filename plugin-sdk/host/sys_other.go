//go:build !linux

package host

import "os/exec"

// setParentDeathSignal does nothing outside Linux; the SDK's parent watchdog
// ends orphaned plugins there.
func setParentDeathSignal(*exec.Cmd) {}
