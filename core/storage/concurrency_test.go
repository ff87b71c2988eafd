package storage

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"example.org/backend/ent"
	"example.org/backend/ent/pubsubitem"
)

// upsertPage upserts items (id → position) of one node in one transaction.
func upsertPage(ctx context.Context, s *Store, nodeID int, ids []string, positions []int64, rev int) error {
	return s.WithTx(ctx, func(tx *ent.Tx) error {
		bulk := make([]*ent.PubsubItemCreate, len(ids))
		for i, id := range ids {
			bulk[i] = tx.PubsubItem.Create().SetNodeID(nodeID).SetItemID(id).
				SetPayload([]byte(fmt.Sprintf(`<item id=%q><rev>%d</rev></item>`, id, rev))).
				SetSearchText(fmt.Sprintf("item %s revision %d", id, rev)).
				SetPosition(positions[i])
		}
		return tx.PubsubItem.CreateBulk(bulk...).
			OnConflictColumns(pubsubitem.FieldNodeID, pubsubitem.FieldItemID).
			UpdateNewValues().Exec(ctx)
	})
}

// TestConcurrentUpserts has 8 writers upserting pages into one node (each
// its own items, plus items shared by all) while 4 readers query it:
// nothing is lost and no "database is locked" reaches a caller.
func TestConcurrentUpserts(t *testing.T) {
	const (
		writers = 8
		readers = 4
		pages   = 15
		perPage = 20
		shared  = 10 // ids every writer upserts
	)
	forEachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		s := openStore(t, e.config(t))
		prof := s.Client.Profile.Create().SetName("alice").SaveX(ctx)
		node := s.Client.PubsubNode.Create().SetProfile(prof).SetService("pubsub.localhost").SetName("burst").SaveX(ctx)

		var wg sync.WaitGroup
		errs := make(chan error, writers+readers)
		done := make(chan struct{})
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for p := 0; p < pages; p++ {
					ids := make([]string, 0, perPage)
					pos := make([]int64, 0, perPage)
					for i := 0; i < perPage-1; i++ {
						ids = append(ids, fmt.Sprintf("w%d-p%d-%d", w, p, i))
						pos = append(pos, int64(w*100000+p*100+i))
					}
					ids = append(ids, fmt.Sprintf("shared-%d", p%shared))
					pos = append(pos, int64(p%shared))
					if err := upsertPage(ctx, s, node.ID, ids, pos, w); err != nil {
						errs <- fmt.Errorf("writer %d page %d: %w", w, p, err)
						return
					}
				}
			}()
		}
		var rg sync.WaitGroup
		for r := 0; r < readers; r++ {
			rg.Add(1)
			go func() {
				defer rg.Done()
				for {
					select {
					case <-done:
						return
					default:
					}
					if _, err := s.Client.PubsubItem.Query().Where(pubsubitem.NodeID(node.ID)).
						Order(ent.Asc(pubsubitem.FieldPosition)).Limit(20).All(ctx); err != nil {
						errs <- fmt.Errorf("reader %d: %w", r, err)
						return
					}
					if _, err := s.Client.PubsubItem.Query().Where(pubsubitem.NodeID(node.ID)).Count(ctx); err != nil {
						errs <- fmt.Errorf("reader %d count: %w", r, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(done)
		rg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		want := writers*pages*(perPage-1) + shared
		n, err := s.Client.PubsubItem.Query().Where(pubsubitem.NodeID(node.ID)).Count(ctx)
		if err != nil || n != want {
			t.Fatalf("items after burst = %d (err %v), want %d", n, err, want)
		}
		if got := searchRows(t, s); got != want {
			t.Errorf("full-text index rows = %d, want %d", got, want)
		}
	})
}
