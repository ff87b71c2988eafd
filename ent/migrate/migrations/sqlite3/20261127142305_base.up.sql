-- create "analysers" table
CREATE TABLE `analysers` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `name` text NOT NULL, `plugin` text NOT NULL, `type` text NOT NULL, `subtype` text NULL, `node_prefix` text NULL, `namespace` text NULL, `to_sync` bool NOT NULL DEFAULT (false), `parser` text NULL, `priority` integer NOT NULL DEFAULT (0), `indexed_paths` json NULL, `declared_at` datetime NOT NULL);
-- create index "analysers_name_key" to table: "analysers"
CREATE UNIQUE INDEX `analysers_name_key` ON `analysers` (`name`);
-- create "analyser_sets" table
CREATE TABLE `analyser_sets` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `scope` text NOT NULL, `version` integer NOT NULL DEFAULT (1), `digest` text NOT NULL DEFAULT (''), `changed_at` datetime NOT NULL);
-- create index "analyser_sets_scope_key" to table: "analyser_sets"
CREATE UNIQUE INDEX `analyser_sets_scope_key` ON `analyser_sets` (`scope`);
-- create "params" table
CREATE TABLE `params` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `category` text NOT NULL, `name` text NOT NULL, `value` text NOT NULL DEFAULT (''), `secret` blob NULL, `updated_at` datetime NOT NULL, `profile_id` integer NOT NULL, CONSTRAINT `params_profiles_params` FOREIGN KEY (`profile_id`) REFERENCES `profiles` (`id`) ON DELETE CASCADE);
-- create index "param_profile_id_category_name" to table: "params"
CREATE UNIQUE INDEX `param_profile_id_category_name` ON `params` (`profile_id`, `category`, `name`);
-- create "profiles" table
CREATE TABLE `profiles` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `created_at` datetime NOT NULL, `updated_at` datetime NOT NULL, `name` text NOT NULL, `jid` text NOT NULL DEFAULT (''), `autoconnect` bool NOT NULL DEFAULT (false));
-- create index "profiles_name_key" to table: "profiles"
CREATE UNIQUE INDEX `profiles_name_key` ON `profiles` (`name`);
-- create "pubsub_items" table
CREATE TABLE `pubsub_items` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `created_at` datetime NOT NULL, `updated_at` datetime NOT NULL, `item_id` text NOT NULL, `publisher` text NULL, `payload` blob NOT NULL, `cursor` text NULL, `parsed` json NULL, `parse_state` text NOT NULL DEFAULT ('none'), `parse_error` text NULL, `search_text` text NOT NULL DEFAULT (''), `position` integer NOT NULL DEFAULT (0), `node_id` integer NOT NULL, CONSTRAINT `pubsub_items_pubsub_nodes_items` FOREIGN KEY (`node_id`) REFERENCES `pubsub_nodes` (`id`) ON DELETE CASCADE);
-- create index "pubsubitem_node_id_item_id" to table: "pubsub_items"
CREATE UNIQUE INDEX `pubsubitem_node_id_item_id` ON `pubsub_items` (`node_id`, `item_id`);
-- create index "pubsubitem_node_id_position" to table: "pubsub_items"
CREATE INDEX `pubsubitem_node_id_position` ON `pubsub_items` (`node_id`, `position`);
-- create index "pubsubitem_node_id_updated_at" to table: "pubsub_items"
CREATE INDEX `pubsubitem_node_id_updated_at` ON `pubsub_items` (`node_id`, `updated_at`);
-- create index "pubsubitem_node_id_created_at" to table: "pubsub_items"
CREATE INDEX `pubsubitem_node_id_created_at` ON `pubsub_items` (`node_id`, `created_at`);
-- create "pubsub_nodes" table
CREATE TABLE `pubsub_nodes` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `created_at` datetime NOT NULL, `updated_at` datetime NOT NULL, `service` text NOT NULL, `name` text NOT NULL, `analyser` text NULL, `analyser_version` integer NULL, `type` text NULL, `subtype` text NULL, `sync_state` text NOT NULL DEFAULT ('never'), `sync_state_changed_at` datetime NOT NULL, `synced_at` datetime NULL, `last_error` text NULL, `attempts` integer NOT NULL DEFAULT (0), `next_attempt_at` datetime NULL, `fresh` bool NOT NULL DEFAULT (false), `subscribed` bool NOT NULL DEFAULT (false), `max_items` integer NULL, `limits` json NULL, `extra` json NULL, `profile_id` integer NOT NULL, CONSTRAINT `pubsub_nodes_profiles_pubsub_nodes` FOREIGN KEY (`profile_id`) REFERENCES `profiles` (`id`) ON DELETE CASCADE);
-- create index "pubsubnode_profile_id_service_name" to table: "pubsub_nodes"
CREATE UNIQUE INDEX `pubsubnode_profile_id_service_name` ON `pubsub_nodes` (`profile_id`, `service`, `name`);
-- create index "pubsubnode_type_subtype" to table: "pubsub_nodes"
CREATE INDEX `pubsubnode_type_subtype` ON `pubsub_nodes` (`type`, `subtype`);
-- create index "pubsubnode_sync_state_next_attempt_at" to table: "pubsub_nodes"
CREATE INDEX `pubsubnode_sync_state_next_attempt_at` ON `pubsub_nodes` (`sync_state`, `next_attempt_at`);
-- create "service_profiles" table
CREATE TABLE `service_profiles` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `service` text NOT NULL, `rsm` text NOT NULL DEFAULT ('unknown'), `ids_order` text NOT NULL DEFAULT ('unknown'), `republish_moves` text NOT NULL DEFAULT ('unknown'), `max_items_rsm` text NOT NULL DEFAULT ('unknown'), `cursor_kind` text NOT NULL DEFAULT ('unknown'), `extra` json NULL, `learned_at` datetime NOT NULL, `profile_id` integer NOT NULL, CONSTRAINT `service_profiles_profiles_service_profiles` FOREIGN KEY (`profile_id`) REFERENCES `profiles` (`id`) ON DELETE CASCADE);
-- create index "serviceprofile_profile_id_service" to table: "service_profiles"
CREATE UNIQUE INDEX `serviceprofile_profile_id_service` ON `service_profiles` (`profile_id`, `service`);
