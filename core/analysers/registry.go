// Package analysers is the analyser/parser registry of DESIGN §4 and §6:
// built-in plugins and the external plugin host declare analysers (which
// nodes to cache and how to parse their items); the pubsub cache asks it
// which analyser applies to a node and parses items through it.
//
// # Persistence and versions
//
// Declarations are stored in the database, so the set of known analysers
// does not change when a plugin crashes, restarts or has not started yet: a
// provider that is down is a state (its items are "parse pending"), not a
// removal. The set has a version, stored with every node's analysis; it
// changes only when the declarations themselves change (a plugin installed,
// upgraded with other declarations, or removed), so nodes analysed under
// another version are re-analysed and others are not.
//
// # Order
//
// Analysers are tried by descending priority, then by name; the first whose
// node prefix and/or payload namespace match wins.
package analysers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"example.org/backend/core/storage"
	"example.org/backend/ent"
	"example.org/backend/ent/analyser"
	"example.org/backend/ent/analyserset"
	sdk "example.org/backend/plugin-sdk"
)

// Scope is the AnalyserSet row holding the daemon-wide version.
const Scope = "global"

// Provider parses items and refines matches for the analysers of one
// owner (an external plugin's host client, or a built-in implementation).
type Provider interface {
	Parse(ctx context.Context, req sdk.ParseRequest) ([]sdk.ParseResult, error)
	Match(ctx context.Context, req sdk.MatchRequest) (sdk.MatchResult, error)
}

// Analyser is a known analyser: its declaration and its owner.
type Analyser struct {
	sdk.Analyser
	Owner string
}

// Errors.
var (
	// ErrProviderDown means the analyser's owner is not running: parsing is
	// pending until it is back.
	ErrProviderDown = errors.New("analyser provider is not running")
	// ErrUnknownAnalyser means no analyser has that name.
	ErrUnknownAnalyser = errors.New("unknown analyser")
	// ErrConflict means another owner already declared that name.
	ErrConflict = errors.New("analyser declared by another plugin")
)

// Registry holds the known analysers. It is safe for concurrent use.
type Registry struct {
	store *storage.Store
	log   *slog.Logger

	// declMu serialises the changes of the declarations (Declare, Remove),
	// which write the database. mu guards the fields below; it is never
	// held during database I/O: code running inside a transaction reads
	// the registry (the cache's storing transactions ask for the indexed
	// paths), so holding mu while waiting for a transaction would
	// deadlock until SQLite's busy timeout.
	declMu    sync.Mutex
	mu        sync.RWMutex
	byName    map[string]Analyser
	ordered   []Analyser // by priority desc, then name
	providers map[string]Provider
	// versions are the owners' versions (their parsers' version: items a
	// new version did not parse are parsed again).
	versions map[string]string
	version  int64
	// changed is closed (and replaced) when a provider comes up.
	changed chan struct{}
}

// Normalize returns the canonical form of an analyser name (trimmed, lower
// case), as the ancestor did.
func Normalize(name string) string { return strings.ToLower(strings.TrimSpace(name)) }

// Open loads the persisted declarations and the set's version.
func Open(ctx context.Context, store *storage.Store, log *slog.Logger) (*Registry, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &Registry{store: store, log: log, byName: map[string]Analyser{}, providers: map[string]Provider{}}
	rows, err := store.Client.Analyser.Query().All(ctx)
	if err != nil {
		return nil, fmt.Errorf("load analysers: %w", err)
	}
	for _, row := range rows {
		r.byName[row.Name] = fromRow(row)
	}
	set, err := store.Client.AnalyserSet.Query().Where(analyserset.Scope(Scope)).Only(ctx)
	switch {
	case ent.IsNotFound(err):
		r.version = 0
	case err != nil:
		return nil, fmt.Errorf("load analyser set version: %w", err)
	default:
		r.version = set.Version
	}
	r.reorder()
	return r, nil
}

func fromRow(row *ent.Analyser) Analyser {
	a := Analyser{Owner: row.Plugin, Analyser: sdk.Analyser{
		Name: row.Name, Type: row.Type, ToSync: row.ToSync, Priority: int32(row.Priority), IndexedPaths: row.IndexedPaths,
	}}
	if row.Subtype != nil {
		a.Subtype = *row.Subtype
	}
	if row.NodePrefix != nil {
		a.NodePrefix = *row.NodePrefix
	}
	if row.Namespace != nil {
		a.PayloadNamespace = *row.Namespace
	}
	if row.Parser != nil {
		a.Parser = *row.Parser
	}
	return a
}

// Validate checks one declaration.
func Validate(a sdk.Analyser) error {
	switch {
	case Normalize(a.Name) == "":
		return errors.New("analyser without a name")
	case a.Type == "":
		return fmt.Errorf("analyser %q: a type is required", a.Name)
	case a.NodePrefix == "" && a.PayloadNamespace == "":
		return fmt.Errorf("analyser %q: a node prefix or a payload namespace is required", a.Name)
	}
	return nil
}

// Declare records owner's analysers and makes p their provider (p may be
// nil when the owner has no parser and no match). Declarations of owner
// that are no longer declared are removed. The set's version changes only
// when the stored declarations change. All or nothing.
func (r *Registry) Declare(ctx context.Context, owner string, as []sdk.Analyser, p Provider) error {
	norm := make([]Analyser, 0, len(as))
	seen := map[string]bool{}
	for _, a := range as {
		if err := Validate(a); err != nil {
			return fmt.Errorf("plugin %s: %w", owner, err)
		}
		a.Name = Normalize(a.Name)
		if seen[a.Name] {
			return fmt.Errorf("plugin %s: analyser %q declared twice", owner, a.Name)
		}
		seen[a.Name] = true
		a.IndexedPaths = slices.Clone(a.IndexedPaths)
		norm = append(norm, Analyser{Analyser: a, Owner: owner})
	}
	r.declMu.Lock()
	defer r.declMu.Unlock()
	r.mu.RLock()
	var conflict error
	for _, a := range norm {
		if cur, ok := r.byName[a.Name]; ok && cur.Owner != owner {
			conflict = fmt.Errorf("%w: %q is %s's, not %s's", ErrConflict, a.Name, cur.Owner, owner)
			break
		}
	}
	next := map[string]Analyser{}
	for n, a := range r.byName {
		if a.Owner != owner {
			next[n] = a
		}
	}
	r.mu.RUnlock()
	if conflict != nil {
		return conflict
	}
	for _, a := range norm {
		next[a.Name] = a
	}
	version, err := r.persist(ctx, owner, norm, next)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byName, r.version = next, version
	if p != nil {
		r.providers[owner] = p
		r.signal()
	}
	r.reorder()
	return nil
}

// Remove forgets every analyser of owner (the plugin was uninstalled).
func (r *Registry) Remove(ctx context.Context, owner string) error {
	r.declMu.Lock()
	defer r.declMu.Unlock()
	r.mu.RLock()
	next := map[string]Analyser{}
	for n, a := range r.byName {
		if a.Owner != owner {
			next[n] = a
		}
	}
	r.mu.RUnlock()
	version, err := r.persist(ctx, owner, nil, next)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byName, r.version = next, version
	delete(r.providers, owner)
	r.reorder()
	return nil
}

// Owners lists the owners of known analysers.
func (r *Registry) Owners() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for _, a := range r.byName {
		if !slices.Contains(out, a.Owner) {
			out = append(out, a.Owner)
		}
	}
	slices.Sort(out)
	return out
}

// Down marks owner's provider as not running (its analysers stay known).
func (r *Registry) Down(owner string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.providers, owner)
}

// Up sets owner's provider (after a restart), without touching declarations.
func (r *Registry) Up(owner string, p Provider) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.providers[owner] = p
	r.signal()
}

// ProviderUp returns a channel closed the next time a provider comes up
// (declared or restarted): the cache then parses the items whose parse
// was pending.
func (r *Registry) ProviderUp() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.changed == nil {
		r.changed = make(chan struct{})
	}
	return r.changed
}

// signal wakes the waiters of ProviderUp; r.mu is held.
func (r *Registry) signal() {
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// persist writes owner's declarations and, when the whole set's digest
// changed, bumps the version; it returns the set's version. r.declMu is
// held, r.mu is not.
func (r *Registry) persist(ctx context.Context, owner string, mine []Analyser, next map[string]Analyser) (int64, error) {
	digest := digestOf(next)
	var version int64
	err := r.store.WithTx(ctx, func(tx *ent.Tx) error {
		set, err := tx.AnalyserSet.Query().Where(analyserset.Scope(Scope)).Only(ctx)
		if err != nil && !ent.IsNotFound(err) {
			return fmt.Errorf("read analyser set: %w", err)
		}
		if set != nil && set.Digest == digest {
			version = set.Version
			return nil // nothing changed: keep the rows and the version
		}
		if _, err := tx.Analyser.Delete().Where(analyser.Plugin(owner)).Exec(ctx); err != nil {
			return fmt.Errorf("delete analysers of %s: %w", owner, err)
		}
		for _, a := range mine {
			c := tx.Analyser.Create().SetName(a.Name).SetPlugin(owner).SetType(a.Type).SetToSync(a.ToSync).
				SetPriority(int(a.Priority)).SetIndexedPaths(a.IndexedPaths)
			if a.Subtype != "" {
				c.SetSubtype(a.Subtype)
			}
			if a.NodePrefix != "" {
				c.SetNodePrefix(a.NodePrefix)
			}
			if a.PayloadNamespace != "" {
				c.SetNamespace(a.PayloadNamespace)
			}
			if a.Parser != "" {
				c.SetParser(a.Parser)
			}
			if err := c.Exec(ctx); err != nil {
				return fmt.Errorf("store analyser %s: %w", a.Name, err)
			}
		}
		if set == nil {
			set, err = tx.AnalyserSet.Create().SetScope(Scope).SetVersion(1).SetDigest(digest).Save(ctx)
		} else {
			set, err = set.Update().SetVersion(set.Version + 1).SetDigest(digest).Save(ctx)
		}
		if err != nil {
			return fmt.Errorf("store analyser set version: %w", err)
		}
		version = set.Version
		r.log.Info("analyser set changed", "version", set.Version, "plugin", owner, "analysers", len(mine))
		return nil
	})
	return version, err
}

// digestOf fingerprints a set of declarations, independent of order.
func digestOf(m map[string]Analyser) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, n := range names {
		a := m[n]
		a.Match = false // a runtime capability, not part of the declaration stored
		enc.Encode(a)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (r *Registry) reorder() {
	r.ordered = r.ordered[:0]
	for _, a := range r.byName {
		r.ordered = append(r.ordered, a)
	}
	slices.SortFunc(r.ordered, func(a, b Analyser) int {
		if a.Priority != b.Priority {
			return int(b.Priority) - int(a.Priority)
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// Version is the current version of the analyser set (0 before any
// declaration).
func (r *Registry) Version() int64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.version
}

// All lists the known analysers in matching order.
func (r *Registry) All() []Analyser {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Clone(r.ordered)
}

// SetOwnerVersion records the version of an owner (a plugin: the version
// its parsers have).
func (r *Registry) SetOwnerVersion(owner, version string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.versions == nil {
		r.versions = map[string]string{}
	}
	r.versions[owner] = version
}

// ParserVersion returns the version of the analyser's parser (its owner's
// version; "" when unknown).
func (r *Registry) ParserVersion(name string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	a, ok := r.byName[Normalize(name)]
	if !ok {
		return ""
	}
	return r.versions[a.Owner]
}

// Lookup returns the analyser called name.
func (r *Registry) Lookup(name string) (Analyser, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	a, ok := r.byName[Normalize(name)]
	return a, ok
}

// Match returns the first analyser (in order) whose node prefix matches
// node and whose payload namespace matches namespace (each when set);
// allowed, when not nil, restricts the candidates (a profile's
// cache.analysers).
func (r *Registry) Match(node, namespace string, allowed func(name string) bool) (Analyser, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, a := range r.ordered {
		if allowed != nil && !allowed(a.Name) {
			continue
		}
		if a.NodePrefix != "" && !strings.HasPrefix(node, a.NodePrefix) {
			continue
		}
		if a.PayloadNamespace != "" && a.PayloadNamespace != namespace {
			continue
		}
		return a, true
	}
	return Analyser{}, false
}

// MatchEmpty returns the first analyser (in order) that applies to a node
// without items: by node prefix alone (a payload namespace needs an item
// to be checked; an analyser declaring only a namespace cannot match).
func (r *Registry) MatchEmpty(node string, allowed func(name string) bool) (Analyser, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, a := range r.ordered {
		if allowed != nil && !allowed(a.Name) {
			continue
		}
		if a.NodePrefix != "" && strings.HasPrefix(node, a.NodePrefix) {
			return a, true
		}
	}
	return Analyser{}, false
}

// Available reports whether the analyser's provider is running.
func (r *Registry) Available(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	a, ok := r.byName[Normalize(name)]
	if !ok {
		return false
	}
	_, up := r.providers[a.Owner]
	return up
}

// Parse parses items with the analyser's parser. It returns ErrProviderDown
// (wrapped) when the owner is not running: the caller keeps the raw items
// and marks them parse pending.
func (r *Registry) Parse(ctx context.Context, req sdk.ParseRequest) ([]sdk.ParseResult, error) {
	r.mu.RLock()
	a, ok := r.byName[Normalize(req.Analyser)]
	var p Provider
	if ok {
		p = r.providers[a.Owner]
	}
	r.mu.RUnlock()
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %q", ErrUnknownAnalyser, req.Analyser)
	case a.Parser == "":
		return nil, fmt.Errorf("analyser %q has no parser", a.Name)
	case p == nil:
		return nil, fmt.Errorf("analyser %q (plugin %s): %w", a.Name, a.Owner, ErrProviderDown)
	}
	req.Analyser, req.Parser = a.Name, a.Parser
	return p.Parse(ctx, req)
}

// Refine asks the analyser's owner to refine a match (when it declared a
// match callback); without one the analyser applies as declared.
func (r *Registry) Refine(ctx context.Context, req sdk.MatchRequest) (sdk.MatchResult, error) {
	r.mu.RLock()
	a, ok := r.byName[Normalize(req.Analyser)]
	var p Provider
	if ok {
		p = r.providers[a.Owner]
	}
	r.mu.RUnlock()
	if !ok {
		return sdk.MatchResult{}, fmt.Errorf("%w: %q", ErrUnknownAnalyser, req.Analyser)
	}
	if !a.Match {
		return sdk.MatchResult{}, nil
	}
	if p == nil {
		return sdk.MatchResult{}, fmt.Errorf("analyser %q (plugin %s): %w", a.Name, a.Owner, ErrProviderDown)
	}
	return p.Match(ctx, req)
}
