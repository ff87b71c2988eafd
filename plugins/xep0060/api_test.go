package xep0060

import (
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"example.org/backend/core"
)

// TestAPIErrorNamesTheProfile: the advice to connect a profile names it,
// whoever said it was not connected.
func TestAPIErrorNamesTheProfile(t *testing.T) {
	for err, want := range map[error]string{
		core.NotConnected("alice"): "`backend profile connect alice`",
		fmt.Errorf("sync: %w", fmt.Errorf("profile bob.2: %w", core.ErrNotConnected)): "`backend profile connect bob.2`",
		core.ErrNotConnected: "`backend profile connect PROFILE`",
	} {
		got := APIError(err)
		if connect.CodeOf(got) != connect.CodeFailedPrecondition || !strings.Contains(got.Error(), want) || strings.Contains(got.Error(), "NAME") {
			t.Errorf("APIError(%v) = %v, want %s", err, got, want)
		}
	}
}
