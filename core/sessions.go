package core

import (
	"context"
	"errors"

	"gosrc.io/xmpp/stanza"
)

// XMPP is what plugins use of one profile's XMPP session.
type XMPP interface {
	// JID is the bound full JID ("" while not connected).
	JID() string
	// SendIQRaw sends an IQ whose payload is raw XML and waits for the
	// reply (type "result"), or returns an error (an IQ error reply, the
	// context's, or a connection failure).
	SendIQRaw(ctx context.Context, to, typ, payloadXML string) (*stanza.IQ, error)
	// SendRaw sends one raw stanza.
	SendRaw(ctx context.Context, rawXML string) error
}

// Sessions gives plugins the sessions of connected profiles. The daemon
// installs the real implementation (core/connections); tests use fakes.
type Sessions interface {
	// Session returns the session of a connected profile, or an error
	// wrapping ErrNotConnected.
	Session(profile string) (XMPP, error)
	// AddFeatures adds disco features advertised by every session (e.g.
	// "urn:xmpp:microblog:0+notify"); presence with a new caps hash is
	// re-sent when the set changes.
	AddFeatures(owner string, features ...string)
	// RemoveFeatures removes the features of owner.
	RemoveFeatures(owner string)
}

// ErrNotConnected means the profile has no connected session.
var ErrNotConnected = errors.New("profile is not connected")

// NotConnectedError says which profile is not connected; it wraps
// ErrNotConnected. Its text is "profile NAME: profile is not connected".
type NotConnectedError struct{ Profile string }

func (e *NotConnectedError) Error() string {
	return "profile " + e.Profile + ": " + ErrNotConnected.Error()
}
func (e *NotConnectedError) Unwrap() error { return ErrNotConnected }

// NotConnected returns the error about profile not being connected.
func NotConnected(profile string) error { return &NotConnectedError{Profile: profile} }

// ErrUnknownProfile means no profile has that name.
var ErrUnknownProfile = errors.New("unknown profile")
