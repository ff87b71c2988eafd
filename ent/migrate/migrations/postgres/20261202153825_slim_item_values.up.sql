-- slimmer side table: value_fold only where the fold differs from the
-- text, partial number and fold indexes
DROP INDEX "pubsubitemvalue_path_value_fold";
DROP INDEX "pubsubitemvalue_path_value_num";
-- a string that is its own case fold keeps no copy of it
UPDATE "pubsub_item_values" SET "value_fold" = NULL WHERE "value_fold" = "value_text";
-- create index "pubsubitemvalue_path_value_fold" to table: "pubsub_item_values"
CREATE INDEX "pubsubitemvalue_path_value_fold" ON "pubsub_item_values" ("path", "value_fold", "kind", "role", "item_id") WHERE (value_fold IS NOT NULL);
-- create index "pubsubitemvalue_path_value_num" to table: "pubsub_item_values"
CREATE INDEX "pubsubitemvalue_path_value_num" ON "pubsub_item_values" ("path", "value_num", "kind", "role", "item_id") WHERE (value_num IS NOT NULL);
