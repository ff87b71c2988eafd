package storage

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"example.org/backend/core/jid"
)

// A dataStep is Go code that is part of a migration: it runs in its own
// transaction right before the migration file it belongs to (named by its
// identifier, the file name after the version), with the database at the
// previous version. It must be idempotent: a crash between the step and
// the file runs it again.
type dataStep struct {
	migration string // identifier of the migration file, e.g. "canonical_jids"
	run       func(ctx context.Context, tx *sql.Tx, dialect string, log *slog.Logger) error
}

// dataSteps are the Go parts of migrations.
var dataSteps = []dataStep{
	{migration: "canonical_jids", run: canonicalJIDKeys},
}

// stepFor returns the data step of a migration file, or nil.
func stepFor(f migrationFile) *dataStep {
	for i := range dataSteps {
		if strings.HasSuffix(f.Name, "_"+dataSteps[i].migration) {
			return &dataSteps[i]
		}
	}
	return nil
}

// rebind turns the '?' placeholders of query into PostgreSQL's $n.
func rebind(dialect, query string) string {
	if dialect != DriverPostgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// canonicalJIDKeys rewrites the JIDs the daemon uses as keys to their
// canonical form (RFC 7622, core/jid): profiles.jid, pubsub_nodes.service
// and service_profiles.service. Node names and the publisher of stored
// items are not JID keys and stay as they are.
//
// Rows that become equal are merged: of the cached nodes of one profile
// that become the same (service, node), the best one is kept (the most
// advanced sync state, then the latest sync, then the latest change, then
// the oldest row) with fresh cleared, and the others are deleted with
// their items (the cache refills from the service); of the learned
// behaviours of one profile's services that become the same service, the
// latest learned is kept and its unknown observations are filled from the
// others. A stored value that is not a valid JID is left as it is (it can
// equal no canonical key) and logged. Each merge is logged.
func canonicalJIDKeys(ctx context.Context, tx *sql.Tx, dialect string, log *slog.Logger) error {
	q := func(s string) string { return rebind(dialect, s) }
	var report jidReport

	// profiles.jid: not a unique key, rewritten in place.
	rows, err := tx.QueryContext(ctx, `SELECT id, name, jid FROM profiles`)
	if err != nil {
		return fmt.Errorf("read profiles: %w", err)
	}
	type prof struct {
		id        int64
		name, jid string
	}
	var profs []prof
	for rows.Next() {
		var p prof
		if err := rows.Scan(&p.id, &p.name, &p.jid); err != nil {
			rows.Close()
			return fmt.Errorf("read profiles: %w", err)
		}
		profs = append(profs, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read profiles: %w", err)
	}
	for _, p := range profs {
		if p.jid == "" {
			continue
		}
		c, err := jid.Canonical(p.jid)
		if err != nil {
			report.invalid = append(report.invalid, fmt.Sprintf("profile %s: jid %q (%v)", p.name, p.jid, err))
			continue
		}
		if c == p.jid {
			continue
		}
		if _, err := tx.ExecContext(ctx, q(`UPDATE profiles SET jid = ? WHERE id = ?`), c, p.id); err != nil {
			return fmt.Errorf("rewrite the jid of profile %s: %w", p.name, err)
		}
		report.profiles++
	}

	// pubsub_nodes: unique (profile_id, service, name).
	nodes, err := readNodeRows(ctx, tx)
	if err != nil {
		return err
	}
	np := planNodeKeys(nodes)
	report.invalid = append(report.invalid, np.invalid...)
	for _, id := range np.remove {
		for _, stmt := range []string{
			`DELETE FROM pubsub_item_values WHERE item_id IN (SELECT id FROM pubsub_items WHERE node_id = ?)`,
			`DELETE FROM pubsub_items WHERE node_id = ?`,
			`DELETE FROM pubsub_nodes WHERE id = ?`,
		} {
			if _, err := tx.ExecContext(ctx, q(stmt), id); err != nil {
				return fmt.Errorf("merge cached node %d: %w", id, err)
			}
		}
	}
	for _, id := range sortedIDs(np.update) {
		if _, err := tx.ExecContext(ctx, q(`UPDATE pubsub_nodes SET service = ? WHERE id = ?`), np.update[id], id); err != nil {
			return fmt.Errorf("rewrite the service of cached node %d: %w", id, err)
		}
	}
	for _, id := range np.keptMerged {
		if _, err := tx.ExecContext(ctx, q(`UPDATE pubsub_nodes SET fresh = ? WHERE id = ?`), false, id); err != nil {
			return fmt.Errorf("merge cached node %d: %w", id, err)
		}
	}
	report.nodes, report.merges = len(np.update), append(report.merges, np.merges...)

	// service_profiles: unique (profile_id, service).
	services, err := readServiceRows(ctx, tx)
	if err != nil {
		return err
	}
	sp := planServiceKeys(services)
	report.invalid = append(report.invalid, sp.invalid...)
	for _, id := range sp.remove {
		if _, err := tx.ExecContext(ctx, q(`DELETE FROM service_profiles WHERE id = ?`), id); err != nil {
			return fmt.Errorf("merge service behaviour %d: %w", id, err)
		}
	}
	for _, id := range sortedIDs(sp.update) {
		if _, err := tx.ExecContext(ctx, q(`UPDATE service_profiles SET service = ? WHERE id = ?`), sp.update[id], id); err != nil {
			return fmt.Errorf("rewrite the service of service behaviour %d: %w", id, err)
		}
	}
	for _, id := range sortedIDs(sp.fill) {
		f := sp.fill[id]
		if _, err := tx.ExecContext(ctx, q(`UPDATE service_profiles SET rsm = ?, ids_order = ?, republish_moves = ?, max_items_rsm = ?, cursor_kind = ? WHERE id = ?`),
			f.obs[0], f.obs[1], f.obs[2], f.obs[3], f.obs[4], id); err != nil {
			return fmt.Errorf("merge service behaviour %d: %w", id, err)
		}
	}
	report.services, report.merges = len(sp.update), append(report.merges, sp.merges...)
	report.log(log)
	return nil
}

// jidReport is what canonicalJIDKeys did.
type jidReport struct {
	profiles, nodes, services int
	merges, invalid           []string
}

func (r jidReport) log(log *slog.Logger) {
	if r.profiles+r.nodes+r.services+len(r.merges) > 0 {
		log.Info("migration canonical_jids: JID keys rewritten", "profiles", r.profiles, "cached_nodes", r.nodes,
			"service_behaviours", r.services, "merged", len(r.merges))
	}
	for _, m := range r.merges {
		log.Info("migration canonical_jids: merged", "what", m)
	}
	for _, m := range r.invalid {
		log.Warn("migration canonical_jids: not a valid JID, left as it is", "what", m)
	}
}

func sortedIDs[V any](m map[int64]V) []int64 {
	ids := make([]int64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// nodeRow is what the merge of cached nodes reads of a pubsub_nodes row.
type nodeRow struct {
	ID, ProfileID int64
	Service, Name string
	SyncState     string
	SyncedAt      time.Time // zero when never synced
	UpdatedAt     time.Time
}

func readNodeRows(ctx context.Context, tx *sql.Tx) ([]nodeRow, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, profile_id, service, name, sync_state, synced_at, updated_at FROM pubsub_nodes`)
	if err != nil {
		return nil, fmt.Errorf("read cached nodes: %w", err)
	}
	defer rows.Close()
	var out []nodeRow
	for rows.Next() {
		var r nodeRow
		var synced sql.NullTime
		if err := rows.Scan(&r.ID, &r.ProfileID, &r.Service, &r.Name, &r.SyncState, &synced, &r.UpdatedAt); err != nil {
			return nil, fmt.Errorf("read cached nodes: %w", err)
		}
		r.SyncedAt = synced.Time
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read cached nodes: %w", err)
	}
	return out, nil
}

// syncRank orders sync states from the least to the most worth keeping.
var syncRank = map[string]int{"never": 0, "no_sync": 1, "error": 2, "in_progress": 3, "partial": 4, "complete": 5}

// betterNode reports whether a is the node to keep rather than b.
func betterNode(a, b nodeRow) bool {
	if ra, rb := syncRank[a.SyncState], syncRank[b.SyncState]; ra != rb {
		return ra > rb
	}
	if !a.SyncedAt.Equal(b.SyncedAt) {
		return a.SyncedAt.After(b.SyncedAt)
	}
	if !a.UpdatedAt.Equal(b.UpdatedAt) {
		return a.UpdatedAt.After(b.UpdatedAt)
	}
	return a.ID < b.ID
}

// keyPlan is what to do with the rows of one table.
type keyPlan struct {
	// update is the canonical key of the kept rows whose key changes.
	update map[int64]string
	// remove are the rows merged into another one.
	remove []int64
	// keptMerged are the kept rows that absorbed others.
	keptMerged []int64
	// fill holds merged observations of kept service behaviours.
	fill map[int64]serviceObs
	// merges and invalid describe the merges and the keys left alone.
	merges, invalid []string
}

// planNodeKeys plans the canonical service of every cached node and the
// merge of nodes that become equal.
func planNodeKeys(rows []nodeRow) keyPlan {
	p := keyPlan{update: map[int64]string{}}
	groups := map[string][]nodeRow{}
	var order []string
	canon := map[int64]string{}
	for _, r := range rows {
		c, err := jid.Canonical(r.Service)
		if err != nil {
			c = r.Service // no canonical key can equal it
			p.invalid = append(p.invalid, fmt.Sprintf("cached node %d: service %q (%v)", r.ID, r.Service, err))
		}
		canon[r.ID] = c
		k := strconv.FormatInt(r.ProfileID, 10) + "\x00" + c + "\x00" + r.Name
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	for _, k := range order {
		g := groups[k]
		best := g[0]
		for _, r := range g[1:] {
			if betterNode(r, best) {
				best = r
			}
		}
		for _, r := range g {
			if r.ID != best.ID {
				p.remove = append(p.remove, r.ID)
				p.merges = append(p.merges, fmt.Sprintf("cached node %d (profile %d, service %q, node %q, %s) into node %d (service %q, %s)",
					r.ID, r.ProfileID, r.Service, r.Name, r.SyncState, best.ID, canon[best.ID], best.SyncState))
			}
		}
		if len(g) > 1 {
			p.keptMerged = append(p.keptMerged, best.ID)
		}
		if canon[best.ID] != best.Service {
			p.update[best.ID] = canon[best.ID]
		}
	}
	slices.Sort(p.remove)
	return p
}

// serviceRow is what the merge of service behaviours reads of a
// service_profiles row.
type serviceRow struct {
	ID, ProfileID int64
	Service       string
	// Obs are rsm, ids_order, republish_moves, max_items_rsm, cursor_kind.
	Obs       serviceObs
	LearnedAt time.Time
}

// serviceObs are the observation columns of a service behaviour.
type serviceObs struct{ obs [5]string }

func readServiceRows(ctx context.Context, tx *sql.Tx) ([]serviceRow, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, profile_id, service, rsm, ids_order, republish_moves, max_items_rsm, cursor_kind, learned_at FROM service_profiles`)
	if err != nil {
		return nil, fmt.Errorf("read service behaviours: %w", err)
	}
	defer rows.Close()
	var out []serviceRow
	for rows.Next() {
		var r serviceRow
		o := &r.Obs.obs
		if err := rows.Scan(&r.ID, &r.ProfileID, &r.Service, &o[0], &o[1], &o[2], &o[3], &o[4], &r.LearnedAt); err != nil {
			return nil, fmt.Errorf("read service behaviours: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read service behaviours: %w", err)
	}
	return out, nil
}

// planServiceKeys plans the canonical service of every service behaviour
// and the merge of those that become equal: the latest learned is kept,
// its "unknown" observations taken from the others, latest first.
func planServiceKeys(rows []serviceRow) keyPlan {
	p := keyPlan{update: map[int64]string{}, fill: map[int64]serviceObs{}}
	groups := map[string][]serviceRow{}
	var order []string
	canon := map[int64]string{}
	for _, r := range rows {
		c, err := jid.Canonical(r.Service)
		if err != nil {
			c = r.Service
			p.invalid = append(p.invalid, fmt.Sprintf("service behaviour %d: service %q (%v)", r.ID, r.Service, err))
		}
		canon[r.ID] = c
		k := strconv.FormatInt(r.ProfileID, 10) + "\x00" + c
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	for _, k := range order {
		g := slices.Clone(groups[k])
		slices.SortStableFunc(g, func(a, b serviceRow) int {
			if c := b.LearnedAt.Compare(a.LearnedAt); c != 0 {
				return c
			}
			return int(a.ID - b.ID)
		})
		best := g[0]
		merged := best.Obs
		for _, r := range g[1:] {
			p.remove = append(p.remove, r.ID)
			p.merges = append(p.merges, fmt.Sprintf("service behaviour %d (profile %d, service %q) into %d (service %q)",
				r.ID, r.ProfileID, r.Service, best.ID, canon[best.ID]))
			for i, v := range r.Obs.obs {
				if merged.obs[i] == "unknown" && v != "unknown" {
					merged.obs[i] = v
				}
			}
		}
		if merged != best.Obs {
			p.fill[best.ID] = merged
		}
		if canon[best.ID] != best.Service {
			p.update[best.ID] = canon[best.ID]
		}
	}
	slices.Sort(p.remove)
	return p
}
