// Package jid parses and validates XMPP addresses (JIDs) with the
// essentials of RFC 7622: localpart@domainpart/resourcepart.
//
// It is deliberately smaller than PRECIS: it checks the structure, the
// lengths (each part 1..1023 bytes), UTF-8 validity, the characters the RFC
// forbids in a localpart ("&'/:<>@ and the double quote), whitespace and
// control characters, and it lowercases the domainpart. It does not apply
// the full PRECIS profiles (case folding of the localpart, width mapping,
// IDNA), so two JIDs that PRECIS would map to the same address may be told
// apart here; servers do that mapping anyway.
package jid

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxPartLen is the largest size, in bytes, of each of the three parts.
const MaxPartLen = 1023

// ErrInvalid is wrapped by every parse error.
var ErrInvalid = errors.New("invalid JID")

// JID is a parsed XMPP address. The zero value is not a valid JID.
type JID struct {
	// Local is the localpart (the account name), possibly empty.
	Local string
	// Domain is the domainpart, lowercase, without a trailing dot.
	Domain string
	// Resource is the resourcepart, empty for a bare JID.
	Resource string
}

// forbiddenLocal lists the ASCII characters RFC 7622 §3.3.1 forbids in a
// localpart.
const forbiddenLocal = "\"&'/:<>@"

// Parse parses a bare or full JID. The localpart ends at the first '@'
// before the first '/'; the resourcepart starts after the first '/' and may
// hold any character but control characters (it may contain '@' and '/').
func Parse(s string) (JID, error) {
	if !utf8.ValidString(s) {
		return JID{}, invalid(s, "not valid UTF-8")
	}
	rest := s
	var j JID
	hasRes := false
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		j.Resource = rest[i+1:]
		rest = rest[:i]
		hasRes = true
	}
	hasLocal := false
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		j.Local = rest[:i]
		rest = rest[i+1:]
		hasLocal = true
	}
	j.Domain = rest
	if hasLocal {
		if err := checkLocal(j.Local); err != nil {
			return JID{}, invalid(s, err.Error())
		}
	}
	dom, err := normalizeDomain(j.Domain)
	if err != nil {
		return JID{}, invalid(s, err.Error())
	}
	j.Domain = dom
	if hasRes {
		if err := checkResource(j.Resource); err != nil {
			return JID{}, invalid(s, err.Error())
		}
	}
	return j, nil
}

// ParseBare parses a bare JID (local@domain or domain): a resource is an
// error.
func ParseBare(s string) (JID, error) {
	j, err := Parse(s)
	if err != nil {
		return JID{}, err
	}
	if j.Resource != "" {
		return JID{}, invalid(s, "a bare JID (without /resource) is required here")
	}
	return j, nil
}

// ParseAccount parses the bare JID of an account: local@domain, both
// required.
func ParseAccount(s string) (JID, error) {
	j, err := ParseBare(s)
	if err != nil {
		return JID{}, err
	}
	if j.Local == "" {
		return JID{}, invalid(s, "an account JID needs a localpart (user@domain)")
	}
	return j, nil
}

// ValidateResource checks a resourcepart on its own.
func ValidateResource(r string) error {
	if err := checkResource(r); err != nil {
		return fmt.Errorf("%w resource %s: %s", ErrInvalid, strconv.Quote(r), err)
	}
	return nil
}

// ValidateDomain checks a domainpart on its own (e.g. a host name) and
// returns it normalised.
func ValidateDomain(d string) (string, error) {
	n, err := normalizeDomain(d)
	if err != nil {
		return "", fmt.Errorf("%w domain %s: %s", ErrInvalid, strconv.Quote(d), err)
	}
	return n, nil
}

func invalid(s, reason string) error {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return fmt.Errorf("%w %s: %s", ErrInvalid, strconv.Quote(s), reason)
}

// Bare returns the JID without its resource.
func (j JID) Bare() JID { return JID{Local: j.Local, Domain: j.Domain} }

// IsBare reports whether j has no resource.
func (j JID) IsBare() bool { return j.Resource == "" }

// String returns the JID as text: [local@]domain[/resource].
func (j JID) String() string {
	var b strings.Builder
	b.Grow(len(j.Local) + len(j.Domain) + len(j.Resource) + 2)
	if j.Local != "" {
		b.WriteString(j.Local)
		b.WriteByte('@')
	}
	b.WriteString(j.Domain)
	if j.Resource != "" {
		b.WriteByte('/')
		b.WriteString(j.Resource)
	}
	return b.String()
}

func checkLen(part, what string) error {
	switch {
	case part == "":
		return fmt.Errorf("empty %s", what)
	case len(part) > MaxPartLen:
		return fmt.Errorf("%s is %d bytes long (at most %d)", what, len(part), MaxPartLen)
	}
	return nil
}

func checkLocal(l string) error {
	if err := checkLen(l, "localpart"); err != nil {
		return err
	}
	for _, r := range l {
		switch {
		case strings.ContainsRune(forbiddenLocal, r):
			return fmt.Errorf("the localpart may not contain %q", r)
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return fmt.Errorf("the localpart may not contain whitespace or control characters (%U)", r)
		case r == utf8.RuneError:
			return errors.New("the localpart holds an invalid character")
		}
	}
	return nil
}

func checkResource(res string) error {
	if err := checkLen(res, "resourcepart"); err != nil {
		return err
	}
	for _, r := range res {
		if unicode.IsControl(r) || r == utf8.RuneError || (unicode.IsSpace(r) && r != ' ') {
			return fmt.Errorf("the resourcepart may not contain control characters or whitespace other than spaces (%U)", r)
		}
	}
	if strings.TrimSpace(res) != res {
		return errors.New("the resourcepart may not start or end with a space")
	}
	return nil
}

// normalizeDomain checks a domainpart and returns it lowercased, without a
// trailing dot: an IP literal ([IPv6] or IPv4) or dot-separated labels of
// 1..63 bytes without whitespace, control characters or the ASCII
// characters that cannot appear in a host name.
func normalizeDomain(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	if err := checkLen(d, "domainpart"); err != nil {
		return "", err
	}
	if strings.HasPrefix(d, "[") {
		if !strings.HasSuffix(d, "]") {
			return "", errors.New("an IPv6 domainpart must be written [address]")
		}
		a, err := netip.ParseAddr(d[1 : len(d)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", errors.New("the bracketed domainpart is not an IPv6 address")
		}
		return "[" + a.String() + "]", nil
	}
	d = strings.ToLower(d)
	if len(d) > MaxPartLen {
		return "", fmt.Errorf("domainpart is %d bytes long (at most %d)", len(d), MaxPartLen)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" {
			return "", errors.New("the domainpart has an empty label")
		}
		if len(label) > 63 {
			return "", fmt.Errorf("the domain label %q is longer than 63 bytes", label)
		}
		for _, r := range label {
			switch {
			case unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError:
				return "", fmt.Errorf("the domainpart may not contain whitespace or control characters (%U)", r)
			case r < 0x80 && !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_'):
				return "", fmt.Errorf("the domainpart may not contain %q", r)
			}
		}
		if strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return "", fmt.Errorf("the domain label %q may not start or end with '-'", label)
		}
	}
	return d, nil
}
