package main

import (
	"example.org/backend/core"
	"example.org/backend/plugins/xep0060"
)

// builtinPlugins lists the built-in plugins, explicitly (no init() magic).
// The core orders them by their declared dependencies.
func builtinPlugins() []core.Plugin {
	return []core.Plugin{
		xep0060.New(),
	}
}
