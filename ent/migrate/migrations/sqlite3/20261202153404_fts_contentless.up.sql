-- atlas:delimiter -- end of statement

-- Hand-written migration (sqlite3). Edit, then re-hash: go run -tags sqlite_fts5 ./ent/migrate/main.go hash
--
-- The full-text index no longer keeps its text in pubsub_items (issue 22:
-- the text was stored twice, once in the row, once tokenized): FTS5 is
-- contentless (content = '') with contentless_delete = 1 (SQLite ≥ 3.43),
-- and the row's search_text is only a hand-over: a non-empty value written
-- to it is indexed by the triggers, then blanked. The writer encodes an
-- item without text as ' ' (indexed as no terms), so '' means "keep the
-- index as it is" (an unchanged payload keeps its parse and its text).
-- A future migration that rebuilds pubsub_items (SQLite table copy) drops
-- these triggers with the old table and must recreate them.
DROP TRIGGER IF EXISTS `pubsub_items_fts_au`;
-- end of statement
DROP TRIGGER IF EXISTS `pubsub_items_fts_ad`;
-- end of statement
DROP TRIGGER IF EXISTS `pubsub_items_fts_ai`;
-- end of statement
DROP TABLE IF EXISTS `pubsub_items_fts`;
-- end of statement
CREATE VIRTUAL TABLE `pubsub_items_fts` USING fts5(
  `search_text`,
  content = '',
  contentless_delete = 1,
  tokenize = 'unicode61 remove_diacritics 2'
);
-- end of statement
-- index the items that existed before this migration, then blank their text
INSERT INTO `pubsub_items_fts` (`rowid`, `search_text`) SELECT `id`, `search_text` FROM `pubsub_items` WHERE `search_text` <> '';
-- end of statement
UPDATE `pubsub_items` SET `search_text` = '' WHERE `search_text` <> '';
-- end of statement
-- create trigger "pubsub_items_fts_ai": index inserted items
CREATE TRIGGER `pubsub_items_fts_ai` AFTER INSERT ON `pubsub_items` WHEN new.`search_text` <> '' BEGIN
  INSERT INTO `pubsub_items_fts` (`rowid`, `search_text`) VALUES (new.`id`, new.`search_text`);
  UPDATE `pubsub_items` SET `search_text` = '' WHERE `id` = new.`id`;
END;
-- end of statement
-- create trigger "pubsub_items_fts_ad": unindex deleted items (also on cascades)
CREATE TRIGGER `pubsub_items_fts_ad` AFTER DELETE ON `pubsub_items` BEGIN
  DELETE FROM `pubsub_items_fts` WHERE `rowid` = old.`id`;
END;
-- end of statement
-- create trigger "pubsub_items_fts_au": reindex items given a new text
CREATE TRIGGER `pubsub_items_fts_au` AFTER UPDATE OF `search_text` ON `pubsub_items` WHEN new.`search_text` <> '' BEGIN
  DELETE FROM `pubsub_items_fts` WHERE `rowid` = old.`id`;
  INSERT INTO `pubsub_items_fts` (`rowid`, `search_text`) VALUES (new.`id`, new.`search_text`);
  UPDATE `pubsub_items` SET `search_text` = '' WHERE `id` = new.`id`;
END;
