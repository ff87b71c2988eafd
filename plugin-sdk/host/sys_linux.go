//go:build linux

package host

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal makes the kernel SIGKILL the plugin when the thread
// that started it dies. Go never ends an OS thread unless a goroutine exits
// while locked to it (golang/go#27505), so do not start plugins from a
// goroutine that called runtime.LockOSThread; the SDK's parent watchdog
// covers that case too.
func setParentDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
