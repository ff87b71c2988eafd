// Package microblog is the first-party XEP-0277 microblog plugin: an
// analyser for microblog nodes and one for their comments nodes, and
// parsers that turn Atom entries into JSON like the ancestor's
// item2mbdata (README.md lists every key). It is built
// with the public SDK only; the daemon runs it out of process by re-executing
// itself, and cmd/backend-plugin-microblog is the same plugin as a standalone
// executable.
package microblog

import (
	"context"
	"fmt"
	"strings"
	"sync"

	sdk "example.org/backend/plugin-sdk"
)

// Identity of the plugin and its analyser.
const (
	PluginName   = "microblog"
	AnalyserName = "xep-0277"
	ParserName   = "microblog"
	// CommentsAnalyserName and CommentsParserName handle comments nodes.
	CommentsAnalyserName = "xep-0277-comments"
	CommentsParserName   = "microblog-comments"
	// NodePrefix is the XEP-0277 node (and prefix of its comment nodes).
	NodePrefix = "urn:xmpp:microblog:0"
	// CommentsPrefix starts the names of comment nodes.
	CommentsPrefix = "urn:xmpp:microblog:0:comments/"
	// ParamKeepXHTML is the per-profile parameter saying whether to keep
	// title_xhtml and content_xhtml.
	ParamKeepXHTML = "microblog.keep_xhtml"
)

// Version is the plugin's version.
const Version = "0.3.0"

// New returns the plugin, with its own per-profile state.
func New() *sdk.Plugin {
	s := &state{dropXHTML: map[string]bool{}}
	return &sdk.Plugin{
		Name:    PluginName,
		Version: Version,
		Analysers: []sdk.Analyser{{
			Name:             AnalyserName,
			Type:             "blog",
			NodePrefix:       NodePrefix,
			PayloadNamespace: NSAtom,
			ToSync:           true,
			Parser:           ParserName,
			Priority:         0,
			IndexedPaths:     []string{"tags", "author.name", "author.jid", "published", "updated"},
			Match:            true,
		}, {
			// Before xep-0277 (higher priority): comments nodes also start
			// with its prefix. A profile that leaves this analyser out of
			// cache.analysers has its comments nodes read by xep-0277
			// (subtype "comment" too).
			Name:             CommentsAnalyserName,
			Type:             "blog",
			Subtype:          "comment",
			NodePrefix:       CommentsPrefix,
			PayloadNamespace: NSAtom,
			ToSync:           true,
			Parser:           CommentsParserName,
			Priority:         10,
			IndexedPaths:     []string{"parent_item", "author.jid", "published"},
		}},
		Params: []sdk.Param{{
			Category: "microblog", Name: "keep_xhtml", Type: sdk.ParamBool, Default: "true",
			Help: "keep the XHTML of titles and contents (title_xhtml, content_xhtml) in parsed microblog items",
		}},
		Parse:     sdk.ParseEach(s.parse),
		Match:     match,
		Configure: s.configure,
	}
}

// state is the per-profile configuration.
type state struct {
	mu        sync.RWMutex
	dropXHTML map[string]bool
}

func (s *state) configure(_ context.Context, profile string, values map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if values == nil {
		delete(s.dropXHTML, profile)
		return nil
	}
	v, ok := values[ParamKeepXHTML]
	if !ok {
		delete(s.dropXHTML, profile)
		return nil
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true":
		delete(s.dropXHTML, profile)
	case "false":
		s.dropXHTML[profile] = true
	default:
		return fmt.Errorf("%s: %q is not true or false", ParamKeepXHTML, v)
	}
	return nil
}

func (s *state) parse(_ context.Context, req sdk.ParseRequest, it sdk.Item) (any, string, error) {
	s.mu.RLock()
	opts := Options{DropXHTML: s.dropXHTML[req.Profile], Service: req.Service, Node: req.Node}
	s.mu.RUnlock()
	if req.Parser == CommentsParserName {
		return ParseComment(it.ID, it.Publisher, it.Payload, opts)
	}
	e, text, err := ParseEntry(it.ID, it.Publisher, it.Payload, opts)
	if err != nil {
		return nil, "", err
	}
	return e, text, nil
}

// CommentEntry is a parsed comment: an Entry plus the post it comments.
type CommentEntry struct {
	*Entry
	// ParentItem is the item id of the commented post, from the comments
	// node's name (urn:xmpp:microblog:0:comments/ID); nil (left out of
	// the JSON) when the node does not have that form.
	ParentItem *string `json:"parent_item,omitempty"`
}

// ParseComment parses an item of a comments node (an Atom entry, XEP-0277
// §3.2).
func ParseComment(id, publisher string, payload []byte, opts Options) (*CommentEntry, string, error) {
	e, text, err := ParseEntry(id, publisher, payload, opts)
	if err != nil {
		return nil, "", err
	}
	c := &CommentEntry{Entry: e}
	if rest, ok := strings.CutPrefix(opts.Node, CommentsPrefix); ok {
		c.ParentItem = textPtr(rest)
	}
	return c, text, nil
}

// match gives comment nodes the subtype "comment".
func match(_ context.Context, req sdk.MatchRequest) (sdk.MatchResult, error) {
	if strings.HasPrefix(req.Node, CommentsPrefix) {
		return sdk.MatchResult{Subtype: "comment"}, nil
	}
	return sdk.MatchResult{}, nil
}
