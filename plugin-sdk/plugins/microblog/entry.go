package microblog

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"example.org/backend/plugin-sdk/plugins/internal/safe"
)

// NSAtom is the Atom namespace of XEP-0277 payloads.
const NSAtom = "http://www.w3.org/2005/Atom"

// NSThread is the Atom threading extension (RFC 4685) of replies.
const NSThread = "http://purl.org/syndication/thread/1.0"

// AttachmentsPrefix starts the name of an item's XEP-0470 attachments node.
const AttachmentsPrefix = "urn:xmpp:pubsub-attachments:1/"

const nsXML = "http://www.w3.org/XML/1998/namespace"

// Entry is the parsed form of a microblog item, after the ancestor's
// item2mbdata. A key whose value would be null (the entry does not say) is
// left out, at every level (omitempty on every pointer field); lists are
// always present, [] when empty (search tells [] from a missing key:
// "tags == []"); authors only when there are several. Times are RFC 3339
// UTC with second precision, so they sort as strings. Plain-text fields are safe.Text, URL fields passed
// safe.URL, *_xhtml fields the sanitiser; the README lists every key.
type Entry struct {
	// ID is the pubsub item id; Service and Node locate the item and URI
	// is its XMPP URI (XEP-0060 §12.21), nil when the service or node is
	// unknown.
	ID      string  `json:"id"`
	Service *string `json:"service,omitempty"`
	Node    *string `json:"node,omitempty"`
	URI     *string `json:"uri,omitempty"`
	// AtomID is the Atom <id>.
	AtomID *string `json:"atom_id,omitempty"`
	// Title is the plain-text title; TitleXHTML its sanitised XHTML when the
	// title is rich (and the profile keeps XHTML). A post without any
	// <content> (the usual XEP-0277 short post) has its title read as its
	// content, as Libervia does: title and title_xhtml are then null.
	Title      *string `json:"title,omitempty"`
	TitleXHTML *string `json:"title_xhtml,omitempty"`
	// Content is the plain-text body; ContentXHTML its sanitised XHTML (a
	// <div xmlns="http://www.w3.org/1999/xhtml">) when the body is rich.
	Content      *string `json:"content,omitempty"`
	ContentXHTML *string `json:"content_xhtml,omitempty"`
	// Summary and Rights are Atom's <summary> and <rights>, like Title.
	Summary      *string `json:"summary,omitempty"`
	SummaryXHTML *string `json:"summary_xhtml,omitempty"`
	Rights       *string `json:"rights,omitempty"`
	RightsXHTML  *string `json:"rights_xhtml,omitempty"`
	// Published and Updated are RFC 3339 UTC; Updated falls back to
	// Published.
	Published *string `json:"published,omitempty"`
	Updated   *string `json:"updated,omitempty"`
	// Language is the entry's xml:lang.
	Language *string `json:"language,omitempty"`
	// Author is the first <author> (as Atom readers take it), its JID
	// falling back to the item's publisher (when that author has no URI).
	// Authors are all of them, in order, only when there are several (nil
	// otherwise: the one author is Author), and Contributors the
	// <contributor>s.
	Author       Person   `json:"author"`
	Authors      []Person `json:"authors,omitempty"`
	Contributors []Person `json:"contributors"`
	// Tags are the terms of the categories, in order, without duplicates.
	Tags []string `json:"tags"`
	// Links are all the entry's links with an allowed URL, plus a link of
	// rel "content" for content that is not inline text.
	Links []Link `json:"links"`
	// Comments are the comment nodes the entry points to.
	Comments []Comment `json:"comments"`
	// InReplyTo are the posts this one replies to (thr:in-reply-to).
	InReplyTo []Reply `json:"in_reply_to"`
	// Repeated says the entry repeats another post (XEP-0277 §2.6).
	Repeated *Repeat `json:"repeated,omitempty"`
	// Attachments are the files attached to the post (rel enclosure, and
	// related, external, links), as Libervia reads them.
	Attachments []Attachment `json:"attachments"`
	// Geoloc is where the post was written (XEP-0080, XEP-0277 §6).
	Geoloc *Geoloc `json:"geoloc,omitempty"`
	// AttachmentsNode is the node of the item's XEP-0470 attachments
	// (noticed, reactions) on the same service; nil when the URI is.
	AttachmentsNode *string `json:"attachments_node,omitempty"`
}

// Person is an Atom person construct (author, contributor).
type Person struct {
	Name  *string `json:"name,omitempty"`
	URI   *string `json:"uri,omitempty"`
	Email *string `json:"email,omitempty"`
	// JID is the person's bare JID from an xmpp: URI (for the first
	// author, else the item's publisher).
	JID *string `json:"jid,omitempty"`
	// JIDVerified says that the item's publisher (as the service reported
	// it) is the person's JID.
	JIDVerified bool `json:"jid_verified"`
}

// Link is an Atom link.
type Link struct {
	Rel    string  `json:"rel"`
	Href   string  `json:"href"`
	Type   *string `json:"type,omitempty"`
	Title  *string `json:"title,omitempty"`
	Length *int64  `json:"length,omitempty"`
}

// Comment is a comments node (XEP-0277 <link rel="replies" title="comments">).
type Comment struct {
	URI     string `json:"uri"`
	Service string `json:"service"`
	Node    string `json:"node"`
}

// Reply is a thr:in-reply-to: the Atom id of the post replied to, and where
// it is.
type Reply struct {
	Ref  *string `json:"ref,omitempty"`
	Href *string `json:"href,omitempty"`
	Type *string `json:"type,omitempty"`
}

// Repeat describes a repeated post: who repeated it (the publisher) and the
// original (the rel="via" link).
type Repeat struct {
	By  *string `json:"by,omitempty"`
	URI string  `json:"uri"`
	Ref *string `json:"ref,omitempty"`
}

// Attachment is a file attached to a post.
type Attachment struct {
	URL       string  `json:"url"`
	MediaType *string `json:"media_type,omitempty"`
	Desc      *string `json:"desc,omitempty"`
	Size      *int64  `json:"size,omitempty"`
	// External is true for a rel="related" link (a page elsewhere), false
	// for an enclosure.
	External bool `json:"external"`
}

// Options change how an entry is parsed.
type Options struct {
	// DropXHTML leaves the *_xhtml fields nil (out of the JSON).
	DropXHTML bool
	// Service and Node locate the item (for service, node, uri and
	// attachments_node).
	Service, Node string
}

// ErrNotEntry is wrapped by the error for a payload that is not an Atom
// entry.
var ErrNotEntry = errors.New("not an Atom entry")

func ptr(s string) *string { return &s }

// textPtr is the output form of a plain-text value (nil when empty).
func textPtr(s string) *string { return safe.TextPtr(s) }

// ParseEntry parses the payload of a microblog item (an Atom <entry>) and
// returns it with its search text (title, content, summary and tags).
func ParseEntry(id, publisher string, payload []byte, opts Options) (*Entry, string, error) {
	dec := xml.NewDecoder(bytes.NewReader(payload))
	dec.Strict = true
	dec.Entity = xml.HTMLEntity
	var start xml.StartElement
	for {
		tok, err := dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, "", fmt.Errorf("%w: empty payload", ErrNotEntry)
			}
			return nil, "", fmt.Errorf("%w: %v", ErrNotEntry, err)
		}
		if s, ok := tok.(xml.StartElement); ok {
			start = s
			break
		}
	}
	if start.Name.Space != NSAtom || start.Name.Local != "entry" {
		return nil, "", fmt.Errorf("%w: root element is {%s}%s", ErrNotEntry, start.Name.Space, start.Name.Local)
	}
	e := &Entry{ID: id, Contributors: []Person{}, Tags: []string{}, Links: []Link{},
		Comments: []Comment{}, InReplyTo: []Reply{}, Attachments: []Attachment{}}
	if opts.Service != "" {
		e.Service = ptr(opts.Service)
	}
	if opts.Node != "" {
		e.Node = ptr(opts.Node)
	}
	if opts.Service != "" && opts.Node != "" {
		e.URI = ptr(ItemURI(opts.Service, opts.Node, id))
		e.AttachmentsNode = ptr(AttachmentsPrefix + *e.URI)
	}
	for _, a := range start.Attr {
		if a.Name.Space == nsXML && a.Name.Local == "lang" {
			e.Language = textPtr(a.Value)
		}
	}
	var title, content, summary, rights construct
	var published, updated string
	var contentLinks []Link
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, "", fmt.Errorf("read entry: %w", err)
		}
		if _, ok := tok.(xml.EndElement); ok {
			break // </entry>
		}
		el, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if el.Name.Space == NSThread && el.Name.Local == "in-reply-to" {
			e.InReplyTo = append(e.InReplyTo, Reply{Ref: textPtr(attr(el, "ref")), Href: safe.URLPtr(attr(el, "href")),
				Type: textPtr(attr(el, "type"))})
			if err := dec.Skip(); err != nil {
				return nil, "", fmt.Errorf("read in-reply-to: %w", err)
			}
			continue
		}
		if el.Name.Space == NSGeoloc && el.Name.Local == "geoloc" && e.Geoloc == nil {
			if e.Geoloc, err = readGeoloc(dec); err != nil {
				return nil, "", fmt.Errorf("read geoloc: %w", err)
			}
			continue
		}
		if el.Name.Space != NSAtom {
			if err := dec.Skip(); err != nil {
				return nil, "", fmt.Errorf("read entry: %w", err)
			}
			continue
		}
		switch el.Name.Local {
		case "title", "summary", "rights":
			r, isRich, err := readRich(dec, el)
			if err != nil {
				return nil, "", fmt.Errorf("read %s: %w", el.Name.Local, err)
			}
			map[string]*construct{"title": &title, "summary": &summary, "rights": &rights}[el.Name.Local].add(r, isRich)
		case "content":
			c, err := readContent(dec, el, e.URI)
			if err != nil {
				return nil, "", fmt.Errorf("read content: %w", err)
			}
			content.seen = true
			if c.link != nil {
				contentLinks = append(contentLinks, *c.link)
			} else {
				content.add(c.r, c.isRich)
			}
		case "id", "published", "updated":
			s, err := readText(dec)
			if err != nil {
				return nil, "", fmt.Errorf("read %s: %w", el.Name.Local, err)
			}
			switch el.Name.Local {
			case "id":
				e.AtomID = textPtr(s)
			case "published":
				published = s
			case "updated":
				updated = s
			}
		case "author", "contributor":
			p, err := readPerson(dec)
			if err != nil {
				return nil, "", fmt.Errorf("read %s: %w", el.Name.Local, err)
			}
			if el.Name.Local == "author" {
				e.Authors = append(e.Authors, p)
			} else {
				e.Contributors = append(e.Contributors, p)
			}
		case "category":
			if term := strings.TrimSpace(safe.Text(attr(el, "term"))); term != "" && !contains(e.Tags, term) {
				e.Tags = append(e.Tags, term)
			}
			if err := dec.Skip(); err != nil {
				return nil, "", fmt.Errorf("read category: %w", err)
			}
		case "link":
			if err := dec.Skip(); err != nil {
				return nil, "", fmt.Errorf("read link: %w", err)
			}
			readLink(e, el, publisher)
		default:
			if err := dec.Skip(); err != nil {
				return nil, "", fmt.Errorf("read entry: %w", err)
			}
		}
	}
	e.Links = append(e.Links, contentLinks...)
	e.Title, e.TitleXHTML = pick(title, opts)
	e.Content, e.ContentXHTML = pick(content, opts)
	e.Summary, e.SummaryXHTML = pick(summary, opts)
	e.Rights, e.RightsXHTML = pick(rights, opts)
	if !content.seen { // a short post: its title is its content (Libervia)
		e.Content, e.ContentXHTML, e.Title, e.TitleXHTML = e.Title, e.TitleXHTML, nil, nil
	}
	e.Published = atomTime(published)
	e.Updated = atomTime(updated)
	if e.Updated == nil {
		e.Updated = e.Published
	}
	pub := bareJID(publisher)
	for i := range e.Authors {
		verify(&e.Authors[i], pub)
	}
	for i := range e.Contributors {
		verify(&e.Contributors[i], pub)
	}
	if len(e.Authors) > 0 {
		e.Author = e.Authors[0]
	}
	if len(e.Authors) < 2 { // Author says it all (see Entry)
		e.Authors = nil
	}
	if e.Author.JID == nil && e.Author.URI == nil && pub != "" { // no URI naming someone else
		e.Author.JID = ptr(pub)
		verify(&e.Author, pub)
	}
	if e.Repeated != nil && pub != "" {
		e.Repeated.By = ptr(pub)
	}
	return e, searchText(e), nil
}

// readLink adds the link el to e: to its links, and by its rel to its
// comments, repeat or attachments. Links with a URL that is not allowed
// are dropped.
func readLink(e *Entry, el xml.StartElement, publisher string) {
	href, ok := safe.URL(attr(el, "href"))
	if !ok {
		return
	}
	l := Link{Rel: strings.TrimSpace(safe.Text(attr(el, "rel"))), Href: href, Type: textPtr(attr(el, "type")),
		Title: textPtr(attr(el, "title")), Length: number(attr(el, "length"))}
	if l.Rel == "" {
		l.Rel = "alternate"
	}
	e.Links = append(e.Links, l)
	switch {
	case l.Rel == "replies" && l.Title != nil && *l.Title == "comments":
		if c, ok := parseXMPPNodeURI(l.Href); ok {
			e.Comments = append(e.Comments, c)
		}
	case l.Rel == "via" && e.Repeated == nil:
		e.Repeated = &Repeat{URI: l.Href, Ref: textPtr(attr(el, "ref"))}
	case l.Rel == "enclosure" || l.Rel == "related":
		e.Attachments = append(e.Attachments, Attachment{URL: l.Href, MediaType: l.Type, Desc: l.Title, Size: l.Length,
			External: l.Rel == "related"})
	}
}

// number reads a non-negative decimal attribute (nil when it is not one).
func number(s string) *int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return nil
	}
	return &n
}

// readPerson reads an Atom person construct; its JID comes from an xmpp:
// URI.
func readPerson(dec *xml.Decoder) (Person, error) {
	var p Person
	for {
		tok, err := dec.Token()
		if err != nil {
			return p, err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			if p.URI != nil {
				if rest, ok := strings.CutPrefix(*p.URI, "xmpp:"); ok {
					rest, _, _ = strings.Cut(rest, "?")
					if j, err := url.PathUnescape(rest); err == nil {
						p.JID = textPtr(bareJID(j))
					}
				}
			}
			return p, nil
		case xml.StartElement:
			if t.Name.Space != NSAtom {
				if err := dec.Skip(); err != nil {
					return p, err
				}
				continue
			}
			s, err := readText(dec)
			if err != nil {
				return p, err
			}
			switch t.Name.Local {
			case "name":
				p.Name = textPtr(s)
			case "uri":
				p.URI = safe.URLPtr(s)
			case "email":
				p.Email = textPtr(s)
			}
		}
	}
}

// verify sets whether the publisher vouches for the person's JID.
func verify(p *Person, pub string) {
	p.JIDVerified = pub != "" && p.JID != nil && strings.EqualFold(*p.JID, pub)
}

func bareJID(j string) string {
	j = strings.TrimSpace(j)
	j, _, _ = strings.Cut(j, "/")
	return j
}

// ItemURI is the XMPP URI of an item (XEP-0060 §12.21), written as Libervia
// writes it: xmpp:SERVICE?;node=NODE;item=ID, the node and id
// percent-encoded (RFC 3986 unreserved characters kept).
func ItemURI(service, node, id string) string {
	return "xmpp:" + uriEscape(service, "@") + "?;node=" + uriEscape(node, "") + ";item=" + uriEscape(id, "")
}

func uriEscape(s, keep string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', strings.IndexByte("-._~", c) >= 0,
			strings.IndexByte(keep, c) >= 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// parseXMPPNodeURI reads "xmpp:service?;node=NODE" (XEP-0060 URIs).
func parseXMPPNodeURI(href string) (Comment, bool) {
	rest, ok := strings.CutPrefix(href, "xmpp:")
	if !ok {
		return Comment{}, false
	}
	path, query, _ := strings.Cut(rest, "?")
	service, err := url.PathUnescape(path)
	if err != nil || service == "" {
		return Comment{}, false
	}
	c := Comment{URI: href, Service: safe.Text(bareJID(service))}
	for _, part := range strings.Split(query, ";") {
		if v, ok := strings.CutPrefix(part, "node="); ok {
			n, err := url.QueryUnescape(v)
			if err != nil {
				return Comment{}, false
			}
			c.Node = safe.Text(n)
		}
	}
	if c.Node == "" {
		return Comment{}, false
	}
	return c, true
}

func attr(el xml.StartElement, name string) string {
	for _, a := range el.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// atomTime normalises an Atom date to RFC 3339 UTC (seconds); nil when it
// does not parse.
func atomTime(s string) *string {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return ptr(t.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

func searchText(e *Entry) string {
	var parts []string
	for _, p := range []*string{e.Title, e.Summary, e.Content} {
		if p != nil {
			parts = append(parts, *p)
		}
	}
	if len(e.Tags) > 0 {
		parts = append(parts, strings.Join(e.Tags, " "))
	}
	return strings.Join(parts, "\n")
}
