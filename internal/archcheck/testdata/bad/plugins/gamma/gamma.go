// Package gamma declares alpha: with alpha declaring gamma this is a cycle.
package gamma

type info struct {
	ImportName   string
	Dependencies []string
}

var Info = info{ImportName: "gamma", Dependencies: []string{"alpha"}}
