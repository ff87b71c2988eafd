// Package jid parses XMPP addresses (JIDs) into their canonical form (RFC
// 7622): localpart@domainpart/resourcepart, each part prepared and
// enforced with PRECIS (golang.org/x/text/secure/precis) and IDNA
// (golang.org/x/net/idna):
//
//   - the localpart with the UsernameCaseMapped profile (width mapping,
//     lower case, NFC, the IdentifierClass of characters), and without the
//     characters RFC 7622 §3.3.1 forbids ("&'/:<>@ and the double quote);
//   - the domainpart as IDNA2008 U-labels (A-labels decoded, UTS #46
//     mapping: lower case, width, NFC), without a trailing dot; an IP
//     literal ([IPv6] or IPv4) is kept in its canonical text;
//   - the resourcepart with the OpaqueString profile (case and spaces
//     kept, non-ASCII spaces mapped to U+0020, NFC, no control characters).
//
// Two JIDs that denote the same address have the same canonical text
// (String of what Parse returns), which is what the daemon uses as keys:
// profile JIDs and pubsub service addresses. Parse is idempotent on its own
// output. Each part is 1..1023 bytes once canonical.
package jid

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/secure/precis"
)

// MaxPartLen is the largest size, in bytes, of each of the three parts.
const MaxPartLen = 1023

// ErrInvalid is wrapped by every parse error.
var ErrInvalid = errors.New("invalid JID")

// JID is a parsed, canonical XMPP address. The zero value is not a valid
// JID.
type JID struct {
	// Local is the localpart (the account name), possibly empty.
	Local string
	// Domain is the domainpart in U-labels, lower case, without a
	// trailing dot.
	Domain string
	// Resource is the resourcepart, empty for a bare JID.
	Resource string
}

// forbiddenLocal lists the ASCII characters RFC 7622 §3.3.1 forbids in a
// localpart.
const forbiddenLocal = "\"&'/:<>@"

// domainProfile maps and checks domainparts: UTS #46 mapping for lookup
// (case, width, NFC), non-transitional, the Bidi rule; underscores and
// other ASCII are left to checkLabel (StrictDomainName off), which allows
// letters, digits, '-' and '_' as before.
var domainProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false), idna.StrictDomainName(false))

// Parse parses a bare or full JID and returns its canonical form. The
// localpart ends at the first '@' before the first '/'; the resourcepart
// starts after the first '/' and may hold '@' and '/'.
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
		l, err := prepareLocal(j.Local)
		if err != nil {
			return JID{}, invalid(s, err.Error())
		}
		j.Local = l
	}
	dom, err := prepareDomain(j.Domain)
	if err != nil {
		return JID{}, invalid(s, err.Error())
	}
	j.Domain = dom
	if hasRes {
		r, err := prepareResource(j.Resource)
		if err != nil {
			return JID{}, invalid(s, err.Error())
		}
		j.Resource = r
	}
	return j, nil
}

// Canonical returns the canonical text of the JID s (String of Parse).
func Canonical(s string) (string, error) {
	j, err := Parse(s)
	if err != nil {
		return "", err
	}
	return j.String(), nil
}

// CanonicalEach returns the canonical text of each JID of list (e.g. the
// service filters of a request), keeping an entry that is not a valid JID
// as it is: it then equals no canonical key.
func CanonicalEach(list []string) []string {
	if len(list) == 0 {
		return list
	}
	out := make([]string, len(list))
	for i, s := range list {
		if c, err := Canonical(s); err == nil {
			out[i] = c
		} else {
			out[i] = s
		}
	}
	return out
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
	if _, err := prepareResource(r); err != nil {
		return fmt.Errorf("%w resource %s: %s", ErrInvalid, strconv.Quote(r), err)
	}
	return nil
}

// ValidateDomain checks a domainpart on its own (e.g. a host name) and
// returns it canonical.
func ValidateDomain(d string) (string, error) {
	n, err := prepareDomain(d)
	if err != nil {
		return "", fmt.Errorf("%w domain %s: %s", ErrInvalid, strconv.Quote(d), err)
	}
	return n, nil
}

// ASCIIDomain returns the A-label (ASCII) form of a canonical domainpart,
// as DNS and TLS (SNI, certificate names) need it; an IP literal is
// returned without its brackets.
func ASCIIDomain(d string) (string, error) {
	if strings.HasPrefix(d, "[") && strings.HasSuffix(d, "]") {
		return d[1 : len(d)-1], nil
	}
	a, err := domainProfile.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("%w domain %s: %s", ErrInvalid, strconv.Quote(d), err)
	}
	return a, nil
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

// checkLocalChars refuses the characters RFC 7622 forbids in a localpart
// and whitespace or control characters (before and after preparation, so
// that a width-mapped '＠' cannot become an '@').
func checkLocalChars(l string) error {
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

// prepareLocal returns the canonical localpart (PRECIS UsernameCaseMapped).
func prepareLocal(l string) (string, error) {
	if err := checkLen(l, "localpart"); err != nil {
		return "", err
	}
	if err := checkLocalChars(l); err != nil {
		return "", err
	}
	out, err := precis.UsernameCaseMapped.String(l)
	if err != nil {
		return "", fmt.Errorf("the localpart is not a valid username (PRECIS UsernameCaseMapped: %v)", precisReason(err))
	}
	if err := checkLocalChars(out); err != nil {
		return "", err
	}
	if err := checkLen(out, "localpart"); err != nil {
		return "", err
	}
	return out, nil
}

// prepareResource returns the canonical resourcepart (PRECIS OpaqueString).
func prepareResource(res string) (string, error) {
	if err := checkLen(res, "resourcepart"); err != nil {
		return "", err
	}
	for _, r := range res {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return "", fmt.Errorf("the resourcepart may not contain control characters (%U)", r)
		}
	}
	out, err := precis.OpaqueString.String(res)
	if err != nil {
		return "", fmt.Errorf("the resourcepart is not valid (PRECIS OpaqueString: %v)", precisReason(err))
	}
	if err := checkLen(out, "resourcepart"); err != nil {
		return "", err
	}
	return out, nil
}

// precisReason shortens the errors of x/text/secure/precis.
func precisReason(err error) string {
	return strings.TrimPrefix(err.Error(), "precis: ")
}

// prepareDomain returns the canonical domainpart: an IP literal ([IPv6]
// or IPv4) in its canonical text, or dot-separated U-labels (IDNA2008 with
// the UTS #46 lookup mapping) of letters, digits, '-' and '_' in their
// ASCII range, each label at most 63 bytes once in A-label form, without
// a trailing dot.
func prepareDomain(d string) (string, error) {
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
	if a, err := netip.ParseAddr(d); err == nil && a.Is4() {
		return a.String(), nil
	}
	for _, r := range d {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError {
			return "", fmt.Errorf("the domainpart may not contain whitespace or control characters (%U)", r)
		}
	}
	u, err := domainProfile.ToUnicode(d)
	if err != nil {
		return "", fmt.Errorf("the domainpart is not a valid domain name (IDNA: %v)", idnaReason(err))
	}
	u = strings.TrimSuffix(u, ".") // a mapped ideographic full stop
	if err := checkLen(u, "domainpart"); err != nil {
		return "", err
	}
	for _, label := range strings.Split(u, ".") {
		if err := checkLabel(label); err != nil {
			return "", err
		}
	}
	return u, nil
}

// checkLabel checks one U-label of a mapped domainpart.
func checkLabel(label string) error {
	if label == "" {
		return errors.New("the domainpart has an empty label")
	}
	for _, r := range label {
		if r < 0x80 && !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("the domainpart may not contain %q", r)
		}
	}
	if strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
		return fmt.Errorf("the domain label %q may not start or end with '-'", label)
	}
	a, err := domainProfile.ToASCII(label)
	if err != nil {
		return fmt.Errorf("the domain label %q is not valid (IDNA: %v)", label, idnaReason(err))
	}
	if len(a) > 63 {
		return fmt.Errorf("the domain label %q is longer than 63 bytes", label)
	}
	return nil
}

// idnaReason shortens the errors of x/net/idna.
func idnaReason(err error) string {
	return strings.TrimPrefix(err.Error(), "idna: ")
}
