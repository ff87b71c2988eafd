-- reverse: add column "parser_version" to table: "pubsub_items"
ALTER TABLE `pubsub_items` DROP COLUMN `parser_version`;
-- reverse: add column "digest" to table: "pubsub_items"
ALTER TABLE `pubsub_items` DROP COLUMN `digest`;
