-- atlas:delimiter -- end of statement

-- Hand-written migration (sqlite3): full-text search over pubsub_items.search_text.
-- Edit, then re-hash: go run -tags sqlite_fts5 ./ent/migrate/main.go hash
--
-- External-content FTS5 table: the text is stored once, in pubsub_items;
-- the FTS rowid is pubsub_items.id. The tokenizer is pinned (unicode61 with
-- diacritics removed); the PostgreSQL side uses 'simple' over unaccent().
-- Ent does not model this table and never drops tables, so replay diffs
-- ignore it. Statements are separated by the delimiter declared on the
-- first line (Atlas's replay would otherwise cut trigger bodies at ';').
-- A future migration that rebuilds pubsub_items (SQLite table
-- copy) drops these triggers with the old table and must recreate them.
CREATE VIRTUAL TABLE `pubsub_items_fts` USING fts5(
  `search_text`,
  content = 'pubsub_items',
  content_rowid = 'id',
  tokenize = 'unicode61 remove_diacritics 2'
);
-- end of statement
-- create trigger "pubsub_items_fts_ai": index inserted items
CREATE TRIGGER `pubsub_items_fts_ai` AFTER INSERT ON `pubsub_items` BEGIN
  INSERT INTO `pubsub_items_fts` (`rowid`, `search_text`) VALUES (new.`id`, new.`search_text`);
END;
-- end of statement
-- create trigger "pubsub_items_fts_ad": unindex deleted items (also on cascades)
CREATE TRIGGER `pubsub_items_fts_ad` AFTER DELETE ON `pubsub_items` BEGIN
  INSERT INTO `pubsub_items_fts` (`pubsub_items_fts`, `rowid`, `search_text`) VALUES ('delete', old.`id`, old.`search_text`);
END;
-- end of statement
-- create trigger "pubsub_items_fts_au": reindex items whose text changed
CREATE TRIGGER `pubsub_items_fts_au` AFTER UPDATE OF `search_text` ON `pubsub_items` BEGIN
  INSERT INTO `pubsub_items_fts` (`pubsub_items_fts`, `rowid`, `search_text`) VALUES ('delete', old.`id`, old.`search_text`);
  INSERT INTO `pubsub_items_fts` (`rowid`, `search_text`) VALUES (new.`id`, new.`search_text`);
END;
-- end of statement
-- index the items that existed before this migration
INSERT INTO `pubsub_items_fts` (`pubsub_items_fts`) VALUES ('rebuild');
