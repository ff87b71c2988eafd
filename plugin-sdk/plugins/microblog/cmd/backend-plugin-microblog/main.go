// Command backend-plugin-microblog is the XEP-0277 microblog plugin as a
// standalone executable (the daemon also runs it built in, by re-executing
// itself). Install it in a plugin directory; the daemon starts it.
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
