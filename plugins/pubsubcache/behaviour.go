package pubsubcache

import (
	"context"
	"fmt"
	"sync"

	"example.org/backend/ent"
	"example.org/backend/ent/serviceprofile"
)

// behaviour is how one service behaves where the protocol leaves room
// (DESIGN §6), learned by observation and stored (service_profiles).
type behaviour struct {
	RSM            serviceprofile.Rsm
	IDsOrder       serviceprofile.IdsOrder
	RepublishMoves serviceprofile.RepublishMoves
	MaxItemsRSM    serviceprofile.MaxItemsRsm
	// PublisherInResults says whether items answers carry the publisher
	// attribute ("yes", "no", "" unknown): Prosody puts it in notifications
	// only, and the cache serves what answers would carry. Stored in extra.
	PublisherInResults string
	// RSM index reporting, learned from the service's RSM answers (stored
	// in extra): EmptyIndex is what <first index/> says on an answer with
	// no items (count only, a page past the end): "minus_one" (ejabberd)
	// or "absent"; BeforeIndex on a page asked with <before>CURSOR</before>:
	// "real" (the first item's index), "unclamped" (the cursor's index
	// minus max, negative near the start: ejabberd) or "absent". "" is
	// unknown: such requests go to the network until learned.
	EmptyIndex, BeforeIndex string
}

func unknownBehaviour() behaviour {
	return behaviour{RSM: serviceprofile.RsmUnknown, IDsOrder: serviceprofile.IdsOrderUnknown,
		RepublishMoves: serviceprofile.RepublishMovesUnknown, MaxItemsRSM: serviceprofile.MaxItemsRsmUnknown}
}

// Keys of service_profiles.extra.
const (
	extraPublisher   = "publisher_in_results"
	extraEmptyIndex  = "rsm_empty_index"
	extraBeforeIndex = "rsm_before_index"
)

type svcKey struct {
	profileID int
	service   string
}

// behaviours caches the stored behaviour profiles.
type behaviours struct {
	client *ent.Client
	mu     sync.Mutex
	m      map[svcKey]behaviour
}

func newBehaviours(c *ent.Client) *behaviours {
	return &behaviours{client: c, m: map[svcKey]behaviour{}}
}

// get returns the behaviour of service as seen by profileID.
func (b *behaviours) get(ctx context.Context, profileID int, service string) behaviour {
	k := svcKey{profileID, service}
	b.mu.Lock()
	v, ok := b.m[k]
	b.mu.Unlock()
	if ok {
		return v
	}
	v = unknownBehaviour()
	if r, err := b.client.ServiceProfile.Query().Where(serviceprofile.ProfileID(profileID), serviceprofile.Service(service)).Only(ctx); err == nil {
		v = behaviour{RSM: r.Rsm, IDsOrder: r.IdsOrder, RepublishMoves: r.RepublishMoves, MaxItemsRSM: r.MaxItemsRsm}
		v.PublisherInResults, _ = r.Extra[extraPublisher].(string)
		v.EmptyIndex, _ = r.Extra[extraEmptyIndex].(string)
		v.BeforeIndex, _ = r.Extra[extraBeforeIndex].(string)
	}
	b.mu.Lock()
	b.m[k] = v
	b.mu.Unlock()
	return v
}

// learn applies change to the behaviour of service and stores it when it
// changed.
func (b *behaviours) learn(ctx context.Context, profileID int, service string, change func(*behaviour)) error {
	cur := b.get(ctx, profileID, service)
	next := cur
	change(&next)
	if next == cur {
		return nil
	}
	b.mu.Lock()
	b.m[svcKey{profileID, service}] = next
	b.mu.Unlock()
	err := b.client.ServiceProfile.Create().SetProfileID(profileID).SetService(service).
		SetRsm(next.RSM).SetIdsOrder(next.IDsOrder).SetRepublishMoves(next.RepublishMoves).SetMaxItemsRsm(next.MaxItemsRSM).
		SetExtra(map[string]any{extraPublisher: next.PublisherInResults, extraEmptyIndex: next.EmptyIndex, extraBeforeIndex: next.BeforeIndex}).
		OnConflictColumns(serviceprofile.FieldProfileID, serviceprofile.FieldService).UpdateNewValues().Exec(ctx)
	if err != nil {
		return fmt.Errorf("store behaviour of %s: %w", service, err)
	}
	return nil
}
