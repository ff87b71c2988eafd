package main

import (
	"example.org/backend/core"
	"example.org/backend/plugins/pubsubcache"
	"example.org/backend/plugins/xep0060"
)

// builtinPlugins lists the built-in plugins, explicitly (no init() magic).
// The core orders them by their declared dependencies.
func builtinPlugins() []core.Plugin {
	pubsub := xep0060.New()
	return []core.Plugin{
		pubsub,
		pubsubcache.New(pubsub),
	}
}
