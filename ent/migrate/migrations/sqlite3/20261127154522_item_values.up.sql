-- create "pubsub_item_values" table
CREATE TABLE `pubsub_item_values` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `path` text NOT NULL, `role` integer NOT NULL, `kind` text NOT NULL, `value_text` blob NULL, `value_fold` blob NULL, `value_num` real NULL, `item_id` integer NOT NULL, CONSTRAINT `pubsub_item_values_pubsub_items_item` FOREIGN KEY (`item_id`) REFERENCES `pubsub_items` (`id`) ON DELETE CASCADE);
-- create index "pubsubitemvalue_path_value_text" to table: "pubsub_item_values"
CREATE INDEX `pubsubitemvalue_path_value_text` ON `pubsub_item_values` (`path`, `value_text`, `kind`, `role`, `item_id`);
-- create index "pubsubitemvalue_path_value_num" to table: "pubsub_item_values"
CREATE INDEX `pubsubitemvalue_path_value_num` ON `pubsub_item_values` (`path`, `value_num`, `kind`, `role`, `item_id`);
-- create index "pubsubitemvalue_path_value_fold" to table: "pubsub_item_values"
CREATE INDEX `pubsubitemvalue_path_value_fold` ON `pubsub_item_values` (`path`, `value_fold`, `kind`, `role`, `item_id`);
-- create index "pubsubitemvalue_item_id_path" to table: "pubsub_item_values"
CREATE INDEX `pubsubitemvalue_item_id_path` ON `pubsub_item_values` (`item_id`, `path`, `role`, `kind`, `value_num`, `value_text`);
