package pep

import (
	"strings"

	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/plugins/internal/safe"
)

// Bookmark is a parsed XEP-0402 bookmark. The password is not part of it
// (parsed data is indexed and returned by searches): has_password says
// there is one, and the raw item holds it.
type Bookmark struct {
	// JID is the room's JID: the item id.
	JID         string      `json:"jid"`
	Name        *string     `json:"name"`
	Autojoin    bool        `json:"autojoin"`
	Nick        *string     `json:"nick"`
	HasPassword bool        `json:"has_password"`
	Extensions  []Extension `json:"extensions"`
}

// Extension names an element of a bookmark's <extensions/>.
type Extension struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func parseBookmark(it sdk.Item) (any, string, error) {
	root, err := readTree(it.Payload, NSBookmarks, "conference", "XEP-0402 conference")
	if err != nil {
		return nil, "", err
	}
	b := Bookmark{JID: strings.TrimSpace(safe.Text(it.ID)), Name: textPtr(root.attr("name")),
		Autojoin: xmlBool(root.attr("autojoin")), Extensions: []Extension{}}
	if n := root.child(NSBookmarks, "nick"); n != nil {
		b.Nick = textPtr(n.text.String())
	}
	b.HasPassword = root.child(NSBookmarks, "password") != nil
	if ext := root.child(NSBookmarks, "extensions"); ext != nil {
		for _, k := range ext.kids {
			b.Extensions = append(b.Extensions, Extension{Namespace: safe.Text(k.name.Space), Name: safe.Text(k.name.Local)})
		}
	}
	var text []string
	for _, p := range []*string{b.Name, &b.JID, b.Nick} {
		if p != nil && *p != "" {
			text = append(text, *p)
		}
	}
	return b, strings.Join(text, "\n"), nil
}
