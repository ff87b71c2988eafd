-- reverse: create index "pubsubitemvalue_path_value_text" to table: "pubsub_item_values"
DROP INDEX "pubsubitemvalue_path_value_text";
-- reverse: create index "pubsubitemvalue_path_value_num" to table: "pubsub_item_values"
DROP INDEX "pubsubitemvalue_path_value_num";
-- reverse: create index "pubsubitemvalue_path_value_fold" to table: "pubsub_item_values"
DROP INDEX "pubsubitemvalue_path_value_fold";
-- reverse: create index "pubsubitemvalue_item_id_path" to table: "pubsub_item_values"
DROP INDEX "pubsubitemvalue_item_id_path";
-- reverse: create "pubsub_item_values" table
DROP TABLE "pubsub_item_values";
