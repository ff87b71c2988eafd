-- Hand-written migration (postgres): nothing to do. The SQLite side makes
-- its full-text index contentless; PostgreSQL already keeps only a tsvector
-- per item (pubsub_items_search) besides the row's search_text.
-- Edit, then re-hash: go run -tags sqlite_fts5 ./ent/migrate/main.go hash
SELECT 1;
