-- Hand-written migration (postgres): full-text search over pubsub_items.search_text.
-- Edit, then re-hash: go run -tags sqlite_fts5 ./ent/migrate/main.go hash
--
-- A side table holds one tsvector per item, with a GIN index, kept by
-- triggers (deleted with the item through its foreign key). It is a table
-- Ent does not model, so replay diffs ignore it (Ent never drops tables);
-- a tsvector column or an expression index on pubsub_items would come back
-- as a DROP in the next generated migration.
--
-- Pinned tokenizer: 'simple' (no stemming, no stop words) over unaccent(),
-- to match SQLite's FTS5 unicode61 with remove_diacritics. Creating the
-- extension needs the CREATE privilege on the database (unaccent is a
-- trusted extension); the down migration leaves the extension in place.
CREATE EXTENSION IF NOT EXISTS unaccent;
-- create "pubsub_items_search" table
CREATE TABLE "pubsub_items_search" (
  "item_id" bigint NOT NULL,
  "tsv" tsvector NOT NULL,
  PRIMARY KEY ("item_id"),
  CONSTRAINT "pubsub_items_search_item" FOREIGN KEY ("item_id") REFERENCES "pubsub_items" ("id") ON DELETE CASCADE
);
-- create index "pubsub_items_search_tsv" to table: "pubsub_items_search"
CREATE INDEX "pubsub_items_search_tsv" ON "pubsub_items_search" USING GIN ("tsv");
-- create function "pubsub_items_search_sync": (re)index one item
CREATE OR REPLACE FUNCTION "pubsub_items_search_sync"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO "pubsub_items_search" ("item_id", "tsv")
  VALUES (NEW."id", to_tsvector('simple', unaccent(NEW."search_text")))
  ON CONFLICT ("item_id") DO UPDATE SET "tsv" = EXCLUDED."tsv";
  RETURN NULL;
END
$$;
-- create triggers keeping "pubsub_items_search" in sync
CREATE TRIGGER "pubsub_items_search_ins" AFTER INSERT ON "pubsub_items"
  FOR EACH ROW EXECUTE FUNCTION "pubsub_items_search_sync"();
CREATE TRIGGER "pubsub_items_search_upd" AFTER UPDATE OF "search_text" ON "pubsub_items"
  FOR EACH ROW WHEN (OLD."search_text" IS DISTINCT FROM NEW."search_text")
  EXECUTE FUNCTION "pubsub_items_search_sync"();
-- index the items that existed before this migration
INSERT INTO "pubsub_items_search" ("item_id", "tsv")
  SELECT "id", to_tsvector('simple', unaccent("search_text")) FROM "pubsub_items";
