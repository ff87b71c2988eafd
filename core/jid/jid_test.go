package jid

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParse(t *testing.T) {
	long := strings.Repeat("a", MaxPartLen)
	for _, tc := range []struct {
		in   string
		want JID
		err  string // substring of the error, "" when valid
	}{
		{in: "alice@example.org", want: JID{"alice", "example.org", ""}},
		{in: "alice@Example.ORG", want: JID{"alice", "example.org", ""}},
		{in: "alice@example.org.", want: JID{"alice", "example.org", ""}},
		{in: "example.org", want: JID{"", "example.org", ""}},
		{in: "alice@example.org/phone", want: JID{"alice", "example.org", "phone"}},
		{in: "alice@example.org/a/b@c d", want: JID{"alice", "example.org", "a/b@c d"}},
		{in: "example.org/res", want: JID{"", "example.org", "res"}},
		{in: "élodie@exâmple.org", want: JID{"élodie", "exâmple.org", ""}},
		// PRECIS and IDNA mappings (RFC 7622): case, width, NFC, A-labels.
		{in: "Alice@Example.ORG/Phone", want: JID{"alice", "example.org", "Phone"}},
		{in: "ＡＬＩＣＥ@ＥＸＡＭＰＬＥ.org", want: JID{"alice", "example.org", ""}},
		{in: "Élodie@example.org", want: JID{"élodie", "example.org", ""}},
		{in: "ÉLODIE@example.org", want: JID{"élodie", "example.org", ""}},
		{in: "alice@XN--BCHER-KVA.example", want: JID{"alice", "bücher.example", ""}},
		{in: "alice@BÜCHER.example", want: JID{"alice", "bücher.example", ""}},
		{in: "alice@example。org", want: JID{"alice", "example.org", ""}},
		{in: "alice@example.org/a b", want: JID{"alice", "example.org", "a b"}},
		{in: "alice@example.org/Résumé", want: JID{"alice", "example.org", "Résumé"}},
		{in: "a＠b@example.org", err: "may not contain '@'"},
		{in: "☃@example.org", err: "UsernameCaseMapped"},
		{in: "alice@xn--a.example", err: "IDNA"},
		{in: "bob@[::1]", want: JID{"bob", "[::1]", ""}},
		{in: "bob@127.0.0.1", want: JID{"bob", "127.0.0.1", ""}},
		{in: long + "@example.org", want: JID{long, "example.org", ""}},
		{in: "", err: "empty domainpart"},
		{in: "@example.org", err: "empty localpart"},
		{in: "alice@", err: "empty domainpart"},
		{in: "alice@example.org/", err: "empty resourcepart"},
		{in: "al ice@example.org", err: "whitespace"},
		{in: "al\tice@example.org", err: "whitespace"},
		{in: "al\"ice@example.org", err: `may not contain '"'`},
		{in: "al&ice@example.org", err: "may not contain '&'"},
		{in: "al'ice@example.org", err: `may not contain '\''`},
		{in: "al:ice@example.org", err: "may not contain ':'"},
		{in: "al<ice@example.org", err: "may not contain '<'"},
		{in: "al>ice@example.org", err: "may not contain '>'"},
		{in: "a@b@example.org", err: "may not contain '@'"},
		{in: "alice@exa mple.org", err: "whitespace"},
		{in: "alice@example.org:5222", err: "may not contain ':'"},
		{in: "alice@example..org", err: "empty label"},
		{in: "alice@-example.org", err: `invalid label "-example"`},
		{in: "alice@[::1", err: "[address]"},
		{in: "alice@[1.2.3.4]", err: "not an IPv6"},
		{in: "alice@example.org/\x00", err: "control"},
		{in: "alice@example.org/ x", want: JID{"alice", "example.org", " x"}},
		{in: "alice@example.org/a\nb", err: "control"},
		{in: "\xff@example.org", err: "UTF-8"},
		{in: long + "a@example.org", err: "at most 1023"},
		{in: "alice@example.org/" + long + "a", err: "at most 1023"},
		{in: "alice@" + strings.Repeat("a", 64) + ".org", err: "longer than 63"},
	} {
		got, err := Parse(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalid) {
				t.Errorf("Parse(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseBareAndAccount(t *testing.T) {
	if _, err := ParseBare("alice@example.org/res"); err == nil || !strings.Contains(err.Error(), "bare JID") {
		t.Errorf("ParseBare with a resource: %v", err)
	}
	if j, err := ParseBare("example.org"); err != nil || j.String() != "example.org" {
		t.Errorf("ParseBare(domain) = %v, %v", j, err)
	}
	if _, err := ParseAccount("example.org"); err == nil || !strings.Contains(err.Error(), "localpart") {
		t.Errorf("ParseAccount without localpart: %v", err)
	}
	j, err := ParseAccount("Alice@EXAMPLE.org")
	if err != nil || j.String() != "alice@example.org" {
		t.Errorf("ParseAccount = %v, %v", j, err)
	}
	full := JID{"a", "b.c", "r"}
	if full.Bare().String() != "a@b.c" || full.IsBare() || !full.Bare().IsBare() {
		t.Errorf("Bare/IsBare of %v", full)
	}
}

func TestValidateHelpers(t *testing.T) {
	if d, err := ValidateDomain("XMPP.Example.org"); err != nil || d != "xmpp.example.org" {
		t.Errorf("ValidateDomain = %q, %v", d, err)
	}
	if _, err := ValidateDomain("a b"); err == nil {
		t.Error("ValidateDomain accepted a space")
	}
	if err := ValidateResource("backend"); err != nil {
		t.Error(err)
	}
	if err := ValidateResource("a\x01"); err == nil {
		t.Error("ValidateResource accepted a control character")
	}
}

// FuzzParse checks that whatever parses prints back to a JID that parses to
// the same value, within the length limits and with a lowercase domain.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"alice@example.org", "a@b/c", "example.org", "x@[::1]/r/s", "É@Ü.de.", "@", "/", "a@b@c", "\xff",
		"ＡＬＩＣＥ@ＥＸＡＭＰＬＥ.org/Ｒ", "alice@XN--BCHER-KVA.example", "E\u0301@x\u3002y", "a\uff20b@c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		j, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q): error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		for _, p := range []string{j.Local, j.Domain, j.Resource} {
			if len(p) > MaxPartLen || !utf8.ValidString(p) {
				t.Fatalf("Parse(%q) = %#v: a part is too long or not UTF-8", s, j)
			}
		}
		if j.Domain == "" || strings.ContainsAny(j.Local, forbiddenLocal) || strings.ContainsAny(j.Domain, "@/ ") {
			t.Fatalf("Parse(%q) = %#v: invalid parts accepted", s, j)
		}
		again, err := Parse(j.String())
		if err != nil || again != j {
			t.Fatalf("Parse(%q) = %#v, but Parse(%q) = %#v, %v", s, j, j.String(), again, err)
		}
		// The canonical domain has an ASCII form for DNS and TLS.
		if _, err := ASCIIDomain(j.Domain); err != nil {
			t.Fatalf("Parse(%q) = %#v, but ASCIIDomain: %v", s, j, err)
		}
	})
}
