package core

import (
	"context"
	"errors"
	"sync"

	"example.org/backend/core/params"
)

// ParamSource resolves the parameters of a profile (the daemon's profiles
// service implements it).
type ParamSource interface {
	// Params returns every declared parameter resolved for the profile
	// (secrets masked).
	Params(ctx context.Context, profile string) ([]params.Resolved, error)
}

// ErrNoParamSource means no parameter source was installed on the host.
var ErrNoParamSource = errors.New("no parameter source installed on the host")

// paramSources holds the source installed on each host. It lives outside
// the Host struct so that this read-only accessor stays a separate file.
var paramSources sync.Map // *Host → ParamSource

// SetParamSource installs the source plugins read profile parameters from
// (the daemon installs its profiles service before plugins start).
func (h *Host) SetParamSource(s ParamSource) { paramSources.Store(h, s) }

// ProfileParams returns the profile's parameters resolved (profile value >
// daemon config > default), read-only. It returns ErrNoParamSource when the
// daemon installed no source (plugins then fall back to defaults).
func (h *Host) ProfileParams(ctx context.Context, profile string) ([]params.Resolved, error) {
	v, ok := paramSources.Load(h)
	if !ok {
		return nil, ErrNoParamSource
	}
	return v.(ParamSource).Params(ctx, profile)
}
