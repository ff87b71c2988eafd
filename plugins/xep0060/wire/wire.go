// Package wire is the XEP-0060 (pubsub) and XEP-0059 (RSM) wire format as
// the pubsub plugin and the cache need it: request payloads written as raw
// XML, and replies and notifications parsed from the exact bytes the server
// sent, so that each item's payload is kept byte for byte.
//
// # Raw capture
//
// [Register] maps the pubsub, pubsub#owner and pubsub#event elements in
// gosrc.io/xmpp's global stanza type registry to types whose only content is
// their inner XML (`xml:",innerxml"`, filled by encoding/xml with the bytes
// from the wire). [ParsePubSub] and [ParseEvent] then cut each <item> out of
// those bytes by decoder offsets: no struct is ever re-serialised.
//
// # Canonical item form
//
// An item is stored as id, publisher and payload (the inner bytes of
// <item>). The wrapper differs between IQ results and notifications (the
// former carries xmlns='…pubsub', the latter inherits #event), the payload
// does not; [Wrap] rebuilds one canonical wrapper for serving:
// <item id='ID' publisher='JID'>PAYLOAD</item>.
package wire

import (
	"encoding/xml"
	"strings"
	"sync"

	"gosrc.io/xmpp/stanza"
)

// Namespaces.
const (
	NSPubSub      = "http://jabber.org/protocol/pubsub"
	NSPubSubOwner = "http://jabber.org/protocol/pubsub#owner"
	NSPubSubEvent = "http://jabber.org/protocol/pubsub#event"
	NSRSM         = "http://jabber.org/protocol/rsm"
	NSDataForms   = "jabber:x:data"
	// NSValidate is XEP-0122 data-form validation.
	NSValidate = "http://jabber.org/protocol/xdata-validate"
	NSOrderBy  = "urn:xmpp:order-by:1"
	// FeatureRSM and FeaturePubSubRSM are the disco features a service may
	// advertise for RSM on items (a hint only: see DESIGN §5).
	FeatureRSM       = "http://jabber.org/protocol/rsm"
	FeaturePubSubRSM = "http://jabber.org/protocol/pubsub#rsm"
)

// PubSub is the raw <pubsub/> element of an IQ (either namespace).
type PubSub struct {
	XMLName xml.Name
	Inner   []byte `xml:",innerxml"`
}

// Namespace implements stanza.IQPayload.
func (p *PubSub) Namespace() string { return p.XMLName.Space }

// GetSet implements stanza.IQPayload (RSM is parsed from Inner instead).
func (p *PubSub) GetSet() *stanza.ResultSet { return nil }

// Event is the raw <event/> element of a notification message.
type Event struct {
	XMLName xml.Name
	Inner   []byte `xml:",innerxml"`
}

// Namespace implements stanza.MsgExtension.
func (e *Event) Namespace() string { return e.XMLName.Space }

var registerOnce sync.Once

// Register installs the raw-capturing types in gosrc.io/xmpp's global type
// registry. Call it before any session decodes pubsub traffic (the pubsub
// plugin does it in Init); it is idempotent.
func Register() {
	registerOnce.Do(func() {
		stanza.TypeRegistry.MapExtension(stanza.PKTIQ, xml.Name{Space: NSPubSub, Local: "pubsub"}, PubSub{})
		stanza.TypeRegistry.MapExtension(stanza.PKTIQ, xml.Name{Space: NSPubSubOwner, Local: "pubsub"}, PubSub{})
		stanza.TypeRegistry.MapExtension(stanza.PKTMessage, xml.Name{Space: NSPubSubEvent, Local: "event"}, Event{})
	})
}

// Item is one pubsub item: its id, its publisher when the service tells, and
// the exact payload bytes between <item …> and </item>.
type Item struct {
	ID        string
	Publisher string
	Payload   []byte
}

// Wrap returns the canonical wrapper of DESIGN §9 around the payload:
// <item id='ID'[ publisher='JID']>PAYLOAD</item>, single quotes, attribute
// values escaped as &amp; &lt; &apos;, no xmlns.
func Wrap(it Item) string {
	var b strings.Builder
	b.Grow(len(it.Payload) + len(it.ID) + len(it.Publisher) + 40)
	b.WriteString("<item id='")
	b.WriteString(escapeAttr(it.ID))
	b.WriteByte('\'')
	if it.Publisher != "" {
		b.WriteString(" publisher='")
		b.WriteString(escapeAttr(it.Publisher))
		b.WriteByte('\'')
	}
	b.WriteByte('>')
	b.Write(it.Payload)
	b.WriteString("</item>")
	return b.String()
}

var attrEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", "'", "&apos;")

// escapeAttr escapes a value for a single-quoted attribute.
func escapeAttr(s string) string { return attrEscaper.Replace(s) }

var textEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// escapeText escapes character data.
func escapeText(s string) string { return textEscaper.Replace(s) }

// EscapeAttr escapes a value for a single-quoted attribute.
func EscapeAttr(s string) string { return escapeAttr(s) }
