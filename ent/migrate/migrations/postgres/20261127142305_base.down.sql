-- reverse: create index "serviceprofile_profile_id_service" to table: "service_profiles"
DROP INDEX "serviceprofile_profile_id_service";
-- reverse: create "service_profiles" table
DROP TABLE "service_profiles";
-- reverse: create index "pubsubitem_node_id_updated_at" to table: "pubsub_items"
DROP INDEX "pubsubitem_node_id_updated_at";
-- reverse: create index "pubsubitem_node_id_position" to table: "pubsub_items"
DROP INDEX "pubsubitem_node_id_position";
-- reverse: create index "pubsubitem_node_id_item_id" to table: "pubsub_items"
DROP INDEX "pubsubitem_node_id_item_id";
-- reverse: create index "pubsubitem_node_id_created_at" to table: "pubsub_items"
DROP INDEX "pubsubitem_node_id_created_at";
-- reverse: create "pubsub_items" table
DROP TABLE "pubsub_items";
-- reverse: create index "pubsubnode_type_subtype" to table: "pubsub_nodes"
DROP INDEX "pubsubnode_type_subtype";
-- reverse: create index "pubsubnode_sync_state_next_attempt_at" to table: "pubsub_nodes"
DROP INDEX "pubsubnode_sync_state_next_attempt_at";
-- reverse: create index "pubsubnode_profile_id_service_name" to table: "pubsub_nodes"
DROP INDEX "pubsubnode_profile_id_service_name";
-- reverse: create "pubsub_nodes" table
DROP TABLE "pubsub_nodes";
-- reverse: create index "param_profile_id_category_name" to table: "params"
DROP INDEX "param_profile_id_category_name";
-- reverse: create "params" table
DROP TABLE "params";
-- reverse: create index "profiles_name_key" to table: "profiles"
DROP INDEX "profiles_name_key";
-- reverse: create "profiles" table
DROP TABLE "profiles";
-- reverse: create index "analyser_sets_scope_key" to table: "analyser_sets"
DROP INDEX "analyser_sets_scope_key";
-- reverse: create "analyser_sets" table
DROP TABLE "analyser_sets";
-- reverse: create index "analysers_name_key" to table: "analysers"
DROP INDEX "analysers_name_key";
-- reverse: create "analysers" table
DROP TABLE "analysers";
