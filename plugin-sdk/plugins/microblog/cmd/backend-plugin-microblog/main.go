// Command backend-plugin-microblog is the XEP-0277 microblog plugin as a
// standalone executable. Installed beside the daemon's executable (same
// directory, owned by root or the daemon's user, not writable by group or
// others), the daemon runs it instead of re-executing itself: a 20 MB
// process instead of one of the daemon's 60 MB binary. Build it from the
// same checkout as the daemon:
//
//	(cd plugin-sdk && go build -o ../bin/backend-plugin-microblog ./plugins/microblog/cmd/backend-plugin-microblog)
package main

import (
	"fmt"
	"os"

	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/plugins/microblog"
)

func main() {
	if err := sdk.Serve(microblog.New()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
