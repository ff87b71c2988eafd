// Package alpha imports beta without declaring it.
package alpha

import _ "example.org/bad/plugins/beta"

type info struct {
	ImportName   string
	Dependencies []string
}

var Info = info{ImportName: "alpha", Dependencies: []string{"gamma"}}
