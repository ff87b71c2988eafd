// Package gamma declares alpha: with alpha declaring gamma this is a cycle.
package gamma

// ImportName is the plugin's import name.
const ImportName = "gamma"

type info struct {
	ImportName   string
	Dependencies []string
}

var Info = info{ImportName: ImportName, Dependencies: []string{"alpha"}}
