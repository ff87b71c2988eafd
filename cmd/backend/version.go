package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/core/buildinfo"
)

// build is this binary's build information.
func build() buildinfo.Info { return buildinfo.Read(linkVersion) }

// buildJSON is the JSON shape of one build in `backend version` and
// `backend status` ("build").
type buildJSON struct {
	Version   string  `json:"version"`
	Revision  *string `json:"revision"`
	VCSTime   *string `json:"vcs_time"`
	Dirty     bool    `json:"dirty"`
	GoVersion string  `json:"go_version"`
	Platform  string  `json:"platform"`
}

func buildOut(in buildinfo.Info) buildJSON {
	return buildJSON{Version: in.Version, Revision: nullableStr(in.Revision), VCSTime: nullableStr(in.Time), Dirty: in.Dirty,
		GoVersion: in.GoVersion, Platform: in.Platform}
}

func buildFromAPI(b *backendv2.BuildInfo) *buildJSON {
	if b == nil {
		return nil
	}
	j := buildOut(buildinfo.Info{Version: b.GetVersion(), Revision: b.GetRevision(), Time: b.GetVcsTime(), Dirty: b.GetDirty(),
		GoVersion: b.GetGoVersion(), Platform: b.GetPlatform()})
	return &j
}

func nullableStr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the version of this binary and of the running daemon",
		Long: `Show the build of this binary (module version, VCS revision, modified work
tree, Go version, platform) read from its Go build information, and the
daemon's when one answers on the socket (a daemon that does not answer is
not an error here).
With -o json: {"version","revision","vcs_time","dirty","go_version","platform",
"daemon":{…the same keys…}|null}.`,
		Example: `  backend version
  backend version -o json | jq -r .daemon.version`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := struct {
				buildJSON
				Daemon *buildJSON `json:"daemon"`
			}{buildJSON: buildOut(build())}
			if c, err := a.dial(); err == nil {
				ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
				res, err := c.daemon().Status(ctx, connect.NewRequest(&backendv2.StatusRequest{}))
				cancel()
				if err == nil {
					out.Daemon = buildFromAPI(res.Msg.GetBuild())
					if out.Daemon == nil { // an older daemon
						out.Daemon = &buildJSON{Version: res.Msg.GetVersion()}
					}
				}
			}
			if a.jsonOutput() {
				return a.printJSON(out)
			}
			w := tabwriter.NewWriter(a.stdout, 0, 2, 2, ' ', 0)
			printBuild(w, "", out.buildJSON)
			if out.Daemon != nil {
				fmt.Fprintln(w)
				printBuild(w, "daemon ", *out.Daemon)
			} else {
				fmt.Fprintf(w, "\ndaemon\tnot reachable at %s\n", a.socketPath())
			}
			return w.Flush()
		},
	}
}

func printBuild(w *tabwriter.Writer, prefix string, b buildJSON) {
	fmt.Fprintf(w, "%sversion\t%s\n", prefix, b.Version)
	fmt.Fprintf(w, "%srevision\t%s\n", prefix, strOr(b.Revision))
	if b.VCSTime != nil {
		fmt.Fprintf(w, "%scommitted\t%s\n", prefix, *b.VCSTime)
	}
	fmt.Fprintf(w, "%smodified\t%t\n", prefix, b.Dirty)
	if b.GoVersion != "" {
		fmt.Fprintf(w, "%sgo\t%s %s\n", prefix, b.GoVersion, b.Platform)
	}
}
