-- modify "pubsub_items" table
ALTER TABLE "pubsub_items" ADD COLUMN "digest" bytea NULL, ADD COLUMN "parser_version" character varying NULL;
