package pubsubcache

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"example.org/backend/core/storage"
	"example.org/backend/ent"
	"example.org/backend/ent/analyserset"
	"example.org/backend/ent/profile"
	"example.org/backend/ent/pubsubnode"
	"example.org/backend/ent/serviceprofile"
)

// nodeStore is the cache's storage: every SQL statement of the package is
// in store.go and store_items.go. It owns the profile id cache; it holds
// no other state. Methods taking an *ent.Client run on it (a transaction's
// client, or the store's).
type nodeStore struct {
	db *storage.Store

	mu   sync.Mutex
	pids map[string]int // profile name → id, filled on first use
}

func newNodeStore(db *storage.Store) *nodeStore {
	return &nodeStore{db: db, pids: map[string]int{}}
}

var errUnknownProfile = errors.New("unknown profile")

// ph returns the i-th (1-based) placeholder of the dialect.
func (s *nodeStore) ph(i int) string {
	if s.db.Dialect == storage.DriverPostgres {
		return "$" + strconv.Itoa(i)
	}
	return "?"
}

// placeholders returns n placeholders from the (from+1)-th on, comma
// separated.
func (s *nodeStore) placeholders(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s.ph(from + i + 1))
	}
	return b.String()
}

// profileID returns the id of the profile called name.
func (s *nodeStore) profileID(ctx context.Context, name string) (int, error) {
	s.mu.Lock()
	id, ok := s.pids[name]
	s.mu.Unlock()
	if ok {
		return id, nil
	}
	id, err := s.db.Client.Profile.Query().Where(profile.NameEQ(name)).OnlyID(ctx)
	if err != nil {
		if ent.IsNotFound(err) {
			return 0, fmt.Errorf("profile %q: %w", name, errUnknownProfile)
		}
		return 0, fmt.Errorf("look up profile %q: %w", name, err)
	}
	s.mu.Lock()
	s.pids[name] = id
	s.mu.Unlock()
	return id, nil
}

// forgetProfile drops the cached id of a profile (it was deleted).
func (s *nodeStore) forgetProfile(name string) {
	s.mu.Lock()
	delete(s.pids, name)
	s.mu.Unlock()
}

// fromRow converts a node row (its analysis as stored; toSync and parser
// are filled from the registry by the caller).
func fromRow(r *ent.PubsubNode) nodeInfo {
	n := nodeInfo{id: r.ID, profileID: r.ProfileID, state: r.SyncState, fresh: r.Fresh, subscribed: r.Subscribed,
		attempts: r.Attempts, maxItems: r.MaxItems, pep: isPEP(r.Service)}
	if r.AnalyserVersion != nil {
		n.analysed, n.version = true, *r.AnalyserVersion
	}
	if r.Analyser != nil {
		n.analyser = *r.Analyser
	}
	if r.Type != nil {
		n.typ = *r.Type
	}
	if r.Subtype != nil {
		n.subtype = *r.Subtype
	}
	if r.NextAttemptAt != nil {
		n.nextAttempt = *r.NextAttemptAt
	}
	if r.LastError != nil {
		n.lastError = *r.LastError
	}
	if r.SyncedAt != nil {
		n.syncedAt = *r.SyncedAt
	}
	n.capacity = jsonInt(r.Limits["capacity"])
	n.capSource, _ = r.Limits["capacity_source"].(string)
	n.verified = jsonInt(r.Limits["verified"])
	n.capCandidate = jsonInt(r.Limits["capacity_candidate"])
	n.publishModel, _ = r.Limits["publish_model"].(string)
	n.resume, _ = r.Extra["resume"].(bool)
	return n
}

// jsonInt reads a number decoded from JSON (0 when it is none).
func jsonInt(v any) int {
	f, _ := v.(float64)
	return int(f)
}

// loadedNode is a node row with its key.
type loadedNode struct {
	key nodeKey
	n   nodeInfo
}

// loadNodes reads every node row (with its profile's name).
func (s *nodeStore) loadNodes(ctx context.Context, c *ent.Client) ([]loadedNode, error) {
	rows, err := c.PubsubNode.Query().WithProfile().All(ctx)
	if err != nil {
		return nil, fmt.Errorf("read cached nodes: %w", err)
	}
	out := make([]loadedNode, 0, len(rows))
	for _, r := range rows {
		if r.Edges.Profile == nil {
			continue
		}
		out = append(out, loadedNode{key: nodeKey{r.Edges.Profile.Name, r.Service, r.Name}, n: fromRow(r)})
	}
	return out, nil
}

// createNode returns the node row (state never), creating it when missing.
func (s *nodeStore) createNode(ctx context.Context, c *ent.Client, profileID int, service, node string) (nodeInfo, error) {
	err := c.PubsubNode.Create().SetProfileID(profileID).SetService(service).SetName(node).
		OnConflictColumns(pubsubnode.FieldProfileID, pubsubnode.FieldService, pubsubnode.FieldName).DoNothing().Exec(ctx)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nodeInfo{}, fmt.Errorf("create node %s on %s: %w", node, service, err)
	}
	r, err := c.PubsubNode.Query().Where(pubsubnode.ProfileID(profileID), pubsubnode.Service(service), pubsubnode.Name(node)).Only(ctx)
	if err != nil {
		return nodeInfo{}, fmt.Errorf("read node %s on %s: %w", node, service, err)
	}
	return fromRow(r), nil
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nilIfZero(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// saveNode writes the node's analysis and state.
func (s *nodeStore) saveNode(ctx context.Context, c *ent.Client, n nodeInfo, stateChanged bool) error {
	u := c.PubsubNode.UpdateOneID(n.id).
		SetNillableAnalyser(nilIfEmpty(n.analyser)).SetNillableType(nilIfEmpty(n.typ)).SetNillableSubtype(nilIfEmpty(n.subtype)).
		SetSyncState(n.state).SetFresh(n.fresh).SetSubscribed(n.subscribed).SetAttempts(n.attempts).
		SetNillableNextAttemptAt(nilIfZero(n.nextAttempt)).SetNillableLastError(nilIfEmpty(n.lastError)).
		SetNillableSyncedAt(nilIfZero(n.syncedAt)).SetNillableMaxItems(n.maxItems).
		SetLimits(map[string]any{"capacity": n.capacity, "capacity_source": n.capSource, "verified": n.verified, "capacity_candidate": n.capCandidate, "publish_model": n.publishModel}).
		SetExtra(map[string]any{"resume": n.resume})
	if n.analyser == "" {
		u.ClearAnalyser().ClearType().ClearSubtype()
	}
	if n.analysed {
		u.SetAnalyserVersion(n.version)
	} else {
		u.ClearAnalyserVersion()
	}
	if n.nextAttempt.IsZero() {
		u.ClearNextAttemptAt()
	}
	if n.lastError == "" {
		u.ClearLastError()
	}
	if n.maxItems == nil {
		u.ClearMaxItems()
	}
	if stateChanged {
		u.SetSyncStateChangedAt(time.Now())
	}
	if err := u.Exec(ctx); err != nil {
		return fmt.Errorf("save node %d: %w", n.id, err)
	}
	return nil
}

// deleteNode removes a node row (its items go with it).
func (s *nodeStore) deleteNode(ctx context.Context, c *ent.Client, id int) error {
	if _, err := c.PubsubNode.Delete().Where(pubsubnode.ID(id)).Exec(ctx); err != nil {
		return fmt.Errorf("delete cached node: %w", err)
	}
	return nil
}

// deleteAllNodes removes every node row and item; it returns how many
// nodes there were.
func (s *nodeStore) deleteAllNodes(ctx context.Context, c *ent.Client) (int, error) {
	if _, err := c.PubsubItem.Delete().Exec(ctx); err != nil {
		return 0, fmt.Errorf("delete cached items: %w", err)
	}
	n, err := c.PubsubNode.Delete().Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("delete cached nodes: %w", err)
	}
	return n, nil
}

// loadBehaviour reads the stored behaviour of service as seen by a
// profile (ok false: none stored).
func (s *nodeStore) loadBehaviour(ctx context.Context, profileID int, service string) (behaviour, bool, error) {
	r, err := s.db.Client.ServiceProfile.Query().Where(serviceprofile.ProfileID(profileID), serviceprofile.Service(service)).Only(ctx)
	switch {
	case ent.IsNotFound(err):
		return behaviour{}, false, nil
	case err != nil:
		return behaviour{}, false, fmt.Errorf("read behaviour of %s: %w", service, err)
	}
	v := behaviour{RSM: r.Rsm, IDsOrder: r.IdsOrder, RepublishMoves: r.RepublishMoves, MaxItemsRSM: r.MaxItemsRsm}
	v.PublisherInResults, _ = r.Extra[extraPublisher].(string)
	v.EmptyIndex, _ = r.Extra[extraEmptyIndex].(string)
	v.BeforeIndex, _ = r.Extra[extraBeforeIndex].(string)
	return v, true, nil
}

// saveBehaviour stores the behaviour of service as seen by a profile.
func (s *nodeStore) saveBehaviour(ctx context.Context, profileID int, service string, b behaviour) error {
	err := s.db.Client.ServiceProfile.Create().SetProfileID(profileID).SetService(service).
		SetRsm(b.RSM).SetIdsOrder(b.IDsOrder).SetRepublishMoves(b.RepublishMoves).SetMaxItemsRsm(b.MaxItemsRSM).
		SetExtra(map[string]any{extraPublisher: b.PublisherInResults, extraEmptyIndex: b.EmptyIndex, extraBeforeIndex: b.BeforeIndex}).
		OnConflictColumns(serviceprofile.FieldProfileID, serviceprofile.FieldService).UpdateNewValues().Exec(ctx)
	if err != nil {
		return fmt.Errorf("store behaviour of %s: %w", service, err)
	}
	return nil
}

// indexScope is the analyser_sets row whose digest lists the parsed paths
// the search side table is complete for (one per line, sorted).
const indexScope = "search-index"

// builtIndexPaths returns the paths the search side table is complete for.
func (s *nodeStore) builtIndexPaths(ctx context.Context) ([]string, error) {
	row, err := s.db.Client.AnalyserSet.Query().Where(analyserset.Scope(indexScope)).Only(ctx)
	switch {
	case ent.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read the search index state: %w", err)
	}
	if row.Digest == "" {
		return nil, nil
	}
	return strings.Split(row.Digest, "\n"), nil
}

// setBuiltIndexPaths records the paths the side table is complete for.
func (s *nodeStore) setBuiltIndexPaths(ctx context.Context, paths []string) error {
	return s.db.WithTx(ctx, func(tx *ent.Tx) error {
		digest := strings.Join(paths, "\n")
		n, err := tx.AnalyserSet.Update().Where(analyserset.Scope(indexScope)).SetDigest(digest).SetChangedAt(time.Now()).Save(ctx)
		if err != nil || n > 0 {
			return err
		}
		return tx.AnalyserSet.Create().SetScope(indexScope).SetDigest(digest).Exec(ctx)
	})
}
