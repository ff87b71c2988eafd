// Package beta declares a dependency on gamma, which declares one on alpha → cycle alpha→gamma→alpha.
package beta

type info struct {
	ImportName   string
	Dependencies []string
}

var Info = info{ImportName: "beta"}
