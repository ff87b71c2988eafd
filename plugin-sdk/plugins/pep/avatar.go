package pep

import (
	"strings"

	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/plugins/internal/safe"
)

// Avatar is parsed XEP-0084 avatar metadata.
type Avatar struct {
	// ID is the item id (the SHA-1 of the PNG data, per XEP-0084; Libervia
	// uses "current").
	ID string `json:"id"`
	// Disabled: the metadata is empty, which disables the avatar.
	Disabled bool `json:"disabled"`
	// Avatar is the info a client should use: the one whose id is the item
	// id, else the first image/png, else the first.
	Avatar   *AvatarInfo     `json:"avatar"`
	Infos    []AvatarInfo    `json:"infos"`
	Pointers []AvatarPointer `json:"pointers"`
}

// AvatarInfo is an <info/>: one format of the avatar.
type AvatarInfo struct {
	ID     *string `json:"id"`
	Type   *string `json:"type"`
	Bytes  *int64  `json:"bytes"`
	Width  *int64  `json:"width"`
	Height *int64  `json:"height"`
	// URL is where the data is over HTTP (http and https only), else null:
	// the data node holds it.
	URL *string `json:"url"`
}

// AvatarPointer is a <pointer/> to a third-party service: its attributes
// and the namespaces of its content.
type AvatarPointer struct {
	ID         *string  `json:"id"`
	Type       *string  `json:"type"`
	Bytes      *int64   `json:"bytes"`
	Width      *int64   `json:"width"`
	Height     *int64   `json:"height"`
	Namespaces []string `json:"namespaces"`
}

func parseAvatar(it sdk.Item) (any, string, error) {
	root, err := readTree(it.Payload, NSAvatarMetadata, "metadata", "XEP-0084 metadata")
	if err != nil {
		return nil, "", err
	}
	a := Avatar{ID: strings.TrimSpace(safe.Text(it.ID)), Infos: []AvatarInfo{}, Pointers: []AvatarPointer{}}
	for _, n := range root.children(NSAvatarMetadata, "info") {
		info := AvatarInfo{ID: textPtr(n.attr("id")), Type: textPtr(n.attr("type")), Bytes: number(n.attr("bytes")),
			Width: number(n.attr("width")), Height: number(n.attr("height"))}
		if u, ok := safe.URL(n.attr("url")); ok && (strings.HasPrefix(u, "http:") || strings.HasPrefix(u, "https:")) {
			info.URL = &u
		}
		a.Infos = append(a.Infos, info)
	}
	for _, n := range root.children(NSAvatarMetadata, "pointer") {
		p := AvatarPointer{ID: textPtr(n.attr("id")), Type: textPtr(n.attr("type")), Bytes: number(n.attr("bytes")),
			Width: number(n.attr("width")), Height: number(n.attr("height")), Namespaces: []string{}}
		for _, k := range n.kids {
			p.Namespaces = append(p.Namespaces, safe.Text(k.name.Space))
		}
		a.Pointers = append(a.Pointers, p)
	}
	a.Disabled = len(a.Infos) == 0 && len(a.Pointers) == 0
	a.Avatar = primary(a.ID, a.Infos)
	return a, "", nil
}

// primary picks the info a client should use.
func primary(id string, infos []AvatarInfo) *AvatarInfo {
	for i := range infos {
		if infos[i].ID != nil && *infos[i].ID == id {
			return &infos[i]
		}
	}
	for i := range infos {
		if infos[i].Type != nil && strings.EqualFold(*infos[i].Type, "image/png") {
			return &infos[i]
		}
	}
	if len(infos) > 0 {
		return &infos[0]
	}
	return nil
}
