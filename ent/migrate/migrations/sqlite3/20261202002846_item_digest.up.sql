-- add column "digest" to table: "pubsub_items"
ALTER TABLE `pubsub_items` ADD COLUMN `digest` blob NULL;
-- add column "parser_version" to table: "pubsub_items"
ALTER TABLE `pubsub_items` ADD COLUMN `parser_version` text NULL;
