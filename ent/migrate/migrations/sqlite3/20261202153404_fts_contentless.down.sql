-- atlas:delimiter -- end of statement

-- Hand-written migration (sqlite3): back to the external-content index of
-- 20261127142330_search. The contentless index cannot give its text back:
-- items keep no search text until they are stored or parsed again.
-- Edit, then re-hash: go run -tags sqlite_fts5 ./ent/migrate/main.go hash
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
  content = 'pubsub_items',
  content_rowid = 'id',
  tokenize = 'unicode61 remove_diacritics 2'
);
-- end of statement
CREATE TRIGGER `pubsub_items_fts_ai` AFTER INSERT ON `pubsub_items` BEGIN
  INSERT INTO `pubsub_items_fts` (`rowid`, `search_text`) VALUES (new.`id`, new.`search_text`);
END;
-- end of statement
CREATE TRIGGER `pubsub_items_fts_ad` AFTER DELETE ON `pubsub_items` BEGIN
  INSERT INTO `pubsub_items_fts` (`pubsub_items_fts`, `rowid`, `search_text`) VALUES ('delete', old.`id`, old.`search_text`);
END;
-- end of statement
CREATE TRIGGER `pubsub_items_fts_au` AFTER UPDATE OF `search_text` ON `pubsub_items` BEGIN
  INSERT INTO `pubsub_items_fts` (`pubsub_items_fts`, `rowid`, `search_text`) VALUES ('delete', old.`id`, old.`search_text`);
  INSERT INTO `pubsub_items_fts` (`rowid`, `search_text`) VALUES (new.`id`, new.`search_text`);
END;
-- end of statement
INSERT INTO `pubsub_items_fts` (`pubsub_items_fts`) VALUES ('rebuild');
