package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Plugin describes a plugin and holds its handlers. Name and at least one
// analyser are required; Parse is required when an analyser names a parser,
// and Match when an analyser sets Match.
type Plugin struct {
	// Name identifies the plugin in the daemon (logs, `backend plugins list`);
	// lowercase letters, digits, '-' and '_'.
	Name string
	// Version is the plugin's own version, free text (e.g. "1.2.0").
	Version string
	// Analysers are the analysers the plugin provides.
	Analysers []Analyser
	// Params are the per-profile parameters the plugin declares. Their keys
	// ("category.name") must not clash with the daemon's own.
	Params []Param

	// Parse turns a batch of items into JSON. It returns one result per
	// item, in the order of req.Items; a per-item failure goes in
	// ParseResult.Err, an error return fails the whole batch. ParseEach
	// builds a Parse from a per-item function.
	Parse func(ctx context.Context, req ParseRequest) ([]ParseResult, error)
	// Match refines the choice of an analyser that sets Match, for one node.
	Match func(ctx context.Context, req MatchRequest) (MatchResult, error)
	// Configure receives the parameter values of a profile (every declared
	// key, canonical text), at start and after each change; values is nil
	// when the profile was deleted. Calls for one profile never overlap.
	Configure func(ctx context.Context, profile string, values map[string]string) error
}

// Analyser decides which pubsub nodes the plugin handles. A node matches when
// its name starts with NodePrefix, or when the payload of its first item has
// the namespace PayloadNamespace (at least one of the two is required; the
// prefix is tested first). The daemon tries analysers by descending Priority,
// then by Name, and the first match wins.
type Analyser struct {
	// Name is unique among all analysers of the daemon; lowercase.
	Name string
	// Type is the human word stored with the node, used by search and purge
	// filters (e.g. "blog").
	Type string
	// Subtype is the default subtype of matching nodes (Match may refine it).
	Subtype string
	// NodePrefix matches node names that start with it.
	NodePrefix string
	// PayloadNamespace matches the namespace of the first child of <item>.
	PayloadNamespace string
	// ToSync says that matching nodes are cached whole and kept fresh.
	ToSync bool
	// Parser names the parser the daemon asks Parse to apply (it comes back
	// in ParseRequest.Parser); empty means the items are stored unparsed.
	Parser string
	// Priority orders analysers: higher first.
	Priority int32
	// IndexedPaths are dotted JSON paths of the parsed data that searches
	// filter or sort on often (e.g. "author.name", "tags").
	IndexedPaths []string
	// Match asks the daemon to call Plugin.Match for nodes this analyser
	// matches, before using it.
	Match bool
}

// ParamType is the type of a per-profile parameter's value.
type ParamType string

// The parameter types; values travel as canonical text.
const (
	// ParamBool is "true" or "false".
	ParamBool ParamType = "bool"
	// ParamInt is a base-10 64-bit integer, optionally within Min..Max.
	ParamInt ParamType = "int"
	// ParamString is any UTF-8 text without NUL bytes.
	ParamString ParamType = "string"
	// ParamEnum is one of Choices.
	ParamEnum ParamType = "enum"
	// ParamDuration is a non-negative Go duration such as "1h30m0s".
	ParamDuration ParamType = "duration"
	// ParamList is a JSON array of strings.
	ParamList ParamType = "list"
	// ParamSecret is text stored encrypted and never displayed.
	ParamSecret ParamType = "secret"
)

// Param declares a per-profile parameter under the key Category + "." + Name.
type Param struct {
	// Category and Name are lowercase [a-z0-9_]+.
	Category, Name string
	// Type is the value's type.
	Type ParamType
	// Default is the default value as canonical text.
	Default string
	// Min and Max bound an int parameter, inclusively; either may be nil.
	Min, Max *int64
	// Choices lists the values of an enum parameter.
	Choices []string
	// Help is a one-line description for people.
	Help string
	// NeedsReconnect says that a change applies on the profile's next
	// connection.
	NeedsReconnect bool
}

// Key returns "category.name".
func (p Param) Key() string { return p.Category + "." + p.Name }

// Item is one pubsub item.
type Item struct {
	// ID is the item id.
	ID string
	// Publisher is the publisher's JID when the service told it, else "".
	Publisher string
	// Payload is the exact inner XML of <item> as the service sent it.
	Payload []byte
}

// ParseRequest is a batch of items of one node to parse.
type ParseRequest struct {
	// Profile is the profile the items were fetched for.
	Profile string
	// Service and Node locate the node.
	Service, Node string
	// Analyser is the analyser that matched the node; Parser its parser.
	Analyser, Parser string
	// Items are the items to parse.
	Items []Item
}

// ParseResult is the outcome for one item.
type ParseResult struct {
	// ID is the item's id.
	ID string
	// JSON is the parsed data: a JSON object.
	JSON json.RawMessage
	// SearchText is the text full-text search indexes for the item (without
	// markup), in addition to the payload's own text.
	SearchText string
	// Err, when set, says why the item could not be parsed; JSON and
	// SearchText are then ignored.
	Err error

	// encoded: JSON came from json.Marshal in this package (valid JSON:
	// only its kind is checked before it is sent).
	encoded bool
}

// MatchRequest asks whether an analyser applies to a node.
type MatchRequest struct {
	// Profile, Service and Node identify the node.
	Profile, Service, Node string
	// Analyser is the name of the analyser that matched.
	Analyser string
	// FirstItem is the node's first item, nil when the node is empty.
	FirstItem *Item
}

// MatchResult is the answer to a MatchRequest. Its zero value keeps the
// analyser with its declared subtype.
type MatchResult struct {
	// Drop says the analyser does not apply to the node after all.
	Drop bool
	// Subtype, when set, replaces the analyser's subtype for the node.
	Subtype string
}

// ParseEach returns a Parse function that calls fn for each item and turns
// its value into JSON: fn returns the parsed data (a json.RawMessage, []byte
// of JSON, or any value encoding/json marshals to an object), the search
// text, or an error for that item only. A panic in fn fails only its item.
func ParseEach(fn func(ctx context.Context, req ParseRequest, item Item) (data any, searchText string, err error)) func(context.Context, ParseRequest) ([]ParseResult, error) {
	return func(ctx context.Context, req ParseRequest) ([]ParseResult, error) {
		out := make([]ParseResult, len(req.Items))
		for i, it := range req.Items {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			out[i] = parseOne(ctx, req, it, fn)
		}
		return out, nil
	}
}

func parseOne(ctx context.Context, req ParseRequest, it Item, fn func(context.Context, ParseRequest, Item) (any, string, error)) (res ParseResult) {
	res.ID = it.ID
	defer func() {
		if r := recover(); r != nil {
			res = ParseResult{ID: it.ID, Err: fmt.Errorf("panic while parsing item: %v", r)}
		}
	}()
	data, text, err := fn(ctx, req, it)
	if err != nil {
		res.Err = err
		return res
	}
	raw, encoded, err := toJSON(data)
	if err != nil {
		res.Err = err
		return res
	}
	res.JSON, res.SearchText, res.encoded = raw, text, encoded
	return res
}

// toJSON returns data as JSON; encoded says json.Marshal made it.
func toJSON(data any) (json.RawMessage, bool, error) {
	switch v := data.(type) {
	case json.RawMessage:
		return v, false, nil
	case []byte:
		return json.RawMessage(v), false, nil
	}
	// Not HTML-escaped: the JSON is data for the daemon, never embedded in
	// a page as is, and escaping makes markup (content_xhtml) up to six
	// times larger to send, validate and store.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(data); err != nil {
		return nil, false, fmt.Errorf("encode parsed data: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), true, nil
}

var (
	pluginNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	identRE      = regexp.MustCompile(`^[a-z0-9_]+$`)
)

// Validate reports the first problem of the declaration: a missing name,
// an analyser without a prefix nor namespace, a duplicate, a parameter of
// unknown type, a missing handler.
func (p *Plugin) Validate() error {
	if p == nil {
		return errors.New("plugin is nil")
	}
	if !pluginNameRE.MatchString(p.Name) {
		return fmt.Errorf("plugin name %q: use lowercase letters, digits, '-' and '_'", p.Name)
	}
	if len(p.Analysers) == 0 {
		return fmt.Errorf("plugin %s declares no analyser", p.Name)
	}
	seen := map[string]bool{}
	for _, a := range p.Analysers {
		if a.Name == "" || a.Name != strings.ToLower(strings.TrimSpace(a.Name)) {
			return fmt.Errorf("plugin %s: analyser name %q must be non-empty, lowercase, without surrounding spaces", p.Name, a.Name)
		}
		if seen[a.Name] {
			return fmt.Errorf("plugin %s: analyser %q declared twice", p.Name, a.Name)
		}
		seen[a.Name] = true
		if a.Type == "" {
			return fmt.Errorf("plugin %s: analyser %q has no type", p.Name, a.Name)
		}
		if a.NodePrefix == "" && a.PayloadNamespace == "" {
			return fmt.Errorf("plugin %s: analyser %q needs a node prefix or a payload namespace", p.Name, a.Name)
		}
		if a.Parser != "" && p.Parse == nil {
			return fmt.Errorf("plugin %s: analyser %q names parser %q but the plugin has no Parse", p.Name, a.Name, a.Parser)
		}
		if a.Match && p.Match == nil {
			return fmt.Errorf("plugin %s: analyser %q asks for Match but the plugin has no Match", p.Name, a.Name)
		}
	}
	keys := map[string]bool{}
	for _, pr := range p.Params {
		if !identRE.MatchString(pr.Category) || !identRE.MatchString(pr.Name) {
			return fmt.Errorf("plugin %s: parameter %q: category and name must be lowercase [a-z0-9_]+", p.Name, pr.Key())
		}
		if keys[pr.Key()] {
			return fmt.Errorf("plugin %s: parameter %q declared twice", p.Name, pr.Key())
		}
		keys[pr.Key()] = true
		switch pr.Type {
		case ParamBool, ParamInt, ParamString, ParamEnum, ParamDuration, ParamList, ParamSecret:
		default:
			return fmt.Errorf("plugin %s: parameter %q has unknown type %q", p.Name, pr.Key(), pr.Type)
		}
		if pr.Type == ParamEnum && len(pr.Choices) == 0 {
			return fmt.Errorf("plugin %s: enum parameter %q has no choices", p.Name, pr.Key())
		}
	}
	return nil
}
