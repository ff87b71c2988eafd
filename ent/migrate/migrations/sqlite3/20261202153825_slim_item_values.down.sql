DROP INDEX `pubsubitemvalue_path_value_fold`;
DROP INDEX `pubsubitemvalue_path_value_num`;
UPDATE `pubsub_item_values` SET `value_fold` = `value_text` WHERE `value_fold` IS NULL AND `kind` = 's';
CREATE INDEX `pubsubitemvalue_path_value_num` ON `pubsub_item_values` (`path`, `value_num`, `kind`, `role`, `item_id`);
CREATE INDEX `pubsubitemvalue_path_value_fold` ON `pubsub_item_values` (`path`, `value_fold`, `kind`, `role`, `item_id`);
