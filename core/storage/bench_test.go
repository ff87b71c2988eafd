package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"example.org/backend/ent"
	"example.org/backend/ent/pubsubitem"
)

// benchNode creates a profile and a node to fill.
func benchNode(b *testing.B, s *Store, name string) int {
	b.Helper()
	ctx := context.Background()
	prof, err := s.Client.Profile.Query().First(ctx)
	if ent.IsNotFound(err) {
		prof, err = s.Client.Profile.Create().SetName("bench").Save(ctx)
	}
	if err != nil {
		b.Fatal(err)
	}
	node, err := s.Client.PubsubNode.Create().SetProfile(prof).SetService("pubsub.localhost").SetName(name).Save(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return node.ID
}

// fillNode upserts n items into a node in pages of pageSize, one
// transaction per page.
func fillNode(ctx context.Context, s *Store, nodeID, n, pageSize int) error {
	payload := []byte(`<item id="x"><entry xmlns="http://www.w3.org/2005/Atom"><title>Benchmark item</title>` +
		`<content>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.</content></entry></item>`)
	for start := 0; start < n; start += pageSize {
		ids := make([]string, 0, pageSize)
		pos := make([]int64, 0, pageSize)
		for i := start; i < start+pageSize && i < n; i++ {
			ids = append(ids, fmt.Sprintf("item-%07d", i))
			pos = append(pos, int64(i))
		}
		err := s.WithTx(ctx, func(tx *ent.Tx) error {
			bulk := make([]*ent.PubsubItemCreate, len(ids))
			for i, id := range ids {
				bulk[i] = tx.PubsubItem.Create().SetNodeID(nodeID).SetItemID(id).SetPayload(payload).
					SetParsed([]byte(fmt.Sprintf(`{"n":%d,"title":"Benchmark item"}`, pos[i]))).SetParseState("ok").
					SetSearchText("Benchmark item Lorem ipsum dolor sit amet " + id).SetPosition(pos[i])
			}
			return tx.PubsubItem.CreateBulk(bulk...).
				OnConflictColumns(pubsubitem.FieldNodeID, pubsubitem.FieldItemID).
				UpdateNewValues().Exec(ctx)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkUpsert10kItems upserts 10 000 items into a fresh node in pages
// of 100 (one transaction per page). One op = 10 000 items.
func BenchmarkUpsert10kItems(b *testing.B) {
	for _, e := range engines {
		b.Run(e.name, func(b *testing.B) {
			ctx := context.Background()
			s := openStore(b, e.config(b))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				node := benchNode(b, s, fmt.Sprintf("node-%d", i))
				b.StartTimer()
				if err := fillNode(ctx, s, node, 10000, 100); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(10000*b.N)/b.Elapsed().Seconds(), "items/s")
		})
	}
}

// BenchmarkRead20ByPosition reads 20 items by position (the service's
// order) at random offsets of a 100 000-item node. One op = one page.
func BenchmarkRead20ByPosition(b *testing.B) {
	const size = 100000
	for _, e := range engines {
		b.Run(e.name, func(b *testing.B) {
			ctx := context.Background()
			s := openStore(b, e.config(b))
			node := benchNode(b, s, "big")
			if err := fillNode(ctx, s, node, size, 1000); err != nil {
				b.Fatal(err)
			}
			if s.Dialect == DriverPostgres {
				if _, err := s.DB.ExecContext(ctx, `ANALYZE pubsub_items`); err != nil {
					b.Fatal(err)
				}
			}
			rng := rand.New(rand.NewPCG(1, 2))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				from := int64(rng.IntN(size - 20))
				items, err := s.Client.PubsubItem.Query().
					Where(pubsubitem.NodeID(node), pubsubitem.PositionGTE(from)).
					Order(ent.Asc(pubsubitem.FieldPosition)).Limit(20).All(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if len(items) != 20 || items[0].Position != from {
					b.Fatalf("read %d items from %d, first at %d", len(items), from, items[0].Position)
				}
			}
		})
	}
}
