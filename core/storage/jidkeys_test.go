package storage

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"example.org/backend/core/jid"
	"example.org/backend/ent"
	"example.org/backend/ent/pubsubnode"
	"example.org/backend/ent/serviceprofile"
)

// TestCanonicalJIDMigration puts JID keys written as users and servers
// spell them into a database at the version before canonical_jids, opens
// it (which migrates), and checks the keys are canonical, the rows that
// became equal merged (the best cached node kept, the others deleted with
// their items, their item values and their search index rows; the service
// behaviours combined), what is not a JID left alone, each merge logged,
// and that the step run again changes nothing.
func TestCanonicalJIDMigration(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		cfg := e.config(t)
		c := clientBefore(t, e, cfg, func(f migrationFile) bool { return stepFor(f) != nil })
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		mkProfile := func(name, j string) *ent.Profile {
			p, err := c.Profile.Create().SetName(name).SetJid(j).Save(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		alice := mkProfile("alice", "Alice@Example.ORG")
		bob := mkProfile("bob", "bob@example.org")
		mkProfile("empty", "")
		mkProfile("snowman", "\u2603@example.org")
		type nodeSpec struct {
			p              *ent.Profile
			service, name  string
			state          pubsubnode.SyncState
			synced         *time.Time
			items          int
			fresh, deleted bool
			wantService    string
		}
		t1, t2 := t0.Add(time.Hour), t0.Add(2*time.Hour)
		specs := []*nodeSpec{
			{p: alice, service: "PubSub.Example.org", name: "blog", state: pubsubnode.SyncStateComplete, synced: &t1, items: 3, fresh: true, wantService: "pubsub.example.org"},
			{p: alice, service: "pubsub.example.org", name: "blog", state: pubsubnode.SyncStatePartial, synced: &t2, items: 2, deleted: true},
			{p: alice, service: "PUBSUB.example.org.", name: "blog", state: pubsubnode.SyncStateNever, deleted: true},
			{p: alice, service: "Alice@Example.ORG", name: "urn:xmpp:microblog:0", state: pubsubnode.SyncStateComplete, items: 1, fresh: true, wantService: "alice@example.org"},
			{p: alice, service: "pubsub.example.org", name: "Blog", state: pubsubnode.SyncStateComplete, items: 1, fresh: true, wantService: "pubsub.example.org"},
			{p: alice, service: "bad service", name: "x", state: pubsubnode.SyncStateNever, wantService: "bad service"},
			{p: bob, service: "PubSub.Example.org", name: "blog", state: pubsubnode.SyncStatePartial, items: 1, wantService: "pubsub.example.org"},
		}
		nodeIDs := map[*nodeSpec]int{}
		for _, sp := range specs {
			cr := c.PubsubNode.Create().SetProfile(sp.p).SetService(sp.service).SetName(sp.name).SetSyncState(sp.state).SetFresh(sp.fresh)
			if sp.synced != nil {
				cr.SetSyncedAt(*sp.synced)
			}
			n, err := cr.Save(ctx)
			if err != nil {
				t.Fatalf("node %+v: %v", sp, err)
			}
			nodeIDs[sp] = n.ID
			for k := 0; k < sp.items; k++ {
				it, err := c.PubsubItem.Create().SetNode(n).SetItemID("i" + string(rune('a'+k))).
					SetPublisher("Alice@Example.ORG/Phone").SetPayload([]byte("<entry>x</entry>")).SetSearchText("canonical words").Save(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := c.PubsubItemValue.Create().SetItem(it).SetPath("title").SetRole(1).SetKind("s").SetValueText([]byte("x")).Exec(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		mkBehaviour := func(service string, rsm serviceprofile.Rsm, order serviceprofile.IdsOrder, learned time.Time) {
			if err := c.ServiceProfile.Create().SetProfile(alice).SetService(service).SetRsm(rsm).SetIdsOrder(order).SetLearnedAt(learned).Exec(ctx); err != nil {
				t.Fatal(err)
			}
		}
		mkBehaviour("PubSub.Example.org", serviceprofile.RsmYes, serviceprofile.IdsOrderUnknown, t1)
		mkBehaviour("pubsub.example.org", serviceprofile.RsmUnknown, serviceprofile.IdsOrderCreation, t2)
		mkBehaviour("Alice@Example.ORG", serviceprofile.RsmNo, serviceprofile.IdsOrderRequest, t1)
		c.Close()

		var logs bytes.Buffer
		s, err := Open(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatalf("Open (migrates): %v", err)
		}
		defer s.Close()

		// Profiles.
		jids := map[string]string{}
		for _, p := range s.Client.Profile.Query().AllX(ctx) {
			jids[p.Name] = p.Jid
		}
		want := map[string]string{"alice": "alice@example.org", "bob": "bob@example.org", "empty": "", "snowman": "\u2603@example.org"}
		for name, j := range want {
			if jids[name] != j {
				t.Errorf("profile %s: jid %q, want %q", name, jids[name], j)
			}
		}
		// Nodes.
		for _, sp := range specs {
			n, err := s.Client.PubsubNode.Get(ctx, nodeIDs[sp])
			if sp.deleted {
				if !ent.IsNotFound(err) {
					t.Errorf("node %q %q of %s: %v, want merged away", sp.service, sp.name, sp.p.Name, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("node %q %q: %v", sp.service, sp.name, err)
			}
			merged := sp.name == "blog" && sp.p == alice
			if n.Service != sp.wantService || n.SyncState != sp.state || (merged && n.Fresh) || (!merged && n.Fresh != sp.fresh) {
				t.Errorf("node %d (%q %q): service %q, state %s, fresh %v; want %q, %s, fresh %v",
					n.ID, sp.service, sp.name, n.Service, n.SyncState, n.Fresh, sp.wantService, sp.state, sp.fresh && !merged)
			}
		}
		wantItems := 3 + 1 + 1 + 1 // the kept nodes' items
		if got := countRows(t, s.DB, "pubsub_items"); got != wantItems {
			t.Errorf("%d items, want %d (the merged nodes' items deleted)", got, wantItems)
		}
		if got := countRows(t, s.DB, "pubsub_item_values"); got != wantItems {
			t.Errorf("%d item values, want %d", got, wantItems)
		}
		if got := searchRows(t, s); got != wantItems {
			t.Errorf("%d search index rows, want %d", got, wantItems)
		}
		if n, _ := s.Client.PubsubItem.Query().Where(s.MatchText("canonical")).Count(ctx); n != wantItems {
			t.Errorf("full-text matches = %d, want %d", n, wantItems)
		}
		// The publisher attribute inside stored items stays as the service sent it.
		for _, it := range s.Client.PubsubItem.Query().AllX(ctx) {
			if it.Publisher == nil || *it.Publisher != "Alice@Example.ORG/Phone" {
				t.Errorf("publisher rewritten: %v", it.Publisher)
			}
		}
		// Service behaviours: merged into the latest learned, unknowns filled.
		bs := s.Client.ServiceProfile.Query().Order(ent.Asc(serviceprofile.FieldService)).AllX(ctx)
		if len(bs) != 2 || bs[0].Service != "alice@example.org" || bs[0].Rsm != serviceprofile.RsmNo ||
			bs[1].Service != "pubsub.example.org" || bs[1].Rsm != serviceprofile.RsmYes || bs[1].IdsOrder != serviceprofile.IdsOrderCreation {
			for _, b := range bs {
				t.Logf("behaviour %+v", b)
			}
			t.Errorf("service behaviours not merged as expected")
		}
		for _, w := range []string{"JID keys rewritten", "profiles=1", "merged=3", `service \"pubsub.example.org\", node \"blog\", partial) into node`,
			"not a valid JID, left as it is", "bad service", "\u2603@example.org"} {
			if !strings.Contains(logs.String(), w) {
				t.Errorf("logs lack %q:\n%s", w, logs.String())
			}
		}

		// Idempotent: the step again finds nothing to do.
		tx, err := s.DB.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var again bytes.Buffer
		if err := canonicalJIDKeys(ctx, tx, e.name, slog.New(slog.NewTextHandler(&again, nil))); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(again.String(), "rewritten") || strings.Contains(again.String(), "merged ") {
			t.Errorf("second run changed something: %s", again.String())
		}
	})
}

// FuzzPlanNodeKeys checks the merge plan of cached nodes on arbitrary
// rows: every row is kept or removed, the kept rows have distinct
// (profile, canonical service, node) keys, a kept row's new key is the
// canonical form of its service, and no removed row beats the one kept
// for its key.
func FuzzPlanNodeKeys(f *testing.F) {
	f.Add("1|PubSub.Example.org|blog|complete|2\n1|pubsub.example.org|blog|partial|5\n1|PUBSUB.example.org.|blog|never|0\n2|pubsub.example.org|blog|error|1")
	f.Add("1|bad service|x|never|0\n1|Bad Service|x|never|0\n1|ＰＵＢＳＵＢ.example.org|n|complete|1\n1|pubsub.example.org|n|complete|1")
	states := []string{"never", "no_sync", "error", "in_progress", "partial", "complete"}
	f.Fuzz(func(t *testing.T, data string) {
		var rows []nodeRow
		seen := map[string]bool{} // the unique index on the raw keys
		for i, line := range strings.Split(data, "\n") {
			parts := strings.Split(line, "|")
			if len(parts) != 5 || i > 50 {
				continue
			}
			r := nodeRow{ID: int64(i + 1), Service: parts[1], Name: parts[2], SyncState: parts[3]}
			if len(parts[0]) > 0 {
				r.ProfileID = int64(parts[0][0] % 3)
			}
			if !slices.Contains(states, r.SyncState) {
				r.SyncState = states[len(parts[3])%len(states)]
			}
			if len(parts[4]) > 0 {
				r.SyncedAt = time.Unix(int64(parts[4][0]%4), 0)
			}
			raw := string(rune('0'+r.ProfileID)) + "\x00" + r.Service + "\x00" + r.Name
			if seen[raw] {
				continue
			}
			seen[raw] = true
			rows = append(rows, r)
		}
		p := planNodeKeys(rows)
		removed := map[int64]bool{}
		for _, id := range p.remove {
			if removed[id] {
				t.Fatalf("row %d removed twice", id)
			}
			removed[id] = true
		}
		type key struct {
			profile       int64
			service, name string
		}
		effective := func(r nodeRow) string {
			if c, ok := p.update[r.ID]; ok {
				return c
			}
			return r.Service
		}
		kept := map[key]nodeRow{}
		for _, r := range rows {
			if removed[r.ID] {
				continue
			}
			k := key{r.ProfileID, effective(r), r.Name}
			if other, dup := kept[k]; dup {
				t.Fatalf("rows %d and %d both kept with key %v", other.ID, r.ID, k)
			}
			kept[k] = r
			if c, err := jid.Canonical(r.Service); err == nil && effective(r) != c {
				t.Fatalf("row %d kept with service %q, canonical %q", r.ID, effective(r), c)
			}
		}
		for _, r := range rows {
			if !removed[r.ID] {
				continue
			}
			c, err := jid.Canonical(r.Service)
			if err != nil {
				t.Fatalf("row %d with an invalid service %q was merged", r.ID, r.Service)
			}
			best, ok := kept[key{r.ProfileID, c, r.Name}]
			if !ok {
				t.Fatalf("removed row %d has no kept row for its key", r.ID)
			}
			if betterNode(r, best) {
				t.Fatalf("removed row %+v beats the kept %+v", r, best)
			}
		}
	})
}
