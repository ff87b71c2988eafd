// Command backend-plugin-pep is the PEP data plugin (XEP-0402 bookmarks,
// XEP-0084 avatar metadata, XEP-0292 vCard4, XEP-0172 nicknames) as a
// standalone executable (the daemon also runs it built in, by re-executing
// itself). Install it in a plugin directory; the daemon starts it.
package main

import (
	"fmt"
	"os"

	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/plugins/pep"
)

func main() {
	if err := sdk.Serve(pep.New()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
