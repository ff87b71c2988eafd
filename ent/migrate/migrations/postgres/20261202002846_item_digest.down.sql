-- reverse: modify "pubsub_items" table
ALTER TABLE "pubsub_items" DROP COLUMN "parser_version", DROP COLUMN "digest";
