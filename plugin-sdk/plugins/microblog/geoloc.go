// The XEP-0080 location an entry may carry.

package microblog

import (
	"encoding/xml"
	"math"
	"strconv"
	"strings"

	"example.org/backend/plugin-sdk/plugins/internal/safe"
)

// NSGeoloc is the XEP-0080 namespace.
const NSGeoloc = "http://jabber.org/protocol/geoloc"

// Geoloc is a XEP-0080 location (the fields a post's place needs).
type Geoloc struct {
	Lat         *float64 `json:"lat,omitempty"`
	Lon         *float64 `json:"lon,omitempty"`
	Accuracy    *float64 `json:"accuracy,omitempty"`
	Country     *string  `json:"country,omitempty"`
	CountryCode *string  `json:"countrycode,omitempty"`
	Region      *string  `json:"region,omitempty"`
	Locality    *string  `json:"locality,omitempty"`
	Street      *string  `json:"street,omitempty"`
	PostalCode  *string  `json:"postalcode,omitempty"`
	Description *string  `json:"description,omitempty"`
	Text        *string  `json:"text,omitempty"`
	URI         *string  `json:"uri,omitempty"`
	Timestamp   *string  `json:"timestamp,omitempty"`
}

// readGeoloc reads a <geoloc/> (its start consumed).
func readGeoloc(dec *xml.Decoder) (*Geoloc, error) {
	g := &Geoloc{}
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return g, nil
		case xml.StartElement:
			s, err := readText(dec)
			if err != nil {
				return nil, err
			}
			if t.Name.Space != NSGeoloc {
				continue
			}
			switch t.Name.Local {
			case "lat", "lon", "accuracy":
				f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
				if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
					continue
				}
				*map[string]**float64{"lat": &g.Lat, "lon": &g.Lon, "accuracy": &g.Accuracy}[t.Name.Local] = &f
			case "country", "countrycode", "region", "locality", "street", "postalcode", "description", "text":
				*map[string]**string{"country": &g.Country, "countrycode": &g.CountryCode, "region": &g.Region,
					"locality": &g.Locality, "street": &g.Street, "postalcode": &g.PostalCode,
					"description": &g.Description, "text": &g.Text}[t.Name.Local] = textPtr(s)
			case "uri":
				g.URI = safe.URLPtr(s)
			case "timestamp":
				g.Timestamp = atomTime(s)
			}
		}
	}
}
