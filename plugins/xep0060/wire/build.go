package wire

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// RSMQuery is an XEP-0059 request. Nil fields are not sent; Before set to
// an empty string asks for the last page.
type RSMQuery struct {
	Max    *int
	After  *string
	Before *string
	Index  *int
}

// ItemsQuery is an items request.
type ItemsQuery struct {
	Node     string
	MaxItems int      // > 0: max_items
	IDs      []string // specific items
	SubID    string
	RSM      *RSMQuery
	// OrderBy is an XEP-0413 field ("creation" or "modification"), sent only
	// when the service advertises urn:xmpp:order-by:1.
	OrderBy string
}

// XML returns the <pubsub/> payload of the request.
func (q ItemsQuery) XML() string {
	var b strings.Builder
	b.WriteString("<pubsub xmlns='" + NSPubSub + "'>")
	if q.OrderBy != "" {
		b.WriteString("<order xmlns='" + NSOrderBy + "' field='" + escapeAttr(q.OrderBy) + "'/>")
	}
	b.WriteString("<items node='" + escapeAttr(q.Node) + "'")
	if q.MaxItems > 0 {
		b.WriteString(" max_items='" + strconv.Itoa(q.MaxItems) + "'")
	}
	if q.SubID != "" {
		b.WriteString(" subid='" + escapeAttr(q.SubID) + "'")
	}
	if len(q.IDs) == 0 {
		b.WriteString("/>")
	} else {
		b.WriteString(">")
		for _, id := range q.IDs {
			b.WriteString("<item id='" + escapeAttr(id) + "'/>")
		}
		b.WriteString("</items>")
	}
	if q.RSM != nil {
		b.WriteString(q.RSM.XML())
	}
	b.WriteString("</pubsub>")
	return b.String()
}

// XML returns the <set/> element.
func (r RSMQuery) XML() string {
	var b strings.Builder
	b.WriteString("<set xmlns='" + NSRSM + "'>")
	if r.Max != nil {
		b.WriteString("<max>" + strconv.Itoa(*r.Max) + "</max>")
	}
	if r.After != nil {
		b.WriteString("<after>" + escapeText(*r.After) + "</after>")
	}
	if r.Before != nil {
		if *r.Before == "" {
			b.WriteString("<before/>")
		} else {
			b.WriteString("<before>" + escapeText(*r.Before) + "</before>")
		}
	}
	if r.Index != nil {
		b.WriteString("<index>" + strconv.Itoa(*r.Index) + "</index>")
	}
	b.WriteString("</set>")
	return b.String()
}

// Form is a submitted data form: FORM_TYPE plus fields (var → values).
type Form struct {
	Type   string
	Fields map[string][]string
}

// XML returns the <x type='submit'/> element, fields sorted by var.
func (f Form) XML() string {
	var b strings.Builder
	b.WriteString("<x xmlns='" + NSDataForms + "' type='submit'>")
	b.WriteString("<field var='FORM_TYPE' type='hidden'><value>" + escapeText(f.Type) + "</value></field>")
	vars := make([]string, 0, len(f.Fields))
	for v := range f.Fields {
		vars = append(vars, v)
	}
	sort.Strings(vars)
	for _, v := range vars {
		b.WriteString("<field var='" + escapeAttr(v) + "'>")
		for _, val := range f.Fields[v] {
			b.WriteString("<value>" + escapeText(val) + "</value>")
		}
		b.WriteString("</field>")
	}
	b.WriteString("</x>")
	return b.String()
}

// Form types.
const (
	FormPublishOptions = "http://jabber.org/protocol/pubsub#publish-options"
	FormNodeConfig     = "http://jabber.org/protocol/pubsub#node_config"
)

// ErrBadPayload is returned for a publish payload that is not exactly one
// well-formed XML element.
var ErrBadPayload = errors.New("payload must be exactly one well-formed XML element")

// CheckPayload verifies that payload is one well-formed XML element
// (surrounding whitespace allowed).
func CheckPayload(payload []byte) error {
	d := xml.NewDecoder(bytes.NewReader(payload))
	d.Strict = true
	depth, roots := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadPayload, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
			}
			depth++
			if depth > maxDepth {
				return fmt.Errorf("%w: %v", ErrBadPayload, errTooDeep)
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return fmt.Errorf("%w: text outside the element", ErrBadPayload)
			}
		case xml.ProcInst, xml.Directive:
			if depth == 0 {
				return fmt.Errorf("%w: declarations are not allowed", ErrBadPayload)
			}
		}
	}
	if roots != 1 {
		return fmt.Errorf("%w: found %d root elements", ErrBadPayload, roots)
	}
	return nil
}

// Publish returns the payload of a publish request; id may be empty (the
// service assigns one); options (var → value) become publish-options.
// The payload must have passed CheckPayload.
func Publish(node, id string, payload []byte, options map[string][]string) string {
	var b strings.Builder
	b.WriteString("<pubsub xmlns='" + NSPubSub + "'><publish node='" + escapeAttr(node) + "'><item")
	if id != "" {
		b.WriteString(" id='" + escapeAttr(id) + "'")
	}
	b.WriteString(">")
	b.Write(bytes.TrimSpace(payload))
	b.WriteString("</item></publish>")
	if len(options) > 0 {
		b.WriteString("<publish-options>" + Form{Type: FormPublishOptions, Fields: options}.XML() + "</publish-options>")
	}
	b.WriteString("</pubsub>")
	return b.String()
}

// Retract returns the payload of a retract request.
func Retract(node, id string, notify bool) string {
	n := ""
	if notify {
		n = " notify='true'"
	}
	return "<pubsub xmlns='" + NSPubSub + "'><retract node='" + escapeAttr(node) + "'" + n + "><item id='" + escapeAttr(id) + "'/></retract></pubsub>"
}

// Subscribe returns the payload of a subscribe request for jid.
func Subscribe(node, jid string) string {
	return "<pubsub xmlns='" + NSPubSub + "'><subscribe node='" + escapeAttr(node) + "' jid='" + escapeAttr(jid) + "'/></pubsub>"
}

// Unsubscribe returns the payload of an unsubscribe request.
func Unsubscribe(node, jid, subID string) string {
	s := ""
	if subID != "" {
		s = " subid='" + escapeAttr(subID) + "'"
	}
	return "<pubsub xmlns='" + NSPubSub + "'><unsubscribe node='" + escapeAttr(node) + "' jid='" + escapeAttr(jid) + "'" + s + "/></pubsub>"
}

// Subscriptions returns the payload of a subscriptions request (all nodes
// when node is empty).
func Subscriptions(node string) string {
	if node == "" {
		return "<pubsub xmlns='" + NSPubSub + "'><subscriptions/></pubsub>"
	}
	return "<pubsub xmlns='" + NSPubSub + "'><subscriptions node='" + escapeAttr(node) + "'/></pubsub>"
}

// Create returns the payload of a node creation with an optional
// configuration (var → values).
func Create(node string, config map[string][]string) string {
	var b strings.Builder
	b.WriteString("<pubsub xmlns='" + NSPubSub + "'><create node='" + escapeAttr(node) + "'/>")
	if len(config) > 0 {
		b.WriteString("<configure>" + Form{Type: FormNodeConfig, Fields: config}.XML() + "</configure>")
	}
	b.WriteString("</pubsub>")
	return b.String()
}

// Delete returns the payload of a node deletion.
func Delete(node string) string {
	return "<pubsub xmlns='" + NSPubSubOwner + "'><delete node='" + escapeAttr(node) + "'/></pubsub>"
}

// Purge returns the payload of a node purge.
func Purge(node string) string {
	return "<pubsub xmlns='" + NSPubSubOwner + "'><purge node='" + escapeAttr(node) + "'/></pubsub>"
}

// ConfigureGet returns the payload asking for a node's configuration form.
func ConfigureGet(node string) string {
	return "<pubsub xmlns='" + NSPubSubOwner + "'><configure node='" + escapeAttr(node) + "'/></pubsub>"
}

// DefaultGet returns the payload asking for a service's default node
// configuration (XEP-0060 §8.3).
func DefaultGet() string {
	return "<pubsub xmlns='" + NSPubSubOwner + "'><default/></pubsub>"
}

// ConfigureSet returns the payload submitting a node configuration.
func ConfigureSet(node string, config map[string][]string) string {
	return "<pubsub xmlns='" + NSPubSubOwner + "'><configure node='" + escapeAttr(node) + "'>" +
		Form{Type: FormNodeConfig, Fields: config}.XML() + "</configure></pubsub>"
}
