package wire

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// RSMSet is an XEP-0059 <set/> from a reply. Count and FirstIndex are nil
// when the service did not send them. FirstIndex is kept as sent, even
// negative (ejabberd 23.01 sends count - max_items when max_items exceeds
// the node's size): treat a negative index as 0.
type RSMSet struct {
	Count      *int
	FirstIndex *int
	First      string
	Last       string
}

// ItemsReply is the parsed <pubsub><items/></pubsub> of an items result.
type ItemsReply struct {
	Node  string
	Items []Item
	// RSM is nil when the reply carried no <set/> (the service did not page).
	RSM *RSMSet
}

// Subscription is one <subscription/> element.
type Subscription struct {
	Node         string
	JID          string
	SubID        string
	Subscription string // "subscribed", "pending", "unconfigured", "none"
}

// maxDepth bounds nesting in what the daemon interprets itself: the stanza
// around the items, RSM sets, forms, subscriptions. Item payloads are not
// interpreted here: they are cut out by offsets whatever their depth (see
// [scanner.payload]); a payload the daemon cannot interpret is still carried
// byte for byte and only its parse (in the cache's parser) fails.
const maxDepth = 256

// errTooDeep is returned for absurdly nested input.
var errTooDeep = errors.New("xml nested too deeply")

// scanner walks XML with byte offsets.
type scanner struct {
	src []byte
	dec *xml.Decoder
}

func newScanner(src []byte) *scanner {
	d := xml.NewDecoder(bytes.NewReader(src))
	d.Strict = true
	return &scanner{src: src, dec: d}
}

// next returns the next token and the offset where it starts.
func (s *scanner) next() (xml.Token, int64, error) {
	off := s.dec.InputOffset()
	tok, err := s.dec.Token()
	return tok, off, err
}

// skip consumes tokens up to the end of the element whose start was just
// read, and returns the offset where its end tag starts. Nesting deeper than
// maxDepth is refused.
func (s *scanner) skip() (int64, error) { return s.skipTo(maxDepth) }

// skipTo is skip with a depth limit (0: none). Without a limit it keeps a
// counter only: the decoder's stack of open names is all the memory that
// grows with depth, no tree is built.
func (s *scanner) skipTo(limit int) (int64, error) {
	depth := 1
	for {
		tok, off, err := s.next()
		if err != nil {
			return 0, err
		}
		switch tok.(type) {
		case xml.StartElement:
			depth++
			if limit > 0 && depth > limit {
				return 0, errTooDeep
			}
		case xml.EndElement:
			depth--
			if depth == 0 {
				return off, nil
			}
		}
	}
}

// children calls f for each child element at the top level of src (src is
// the inner XML of some element). f must consume the element (for instance
// with s.skip) before returning.
func (s *scanner) children(f func(start xml.StartElement) error) error {
	for {
		tok, _, err := s.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if err := f(t); err != nil {
				return err
			}
		case xml.EndElement:
			return fmt.Errorf("unexpected </%s>", t.Name.Local)
		}
	}
}

// inner returns the bytes of the element whose start tag was just read,
// between its start and end tags, and consumes it (depth bounded).
func (s *scanner) inner() ([]byte, error) { return s.innerTo(maxDepth) }

// payload is inner without a depth limit: an item's payload is carried, not
// interpreted.
func (s *scanner) payload() ([]byte, error) { return s.innerTo(0) }

func (s *scanner) innerTo(limit int) ([]byte, error) {
	begin := s.dec.InputOffset()
	end, err := s.skipTo(limit)
	if err != nil {
		return nil, err
	}
	if begin > end || end > int64(len(s.src)) {
		return nil, fmt.Errorf("bad element offsets %d..%d", begin, end)
	}
	return s.src[begin:end], nil
}

func attr(e xml.StartElement, name string) string {
	for _, a := range e.Attr {
		if a.Name.Local == name && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// readItem reads an <item> whose start tag was just read.
func (s *scanner) readItem(start xml.StartElement) (Item, error) {
	payload, err := s.payload()
	if err != nil {
		return Item{}, fmt.Errorf("item %q: %w", attr(start, "id"), err)
	}
	return Item{ID: attr(start, "id"), Publisher: attr(start, "publisher"), Payload: bytes.Clone(payload)}, nil
}

// ParseItems parses the inner XML of the <pubsub/> element of an items
// result: the <items node=…> with its <item>s and an optional RSM <set/>.
func ParseItems(inner []byte) (ItemsReply, error) {
	var r ItemsReply
	s := newScanner(inner)
	err := s.children(func(start xml.StartElement) error {
		switch {
		case start.Name.Local == "items":
			r.Node = attr(start, "node")
			r.Items = []Item{}
			return s.children2(func(c xml.StartElement) error {
				if c.Name.Local != "item" {
					_, err := s.skip()
					return err
				}
				it, err := s.readItem(c)
				if err != nil {
					return err
				}
				r.Items = append(r.Items, it)
				return nil
			})
		case start.Name.Local == "set" && start.Name.Space == NSRSM:
			set, err := s.readSet()
			if err != nil {
				return err
			}
			r.RSM = &set
			return nil
		default:
			_, err := s.skip()
			return err
		}
	})
	if err != nil {
		return ItemsReply{}, fmt.Errorf("parse items reply: %w", err)
	}
	if r.Items == nil {
		return ItemsReply{}, errors.New("parse items reply: no <items/> element")
	}
	return r, nil
}

// children2 calls f for each child of the element whose start tag was just
// read, then consumes its end tag.
func (s *scanner) children2(f func(start xml.StartElement) error) error {
	for {
		tok, _, err := s.next()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if err := f(t); err != nil {
				return err
			}
		case xml.EndElement:
			return nil
		}
	}
}

// text reads the character data of the element whose start was just read.
func (s *scanner) text() (string, error) {
	b, err := s.inner()
	if err != nil {
		return "", err
	}
	var out strings.Builder
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return out.String(), nil
		}
		if err != nil {
			return "", err
		}
		if cd, ok := tok.(xml.CharData); ok {
			out.Write(cd)
		}
	}
}

func (s *scanner) readSet() (RSMSet, error) {
	var set RSMSet
	err := s.children2(func(c xml.StartElement) error {
		switch c.Name.Local {
		case "count", "first", "last":
			idx := attr(c, "index")
			v, err := s.text()
			if err != nil {
				return err
			}
			switch c.Name.Local {
			case "count":
				n, err := strconv.Atoi(strings.TrimSpace(v))
				if err != nil || n < 0 {
					return fmt.Errorf("rsm count %q is not a count", v)
				}
				set.Count = &n
			case "first":
				set.First = v
				if idx != "" {
					// Kept as sent, negative values included: ejabberd 23.01
					// answers a max_items larger than the node with
					// index = count - max_items (e.g. -6).
					n, err := strconv.Atoi(strings.TrimSpace(idx))
					if err != nil {
						return fmt.Errorf("rsm first index %q is not an index", idx)
					}
					set.FirstIndex = &n
				}
			case "last":
				set.Last = v
			}
			return nil
		default:
			_, err := s.skip()
			return err
		}
	})
	return set, err
}

// ParsePublish returns the node and the item id of a publish result
// (<pubsub><publish node=…><item id=…/></publish></pubsub>). A result
// without a payload (allowed by XEP-0060) gives empty strings.
func ParsePublish(inner []byte) (node, id string, err error) {
	s := newScanner(inner)
	err = s.children(func(start xml.StartElement) error {
		if start.Name.Local != "publish" {
			_, err := s.skip()
			return err
		}
		node = attr(start, "node")
		return s.children2(func(c xml.StartElement) error {
			if c.Name.Local == "item" && id == "" {
				id = attr(c, "id")
			}
			_, err := s.skip()
			return err
		})
	})
	if err != nil {
		return "", "", fmt.Errorf("parse publish reply: %w", err)
	}
	return node, id, nil
}

// ParseSubscriptions returns the <subscription/> elements of a subscribe
// or subscriptions result.
func ParseSubscriptions(inner []byte) ([]Subscription, error) {
	out := []Subscription{}
	s := newScanner(inner)
	sub := func(c xml.StartElement) error {
		out = append(out, Subscription{Node: attr(c, "node"), JID: attr(c, "jid"), SubID: attr(c, "subid"), Subscription: attr(c, "subscription")})
		_, err := s.skip()
		return err
	}
	err := s.children(func(start xml.StartElement) error {
		switch start.Name.Local {
		case "subscription":
			return sub(start)
		case "subscriptions":
			return s.children2(func(c xml.StartElement) error {
				if c.Name.Local == "subscription" {
					return sub(c)
				}
				_, err := s.skip()
				return err
			})
		}
		_, err := s.skip()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("parse subscriptions: %w", err)
	}
	return out, nil
}

// Field is one data-form field.
type Field struct {
	Var    string
	Type   string
	Label  string
	Values []string
	// RangeMax is the max of the field's XEP-0122 <validate><range/>, ""
	// when it has none (Prosody puts the real cap behind max_items "max"
	// there).
	RangeMax string
}

// ParseConfigure returns the node and the fields of a node configuration
// form (<pubsub xmlns=…#owner><configure node=…><x xmlns='jabber:x:data'>).
func ParseConfigure(inner []byte) (node string, fields []Field, err error) {
	node, fields, err = parseForm(inner, "configure")
	if err != nil {
		return "", nil, fmt.Errorf("parse node configuration: %w", err)
	}
	return node, fields, nil
}

// ParseDefault returns the fields of a service's default node
// configuration (<pubsub xmlns=…#owner><default><x xmlns='jabber:x:data'>).
func ParseDefault(inner []byte) ([]Field, error) {
	_, fields, err := parseForm(inner, "default")
	if err != nil {
		return nil, fmt.Errorf("parse default node configuration: %w", err)
	}
	return fields, nil
}

// parseForm reads the data forms of the <pubsub#owner/> child el.
func parseForm(inner []byte, el string) (node string, fields []Field, err error) {
	s := newScanner(inner)
	err = s.children(func(start xml.StartElement) error {
		if start.Name.Local != el {
			_, err := s.skip()
			return err
		}
		node = attr(start, "node")
		return s.children2(func(c xml.StartElement) error {
			if c.Name.Local != "x" || c.Name.Space != NSDataForms {
				_, err := s.skip()
				return err
			}
			fs, err := s.readForm()
			fields = append(fields, fs...)
			return err
		})
	})
	return node, fields, err
}

func (s *scanner) readForm() ([]Field, error) {
	var fields []Field
	err := s.children2(func(c xml.StartElement) error {
		if c.Name.Local != "field" {
			_, err := s.skip()
			return err
		}
		f := Field{Var: attr(c, "var"), Type: attr(c, "type"), Label: attr(c, "label")}
		err := s.children2(func(v xml.StartElement) error {
			switch {
			case v.Name.Local == "value":
				t, err := s.text()
				f.Values = append(f.Values, t)
				return err
			case v.Name.Local == "validate" && v.Name.Space == NSValidate:
				return s.children2(func(r xml.StartElement) error {
					if r.Name.Local == "range" {
						f.RangeMax = attr(r, "max")
					}
					_, err := s.skip()
					return err
				})
			}
			_, err := s.skip()
			return err
		})
		fields = append(fields, f)
		return err
	})
	return fields, err
}

// EventKind says what a notification is about.
type EventKind string

// Notification kinds (the children of <event/>).
const (
	EventItems         EventKind = "items"
	EventPurge         EventKind = "purge"
	EventDelete        EventKind = "delete"
	EventConfiguration EventKind = "configuration"
	EventSubscription  EventKind = "subscription"
)

// Notification is one child of a pubsub <event/>.
type Notification struct {
	Kind EventKind
	Node string
	// Items are the published items; an item with HeaderOnly set carried no
	// payload (the subscriber must fetch it by id).
	Items []NotifiedItem
	// Retracted are the ids of <retract/>ed items (several per event).
	Retracted []string
	// Redirect is the <redirect uri=…/> of a delete.
	Redirect string
	// Subscription is set for subscription notifications.
	Subscription *Subscription
	// Config is the configuration form when the service included it.
	Config []Field
}

// NotifiedItem is an item of an items notification.
type NotifiedItem struct {
	Item
	HeaderOnly bool
}

// ParseEvent parses the inner XML of a pubsub <event/> element.
func ParseEvent(inner []byte) ([]Notification, error) {
	var out []Notification
	s := newScanner(inner)
	err := s.children(func(start xml.StartElement) error {
		n := Notification{Kind: EventKind(start.Name.Local), Node: attr(start, "node")}
		switch n.Kind {
		case EventItems:
			err := s.children2(func(c xml.StartElement) error {
				switch c.Name.Local {
				case "item":
					it, err := s.readItem(c)
					if err != nil {
						return err
					}
					n.Items = append(n.Items, NotifiedItem{Item: it, HeaderOnly: len(bytes.TrimSpace(it.Payload)) == 0})
					return nil
				case "retract":
					n.Retracted = append(n.Retracted, attr(c, "id"))
				}
				_, err := s.skip()
				return err
			})
			if err != nil {
				return err
			}
		case EventPurge:
			if _, err := s.skip(); err != nil {
				return err
			}
		case EventDelete:
			err := s.children2(func(c xml.StartElement) error {
				if c.Name.Local == "redirect" {
					n.Redirect = attr(c, "uri")
				}
				_, err := s.skip()
				return err
			})
			if err != nil {
				return err
			}
		case EventConfiguration:
			err := s.children2(func(c xml.StartElement) error {
				if c.Name.Local == "x" && c.Name.Space == NSDataForms {
					fs, err := s.readForm()
					n.Config = append(n.Config, fs...)
					return err
				}
				_, err := s.skip()
				return err
			})
			if err != nil {
				return err
			}
		case EventSubscription:
			n.Subscription = &Subscription{Node: n.Node, JID: attr(start, "jid"), SubID: attr(start, "subid"), Subscription: attr(start, "subscription")}
			if _, err := s.skip(); err != nil {
				return err
			}
		default:
			// Unknown kinds (e.g. collection) are skipped, not errors.
			_, err := s.skip()
			return err
		}
		out = append(out, n)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("parse pubsub event: %w", err)
	}
	return out, nil
}
