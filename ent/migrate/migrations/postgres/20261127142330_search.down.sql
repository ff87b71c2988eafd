-- Hand-written migration (postgres): reverse of the full-text search objects.
-- Edit, then re-hash: go run -tags sqlite_fts5 ./ent/migrate/main.go hash
-- The unaccent extension is left in place (other objects may use it).
DROP TRIGGER IF EXISTS "pubsub_items_search_upd" ON "pubsub_items";
DROP TRIGGER IF EXISTS "pubsub_items_search_ins" ON "pubsub_items";
DROP FUNCTION IF EXISTS "pubsub_items_search_sync"();
DROP TABLE IF EXISTS "pubsub_items_search";
