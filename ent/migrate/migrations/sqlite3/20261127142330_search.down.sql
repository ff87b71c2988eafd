-- Hand-written migration (sqlite3): reverse of the full-text search objects.
-- Edit, then re-hash: go run -tags sqlite_fts5 ./ent/migrate/main.go hash
DROP TRIGGER IF EXISTS `pubsub_items_fts_au`;
DROP TRIGGER IF EXISTS `pubsub_items_fts_ad`;
DROP TRIGGER IF EXISTS `pubsub_items_fts_ai`;
DROP TABLE IF EXISTS `pubsub_items_fts`;
