// Command testsummary reads `go test -json` output on stdin and prints, per
// package, how many tests passed, failed and were skipped; how many tests
// used each real server (tests announce it with a line "uses-server: NAME",
// see internal/testsvc.Uses); and a closing "N passed, N failed, N skipped"
// line. It exits non-zero when a test failed, when no test ran, or — with
// -strict (CI) — when a test was skipped or a -require'd server was used by
// no test.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type counts struct{ pass, fail, skip int }

func main() {
	strict := flag.Bool("strict", false, "fail when a test was skipped (CI)")
	var require multiFlag
	flag.Var(&require, "require", "a server that at least one test must use (repeatable)")
	flag.Parse()
	os.Exit(summarise(os.Stdin, os.Stdout, *strict, require))
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func summarise(in io.Reader, out io.Writer, strict bool, require []string) int {
	pkgs := map[string]*counts{}
	servers := map[string]map[string]bool{} // server → set of tests
	var skipped, failed []string
	logs := map[string]*strings.Builder{} // package \x00 test → output so far
	buildFailed := false
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintln(out, string(line)) // build output and the like
			if strings.Contains(string(line), "[build failed]") || strings.HasPrefix(string(line), "FAIL") {
				buildFailed = true
			}
			continue
		}
		if e.Action == "output" && (e.Test == "" || strings.Contains(e.Output, "panic:")) {
			fmt.Fprint(out, e.Output)
		}
		if e.Action == "output" && e.Test != "" {
			// Kept until the test ends: a failed test's output is printed
			// whole (what it logged and why it failed).
			key := e.Package + "\x00" + e.Test
			if logs[key] == nil {
				logs[key] = &strings.Builder{}
			}
			logs[key].WriteString(e.Output)
			if i := strings.Index(e.Output, "uses-server: "); i >= 0 {
				name := strings.Fields(e.Output[i+len("uses-server: "):])
				if len(name) > 0 {
					if servers[name[0]] == nil {
						servers[name[0]] = map[string]bool{}
					}
					servers[name[0]][e.Package+"."+rootTest(e.Test)] = true
				}
			}
		}
		if e.Test == "" {
			if e.Action == "fail" {
				if pkgs[e.Package] == nil {
					buildFailed = true
					failed = append(failed, e.Package+" (build or TestMain failed)")
				}
			}
			continue
		}
		c := pkgs[e.Package]
		if c == nil {
			c = &counts{}
			pkgs[e.Package] = c
		}
		key := e.Package + "\x00" + e.Test
		switch e.Action {
		case "pass":
			c.pass++
		case "fail":
			c.fail++
			failed = append(failed, e.Package+"."+e.Test)
			if b := logs[key]; b != nil {
				fmt.Fprintf(out, "== output of failed %s.%s\n%s", e.Package, e.Test, b.String())
			}
		case "skip":
			c.skip++
			skipped = append(skipped, e.Package+"."+e.Test)
		}
		if e.Action == "pass" || e.Action == "fail" || e.Action == "skip" {
			delete(logs, key)
		}
	}
	names := make([]string, 0, len(pkgs))
	for n := range pkgs {
		names = append(names, n)
	}
	sort.Strings(names)
	var total counts
	fmt.Fprintln(out, "\n== tests per package (passed / failed / skipped)")
	for _, n := range names {
		c := pkgs[n]
		fmt.Fprintf(out, "%-60s %4d %4d %4d\n", n, c.pass, c.fail, c.skip)
		total.pass += c.pass
		total.fail += c.fail
		total.skip += c.skip
	}
	fmt.Fprintln(out, "\n== tests that used a real server")
	code := 0
	wanted := map[string]bool{}
	for _, s := range require {
		wanted[s] = true
	}
	for s := range servers {
		wanted[s] = true
	}
	for _, s := range sortedKeys(wanted) {
		n := len(servers[s])
		fmt.Fprintf(out, "%-20s %d\n", s, n)
		if n == 0 && strict {
			fmt.Fprintf(out, "FAIL: no test ran against %s\n", s)
			code = 1
		}
	}
	for _, s := range skipped {
		fmt.Fprintf(out, "skipped: %s\n", s)
	}
	for _, f := range failed {
		fmt.Fprintf(out, "failed: %s\n", f)
	}
	if strict && len(skipped) > 0 {
		fmt.Fprintf(out, "FAIL: %d test(s) skipped under CI=true\n", len(skipped))
		code = 1
	}
	if total.pass+total.fail == 0 {
		fmt.Fprintln(out, "FAIL: no test ran")
		code = 1
	}
	if total.fail > 0 || buildFailed {
		code = 1
	}
	fmt.Fprintf(out, "\n%d passed, %d failed, %d skipped\n", total.pass, total.fail, total.skip)
	return code
}

func rootTest(name string) string {
	if i := strings.IndexByte(name, '/'); i >= 0 {
		return name[:i]
	}
	return name
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
