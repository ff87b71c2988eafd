package microblog

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/html"
)

// NSAtom is the Atom namespace of XEP-0277 payloads.
const NSAtom = "http://www.w3.org/2005/Atom"

const nsXML = "http://www.w3.org/XML/1998/namespace"

// Entry is the parsed form of a microblog item, after the ancestor's
// item2mbdata. Every key is always present: null when the entry does not
// say, [] for empty lists. Times are RFC 3339 UTC with second precision, so
// they sort as strings.
type Entry struct {
	// ID is the pubsub item id.
	ID string `json:"id"`
	// AtomID is the Atom <id>.
	AtomID *string `json:"atom_id"`
	// Title is the plain-text title; TitleXHTML its sanitised XHTML when the
	// title is rich (and the profile keeps XHTML).
	Title      *string `json:"title"`
	TitleXHTML *string `json:"title_xhtml"`
	// Content is the plain-text body; ContentXHTML its sanitised XHTML (a
	// <div xmlns="http://www.w3.org/1999/xhtml">) when the body is rich.
	Content      *string `json:"content"`
	ContentXHTML *string `json:"content_xhtml"`
	// Published and Updated are RFC 3339 UTC; Updated falls back to
	// Published.
	Published *string `json:"published"`
	Updated   *string `json:"updated"`
	// Language is the entry's xml:lang.
	Language *string `json:"language"`
	// Author describes the author.
	Author Author `json:"author"`
	// Tags are the terms of the categories, in order, without duplicates.
	Tags []string `json:"tags"`
	// Links are all the entry's links.
	Links []Link `json:"links"`
	// Comments are the comment nodes the entry points to.
	Comments []Comment `json:"comments"`
}

// Author is the entry's author.
type Author struct {
	Name  *string `json:"name"`
	URI   *string `json:"uri"`
	Email *string `json:"email"`
	// JID is the author's bare JID: from an xmpp: URI, else the item's
	// publisher.
	JID *string `json:"jid"`
	// JIDVerified says that the item's publisher (as the service reported
	// it) is the author's JID.
	JIDVerified bool `json:"jid_verified"`
}

// Link is an Atom link.
type Link struct {
	Rel   string  `json:"rel"`
	Href  string  `json:"href"`
	Type  *string `json:"type"`
	Title *string `json:"title"`
}

// Comment is a comments node (XEP-0277 <link rel="replies" title="comments">).
type Comment struct {
	URI     string `json:"uri"`
	Service string `json:"service"`
	Node    string `json:"node"`
}

// Options change how an entry is parsed.
type Options struct {
	// DropXHTML leaves TitleXHTML and ContentXHTML null.
	DropXHTML bool
}

// ErrNotEntry is wrapped by the error for a payload that is not an Atom
// entry.
var ErrNotEntry = errors.New("not an Atom entry")

func ptr(s string) *string { return &s }

func nonEmpty(s string) *string {
	if s = strings.TrimSpace(cleanChars(s)); s == "" {
		return nil
	}
	return &s
}

// ParseEntry parses the payload of a microblog item (an Atom <entry>) and
// returns it with its search text (title, content and tags).
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
	e := &Entry{ID: id, Tags: []string{}, Links: []Link{}, Comments: []Comment{}}
	for _, a := range start.Attr {
		if a.Name.Space == nsXML && a.Name.Local == "lang" {
			e.Language = nonEmpty(a.Value)
		}
	}
	var titleText, titleRich, contentText, contentRich *rich
	var published, updated string
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
		if el.Name.Space != NSAtom {
			if err := dec.Skip(); err != nil {
				return nil, "", fmt.Errorf("read entry: %w", err)
			}
			continue
		}
		switch el.Name.Local {
		case "title", "content":
			r, isRich, err := readRich(dec, el)
			if err != nil {
				return nil, "", fmt.Errorf("read %s: %w", el.Name.Local, err)
			}
			text, richp := &titleText, &titleRich
			if el.Name.Local == "content" {
				text, richp = &contentText, &contentRich
			}
			switch {
			case isRich && *richp == nil:
				*richp = &r
			case !isRich && *text == nil:
				*text = &r
			}
		case "id", "published", "updated":
			s, err := readText(dec)
			if err != nil {
				return nil, "", fmt.Errorf("read %s: %w", el.Name.Local, err)
			}
			switch el.Name.Local {
			case "id":
				e.AtomID = nonEmpty(s)
			case "published":
				published = s
			case "updated":
				updated = s
			}
		case "author":
			if err := readAuthor(dec, &e.Author); err != nil {
				return nil, "", fmt.Errorf("read author: %w", err)
			}
		case "category":
			if term := strings.TrimSpace(cleanChars(attr(el, "term"))); term != "" && !contains(e.Tags, term) {
				e.Tags = append(e.Tags, term)
			}
			if err := dec.Skip(); err != nil {
				return nil, "", fmt.Errorf("read category: %w", err)
			}
		case "link":
			l := Link{Rel: strings.TrimSpace(attr(el, "rel")), Href: strings.TrimSpace(cleanChars(attr(el, "href"))),
				Type: nonEmpty(attr(el, "type")), Title: nonEmpty(attr(el, "title"))}
			if l.Rel == "" {
				l.Rel = "alternate"
			}
			if err := dec.Skip(); err != nil {
				return nil, "", fmt.Errorf("read link: %w", err)
			}
			if l.Href == "" {
				continue
			}
			e.Links = append(e.Links, l)
			if l.Rel == "replies" && l.Title != nil && *l.Title == "comments" {
				if c, ok := parseXMPPNodeURI(l.Href); ok {
					e.Comments = append(e.Comments, c)
				}
			}
		default:
			if err := dec.Skip(); err != nil {
				return nil, "", fmt.Errorf("read entry: %w", err)
			}
		}
	}
	e.Title, e.TitleXHTML = pick(titleText, titleRich, opts)
	e.Content, e.ContentXHTML = pick(contentText, contentRich, opts)
	e.Published = atomTime(published)
	e.Updated = atomTime(updated)
	if e.Updated == nil {
		e.Updated = e.Published
	}
	finishAuthor(&e.Author, publisher)
	return e, searchText(e), nil
}

// pick chooses the plain text (the text version, else the rich version's
// text) and the XHTML.
func pick(text, r *rich, opts Options) (*string, *string) {
	var plain, x *string
	if text != nil {
		plain = nonEmpty(text.text)
	}
	if r != nil {
		if plain == nil {
			plain = nonEmpty(r.text)
		}
		if !opts.DropXHTML {
			x = ptr(r.xhtml)
		}
	}
	return plain, x
}

// readRich reads a title or content element by its type: text (default),
// html (escaped HTML) or xhtml (an XHTML div).
func readRich(dec *xml.Decoder, el xml.StartElement) (r rich, isRich bool, err error) {
	switch strings.ToLower(strings.TrimSpace(attr(el, "type"))) {
	case "xhtml":
		root, err := xmlTree(dec, el)
		if err != nil {
			return rich{}, false, err
		}
		return sanitize(unwrapDiv(root)), true, nil
	case "html", "text/html":
		s, err := readText(dec)
		if err != nil {
			return rich{}, false, err
		}
		root, err := htmlTree(s)
		if err != nil { // e.g. nesting too deep to build a tree: keep the text
			return rich{text: tidyText(cleanChars(htmlText(s)))}, false, nil
		}
		return sanitize(root), true, nil
	default:
		s, err := readText(dec)
		if err != nil {
			return rich{}, false, err
		}
		return rich{text: strings.TrimSpace(cleanChars(s))}, false, nil
	}
}

// unwrapDiv returns the XHTML div that Atom wraps xhtml content in, or root
// when the content is not wrapped.
func unwrapDiv(root *html.Node) *html.Node {
	var div *html.Node
	for c := root.FirstChild; c != nil; c = c.NextSibling {
		switch {
		case c.Type == html.TextNode && strings.TrimSpace(c.Data) == "":
		case c.Type == html.ElementNode && c.Data == "div" && div == nil:
			div = c
		default:
			return root
		}
	}
	if div == nil {
		return root
	}
	return div
}

func readAuthor(dec *xml.Decoder, a *Author) error {
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil
		case xml.StartElement:
			if t.Name.Space != NSAtom {
				if err := dec.Skip(); err != nil {
					return err
				}
				continue
			}
			s, err := readText(dec)
			if err != nil {
				return err
			}
			switch t.Name.Local {
			case "name":
				a.Name = nonEmpty(s)
			case "uri":
				a.URI = nonEmpty(s)
			case "email":
				a.Email = nonEmpty(s)
			}
		}
	}
}

// finishAuthor sets the author's JID from an xmpp: URI or the publisher,
// and whether the publisher vouches for it.
func finishAuthor(a *Author, publisher string) {
	pub := bareJID(publisher)
	if a.URI != nil {
		if rest, ok := strings.CutPrefix(*a.URI, "xmpp:"); ok {
			rest, _, _ = strings.Cut(rest, "?")
			if j, err := url.PathUnescape(rest); err == nil {
				a.JID = nonEmpty(bareJID(j))
			}
		}
	}
	if a.JID == nil && pub != "" {
		a.JID = ptr(pub)
	}
	a.JIDVerified = pub != "" && a.JID != nil && strings.EqualFold(*a.JID, pub)
}

func bareJID(j string) string {
	j = strings.TrimSpace(j)
	j, _, _ = strings.Cut(j, "/")
	return j
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
	c := Comment{URI: href, Service: bareJID(service)}
	for _, part := range strings.Split(query, ";") {
		if v, ok := strings.CutPrefix(part, "node="); ok {
			if c.Node, err = url.QueryUnescape(v); err != nil {
				return Comment{}, false
			}
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
	if e.Title != nil {
		parts = append(parts, *e.Title)
	}
	if e.Content != nil {
		parts = append(parts, *e.Content)
	}
	if len(e.Tags) > 0 {
		parts = append(parts, strings.Join(e.Tags, " "))
	}
	return strings.Join(parts, "\n")
}
