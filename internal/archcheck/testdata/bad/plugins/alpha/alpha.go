// Package alpha imports beta without declaring it (its import name is a
// constant, its dependency a selector: the checker resolves both).
package alpha

import (
	_ "example.org/bad/plugins/beta"
	"example.org/bad/plugins/gamma"
)

const importName = "alpha"

type info struct {
	ImportName   string
	Dependencies []string
}

var Info = info{ImportName: importName, Dependencies: []string{gamma.ImportName}}
