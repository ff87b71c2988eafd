package core

import (
	"context"
	"errors"

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

// SetParamSource installs the source plugins read profile parameters from
// (the daemon installs its profiles service before plugins start).
func (h *Host) SetParamSource(s ParamSource) { h.paramSrc = s }

// ProfileParams returns the profile's parameters resolved (profile value >
// daemon config > default), read-only. It returns ErrNoParamSource when the
// daemon installed no source (plugins then fall back to defaults).
func (h *Host) ProfileParams(ctx context.Context, profile string) ([]params.Resolved, error) {
	if h.paramSrc == nil {
		return nil, ErrNoParamSource
	}
	return h.paramSrc.Params(ctx, profile)
}
