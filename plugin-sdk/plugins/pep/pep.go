// Package pep is the first-party plugin for the PEP data frontends read
// constantly: XEP-0402 bookmarks, XEP-0084 avatar metadata, XEP-0292
// vCard4 and XEP-0172 nicknames. One plugin, four analysers and parsers
// (README.md lists every parsed key). It is built with the public SDK
// only; the daemon runs it out of process by re-executing itself, and
// cmd/backend-plugin-pep is the same plugin as a standalone executable. It
// holds no state.
package pep

import (
	"context"
	"errors"
	"fmt"

	sdk "example.org/backend/plugin-sdk"
)

// Identity of the plugin.
const (
	PluginName = "pep"
	// Version is the plugin's version.
	Version = "0.1.0"
)

// Namespaces and nodes.
const (
	// NSBookmarks is XEP-0402's node and payload namespace.
	NSBookmarks = "urn:xmpp:bookmarks:1"
	// NSAvatarMetadata is XEP-0084's metadata node and payload namespace.
	NSAvatarMetadata = "urn:xmpp:avatar:metadata"
	// NodeVCard4 is XEP-0292's node; NSVCard4 its payload namespace.
	NodeVCard4 = "urn:xmpp:vcard4"
	NSVCard4   = "urn:ietf:params:xml:ns:vcard-4.0"
	// NSNick is XEP-0172's node and payload namespace.
	NSNick = "http://jabber.org/protocol/nick"
)

// Parser names.
const (
	ParserBookmarks = "bookmarks"
	ParserAvatar    = "avatar-metadata"
	ParserVCard4    = "vcard4"
	ParserNickname  = "nickname"
)

// ErrNotPayload is wrapped by the error for a payload a parser cannot read
// (another root element).
var ErrNotPayload = errors.New("not the expected payload")

// parsers are the parse functions by parser name.
var parsers = map[string]func(it sdk.Item) (any, string, error){
	ParserBookmarks: parseBookmark,
	ParserAvatar:    parseAvatar,
	ParserVCard4:    parseVCard,
	ParserNickname:  parseNick,
}

// New returns the plugin.
func New() *sdk.Plugin {
	return &sdk.Plugin{
		Name:    PluginName,
		Version: Version,
		Analysers: []sdk.Analyser{
			{Name: "xep-0402", Type: "bookmarks", NodePrefix: NSBookmarks, PayloadNamespace: NSBookmarks, ToSync: true,
				Parser: ParserBookmarks, IndexedPaths: []string{"jid", "name", "autojoin"}},
			{Name: "xep-0084", Type: "avatar", NodePrefix: NSAvatarMetadata, PayloadNamespace: NSAvatarMetadata, ToSync: true,
				Parser: ParserAvatar, IndexedPaths: []string{"avatar.id", "avatar.type"}},
			{Name: "xep-0292", Type: "vcard", NodePrefix: NodeVCard4, PayloadNamespace: NSVCard4, ToSync: true,
				Parser: ParserVCard4, IndexedPaths: []string{"fn", "nicknames"}},
			{Name: "xep-0172", Type: "nickname", NodePrefix: NSNick, PayloadNamespace: NSNick, ToSync: true,
				Parser: ParserNickname, IndexedPaths: []string{"nick"}},
		},
		Parse: sdk.ParseEach(parse),
	}
}

func parse(_ context.Context, req sdk.ParseRequest, it sdk.Item) (any, string, error) {
	p, ok := parsers[req.Parser]
	if !ok {
		return nil, "", fmt.Errorf("plugin %s has no parser %q", PluginName, req.Parser)
	}
	return p(it)
}
