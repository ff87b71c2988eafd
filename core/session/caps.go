package session

import (
	"context"
	"crypto/sha1" //nolint:gosec // XEP-0115 mandates sha-1 for the ver hash.
	"encoding/base64"
	"encoding/xml"
	"slices"
	"strings"
)

// Namespaces of the features every session provides.
const (
	NSDiscoInfo = "http://jabber.org/protocol/disco#info"
	NSCaps      = "http://jabber.org/protocol/caps"
	NSPing      = "urn:xmpp:ping"
)

// baseFeatures are always advertised: the session answers them itself.
var baseFeatures = []string{NSDiscoInfo, NSCaps, NSPing}

// Identity is a XEP-0030 identity (e.g. category "client", type "pc").
type Identity struct {
	Category string
	Type     string
	Lang     string // xml:lang, usually empty
	Name     string
}

// DefaultIdentity is advertised until SetFeatures is called.
var DefaultIdentity = Identity{Category: "client", Type: "pc", Name: "backend"}

// discoFeatures is an immutable snapshot of what the session advertises.
type discoFeatures struct {
	identities []Identity
	features   []string // sorted, unique
	ver        string
}

// newDiscoFeatures combines the identities with the base features and
// the given ones, and computes the caps hash.
func newDiscoFeatures(identities []Identity, features []string) *discoFeatures {
	all := append(slices.Clone(baseFeatures), features...)
	slices.Sort(all)
	all = slices.Compact(all)
	all = slices.DeleteFunc(all, func(f string) bool { return f == "" })
	ids := slices.Clone(identities)
	sortIdentities(ids)
	return &discoFeatures{identities: ids, features: all, ver: CapsVer(ids, all)}
}

// sortIdentities sorts by category, type, xml:lang, then name, as
// XEP-0115 §5.1 orders them (byte order, i;octet).
func sortIdentities(ids []Identity) {
	slices.SortFunc(ids, func(a, b Identity) int {
		for _, c := range [][2]string{{a.Category, b.Category}, {a.Type, b.Type}, {a.Lang, b.Lang}, {a.Name, b.Name}} {
			if r := strings.Compare(c[0], c[1]); r != 0 {
				return r
			}
		}
		return 0
	})
}

// CapsVer computes the XEP-0115 §5.1 verification string (sha-1, base64)
// of identities and features, without extended service discovery forms.
// The inputs need not be sorted.
func CapsVer(identities []Identity, features []string) string {
	ids := slices.Clone(identities)
	sortIdentities(ids)
	fs := slices.Clone(features)
	slices.Sort(fs)
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(id.Category + "/" + id.Type + "/" + id.Lang + "/" + id.Name + "<")
	}
	for _, f := range fs {
		b.WriteString(f + "<")
	}
	sum := sha1.Sum([]byte(b.String())) //nolint:gosec // mandated by XEP-0115
	return base64.StdEncoding.EncodeToString(sum[:])
}

// queryXML is the disco#info <query/> answering node (empty or node#ver).
func (d *discoFeatures) queryXML(node string) string {
	var b strings.Builder
	b.WriteString("<query xmlns='" + NSDiscoInfo + "'")
	if node != "" {
		b.WriteString(" node='" + escapeAttr(node) + "'")
	}
	b.WriteString(">")
	for _, id := range d.identities {
		b.WriteString("<identity category='" + escapeAttr(id.Category) + "' type='" + escapeAttr(id.Type) + "'")
		if id.Lang != "" {
			b.WriteString(" xml:lang='" + escapeAttr(id.Lang) + "'")
		}
		if id.Name != "" {
			b.WriteString(" name='" + escapeAttr(id.Name) + "'")
		}
		b.WriteString("/>")
	}
	for _, f := range d.features {
		b.WriteString("<feature var='" + escapeAttr(f) + "'/>")
	}
	b.WriteString("</query>")
	return b.String()
}

// presenceXML is the initial presence with the caps element.
func (d *discoFeatures) presenceXML(node string) string {
	return "<presence><c xmlns='" + NSCaps + "' hash='sha-1' node='" + escapeAttr(node) +
		"' ver='" + escapeAttr(d.ver) + "'/></presence>"
}

// escapeText escapes character data.
func escapeText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// escapeAttr escapes an attribute value written between single quotes
// (xml.EscapeText escapes both quote characters).
func escapeAttr(s string) string { return escapeText(s) }

// SetFeatures sets the disco#info identity and the features the session
// advertises (disco#info, caps and ping are always included). When they
// change while connected, a presence with the new XEP-0115 hash is sent.
func (s *Session) SetFeatures(identity Identity, features []string) {
	d := newDiscoFeatures([]Identity{identity}, features)
	s.presMu.Lock()
	defer s.presMu.Unlock()
	s.mu.Lock()
	changed := s.disco.ver != d.ver
	s.disco = d
	c := s.cur
	s.mu.Unlock()
	if !changed || c == nil {
		return // a resumed binding sends it when resumed
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	if err := c.b.send(ctx, []byte(d.presenceXML(s.cfg.CapsNode))); err != nil {
		s.log.Warn("xmpp: send presence with new capabilities", "err", err)
		return
	}
	c.b.presenceVer = d.ver
}

// Caps returns the advertised XEP-0115 node and verification string.
func (s *Session) Caps() (node, ver string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg == nil {
		return DefaultCapsNode, s.disco.ver
	}
	return s.cfg.CapsNode, s.disco.ver
}

// discoFeatures returns the current advertised features.
func (s *Session) discoFeatures() *discoFeatures {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.disco
}

// sendPresence sends the presence with the current caps on b.
func (s *Session) sendPresence(ctx context.Context, b *binding) error {
	s.presMu.Lock()
	defer s.presMu.Unlock()
	d := s.discoFeatures()
	if err := b.send(ctx, []byte(d.presenceXML(s.cfg.CapsNode))); err != nil {
		return err
	}
	b.presenceVer = d.ver
	return nil
}

// sendPresenceIfChanged sends the presence on a resumed binding when the
// caps changed while it was away.
func (s *Session) sendPresenceIfChanged(ctx context.Context, b *binding) error {
	s.presMu.Lock()
	changed := s.discoFeatures().ver != b.presenceVer
	s.presMu.Unlock()
	if !changed {
		return nil
	}
	return s.sendPresence(ctx, b)
}
