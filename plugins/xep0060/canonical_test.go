package xep0060

import (
	"context"
	"errors"
	"testing"

	"example.org/backend/core/jid"
)

// TestServiceCanonical: service addresses given by callers and taken from
// stanzas are keyed by their canonical form (RFC 7622), so that
// "PubSub.Example.ORG." and "pubsub.example.org" are one cache key; what
// is not a JID is refused as an invalid request.
func TestServiceCanonical(t *testing.T) {
	c := &Client{}
	for in, want := range map[string]string{
		"pubsub.example.org":  "pubsub.example.org",
		"PubSub.Example.ORG.": "pubsub.example.org",
		"Alice@Example.org":   "alice@example.org",
		"ＰＵＢＳＵＢ.example.org":  "pubsub.example.org",
	} {
		got, err := c.Service(context.Background(), "p", in)
		if err != nil || got != want {
			t.Errorf("Service(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := c.Service(context.Background(), "p", "pub sub.example.org"); !errors.Is(err, ErrInvalidRequest) || !errors.Is(err, jid.ErrInvalid) {
		t.Errorf("Service of an invalid address: %v, want ErrInvalidRequest and jid.ErrInvalid", err)
	}
	for in, want := range map[string]string{
		"Alice@Example.org/Phone": "alice@example.org",
		"PUBSUB.example.org":      "pubsub.example.org",
		"not a jid/x":             "not a jid",
	} {
		if got := bare(in); got != want {
			t.Errorf("bare(%q) = %q, want %q", in, got, want)
		}
	}
	if got := canonicalFrom("PubSub.Example.org"); got != "pubsub.example.org" {
		t.Errorf("canonicalFrom = %q", got)
	}
}
