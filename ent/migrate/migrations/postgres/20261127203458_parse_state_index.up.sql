-- create index "pubsubitem_parse_state" to table: "pubsub_items"
CREATE INDEX "pubsubitem_parse_state" ON "pubsub_items" ("parse_state");
