package params

import (
	"strings"
	"testing"
)

// FuzzNormalize checks, for every type, that Normalize never panics, that
// the canonical form is a fixed point, and that a secret's error never
// contains the value.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		"", " ", "true", "Off", "0", "1", "-1", "+7", "65535", "99999999999999999999",
		"90m", "1h30m0s", "-1s", "1.5µs", "a,b", " a , ,b ", `["a","b"]`, `[""]`, `[1]`, `["\u0000"]`,
		`["\ud800"]`, "[", "full", "read", "a\x00b", "\xff", "é", "<&>",
	} {
		f.Add(s)
	}
	r := testRegistry(f)
	decls := r.All()
	f.Fuzz(func(t *testing.T, raw string) {
		for _, d := range decls {
			canon, err := r.Normalize(d.Key(), raw)
			if err != nil {
				if d.Secret() && raw != "" && strings.Contains(err.Error(), raw) {
					t.Fatalf("%s: error %q contains the secret", d.Key(), err)
				}
				continue
			}
			again, err := r.Normalize(d.Key(), canon)
			if err != nil {
				t.Fatalf("%s: canonical %q of %q refused: %v", d.Key(), canon, raw, err)
			}
			if again != canon {
				t.Fatalf("%s: not a fixed point: %q → %q → %q", d.Key(), raw, canon, again)
			}
		}
	})
}
