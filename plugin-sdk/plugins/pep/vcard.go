package pep

import (
	"strings"

	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/plugins/internal/safe"
)

// VCard is a parsed XEP-0292 vCard4 (RFC 6350 in RFC 6351's XML): the
// properties frontends show. Lists keep the vCard's order; values that
// are empty (or URLs that are not allowed) are left out.
type VCard struct {
	FN         *string   `json:"fn"`
	N          *Name     `json:"n"`
	Nicknames  []string  `json:"nicknames"`
	Pronouns   *string   `json:"pronouns"`
	Photos     []string  `json:"photos"`
	Bday       *string   `json:"bday"`
	Gender     *Gender   `json:"gender"`
	Emails     []Email   `json:"emails"`
	Tels       []Tel     `json:"tels"`
	Impps      []URI     `json:"impps"`
	URLs       []URI     `json:"urls"`
	Adrs       []Address `json:"adrs"`
	Geo        []string  `json:"geo"`
	Orgs       []string  `json:"orgs"`
	Titles     []string  `json:"titles"`
	Roles      []string  `json:"roles"`
	Notes      []string  `json:"notes"`
	Langs      []string  `json:"langs"`
	Categories []string  `json:"categories"`
}

// Name is the structured name (N).
type Name struct {
	Surname    *string `json:"surname"`
	Given      *string `json:"given"`
	Additional *string `json:"additional"`
	Prefix     *string `json:"prefix"`
	Suffix     *string `json:"suffix"`
}

// Gender is GENDER: its sex component (M, F, O, N, U) and identity.
type Gender struct {
	Sex      *string `json:"sex"`
	Identity *string `json:"identity"`
}

// Email is an EMAIL with its TYPE parameters.
type Email struct {
	Address string   `json:"address"`
	Types   []string `json:"types"`
}

// Tel is a TEL: a tel: URI, or a free-text number.
type Tel struct {
	URI   *string  `json:"uri"`
	Text  *string  `json:"text"`
	Types []string `json:"types"`
}

// URI is a URI-valued property (IMPP, URL) with its TYPE parameters.
type URI struct {
	URI   string   `json:"uri"`
	Types []string `json:"types"`
}

// Address is an ADR.
type Address struct {
	Types    []string `json:"types"`
	POBox    *string  `json:"pobox"`
	Ext      *string  `json:"ext"`
	Street   *string  `json:"street"`
	Locality *string  `json:"locality"`
	Region   *string  `json:"region"`
	Code     *string  `json:"code"`
	Country  *string  `json:"country"`
}

// valueKinds are the RFC 6351 value elements, in the order they are
// tried for a property's value.
var valueKinds = []string{"text", "uri", "date", "date-time", "date-and-or-time", "timestamp", "time",
	"language-tag", "integer", "float", "boolean", "utc-offset"}

// values returns the property's values of the kinds given (all kinds when
// none), trimmed, without empty ones.
func values(prop *node, kinds ...string) []string {
	if len(kinds) == 0 {
		kinds = valueKinds
	}
	var out []string
	for _, k := range prop.kids {
		if k.name.Space != NSVCard4 {
			continue
		}
		for _, kind := range kinds {
			if k.name.Local == kind {
				if v := strings.TrimSpace(k.text.String()); v != "" {
					out = append(out, v)
				}
			}
		}
	}
	return out
}

// first is the first value of the property, nil when none.
func first(prop *node, kinds ...string) *string {
	if v := values(prop, kinds...); len(v) > 0 {
		return textPtr(v[0])
	}
	return nil
}

// types are the property's TYPE parameters.
func types(prop *node) []string {
	out := []string{}
	if p := prop.child(NSVCard4, "parameters"); p != nil {
		for _, t := range p.children(NSVCard4, "type") {
			for _, v := range values(t, "text") {
				out = append(out, safe.Text(v))
			}
		}
	}
	return out
}

// component is the text of a structured property's component (n, adr).
func component(prop *node, name string) *string {
	c := prop.child(NSVCard4, name)
	if c == nil {
		return nil
	}
	if v := values(c, "text"); len(v) > 0 { // RFC 6351 allows <text> inside
		return textPtr(strings.Join(v, " "))
	}
	return textPtr(c.text.String())
}

func texts(dst []string, prop *node) []string {
	for _, v := range values(prop, "text") {
		if t := strings.TrimSpace(safe.Text(v)); t != "" {
			dst = append(dst, t)
		}
	}
	return dst
}

func parseVCard(it sdk.Item) (any, string, error) {
	root, err := readTree(it.Payload, NSVCard4, "vcard", "XEP-0292 vCard")
	if err != nil {
		return nil, "", err
	}
	v := VCard{Nicknames: []string{}, Photos: []string{}, Emails: []Email{}, Tels: []Tel{}, Impps: []URI{},
		URLs: []URI{}, Adrs: []Address{}, Geo: []string{}, Orgs: []string{}, Titles: []string{}, Roles: []string{},
		Notes: []string{}, Langs: []string{}, Categories: []string{}}
	for _, p := range root.kids {
		if p.name.Space != NSVCard4 {
			continue
		}
		switch p.name.Local {
		case "fn":
			if v.FN == nil {
				v.FN = first(p, "text")
			}
		case "n":
			if v.N == nil {
				v.N = &Name{Surname: component(p, "surname"), Given: component(p, "given"), Additional: component(p, "additional"),
					Prefix: component(p, "prefix"), Suffix: component(p, "suffix")}
			}
		case "nickname":
			v.Nicknames = texts(v.Nicknames, p)
		case "pronouns":
			if v.Pronouns == nil {
				v.Pronouns = first(p, "text")
			}
		case "photo":
			for _, u := range values(p, "uri") {
				if s, ok := safe.ImageURL(u); ok {
					v.Photos = append(v.Photos, s)
				}
			}
		case "bday":
			if v.Bday == nil {
				v.Bday = first(p, "date", "date-time", "date-and-or-time", "timestamp", "text")
			}
		case "gender":
			if v.Gender == nil {
				g := &Gender{Identity: component(p, "identity")}
				if s := p.child(NSVCard4, "sex"); s != nil {
					g.Sex = first(s, "text")
					if g.Sex == nil {
						g.Sex = textPtr(s.text.String())
					}
				}
				v.Gender = g
			}
		case "email":
			if a := first(p, "text"); a != nil {
				v.Emails = append(v.Emails, Email{Address: *a, Types: types(p)})
			}
		case "tel":
			t := Tel{Types: types(p)}
			if u := values(p, "uri"); len(u) > 0 {
				t.URI = safe.URLPtr(u[0])
			}
			t.Text = first(p, "text")
			if t.URI != nil || t.Text != nil {
				v.Tels = append(v.Tels, t)
			}
		case "impp", "url":
			for _, u := range values(p, "uri") {
				if s, ok := safe.URL(u); ok {
					if p.name.Local == "impp" {
						v.Impps = append(v.Impps, URI{URI: s, Types: types(p)})
					} else {
						v.URLs = append(v.URLs, URI{URI: s, Types: types(p)})
					}
				}
			}
		case "adr":
			v.Adrs = append(v.Adrs, Address{Types: types(p), POBox: component(p, "pobox"), Ext: component(p, "ext"),
				Street: component(p, "street"), Locality: component(p, "locality"), Region: component(p, "region"),
				Code: component(p, "code"), Country: component(p, "country")})
		case "geo":
			for _, u := range values(p, "uri") {
				if s, ok := safe.URL(u); ok {
					v.Geo = append(v.Geo, s)
				}
			}
		case "org":
			if o := values(p, "text"); len(o) > 0 {
				v.Orgs = append(v.Orgs, strings.TrimSpace(safe.Text(strings.Join(o, ", "))))
			}
		case "title":
			v.Titles = texts(v.Titles, p)
		case "role":
			v.Roles = texts(v.Roles, p)
		case "note":
			v.Notes = texts(v.Notes, p)
		case "lang":
			for _, l := range values(p, "language-tag") {
				v.Langs = append(v.Langs, safe.Text(l))
			}
		case "categories":
			v.Categories = texts(v.Categories, p)
		}
	}
	return v, vcardText(&v), nil
}

// vcardText is the search text: names, nicknames, organisations, titles,
// roles, notes, e-mail addresses and places.
func vcardText(v *VCard) string {
	var parts []string
	add := func(p *string) {
		if p != nil && *p != "" {
			parts = append(parts, *p)
		}
	}
	add(v.FN)
	if v.N != nil {
		add(v.N.Given)
		add(v.N.Surname)
	}
	parts = append(parts, v.Nicknames...)
	parts = append(parts, v.Orgs...)
	parts = append(parts, v.Titles...)
	parts = append(parts, v.Roles...)
	parts = append(parts, v.Notes...)
	for _, e := range v.Emails {
		parts = append(parts, e.Address)
	}
	for _, a := range v.Adrs {
		add(a.Locality)
		add(a.Region)
		add(a.Country)
	}
	return strings.Join(parts, "\n")
}
