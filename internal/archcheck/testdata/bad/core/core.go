// Package core violates the rules: it imports a plugin.
package core

import _ "example.org/bad/plugins/alpha"

// Info mirrors core.PluginInfo.
type Info struct {
	ImportName   string
	Dependencies []string
}
