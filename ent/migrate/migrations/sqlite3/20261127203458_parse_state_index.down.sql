-- reverse: create index "pubsubitem_parse_state" to table: "pubsub_items"
DROP INDEX `pubsubitem_parse_state`;
