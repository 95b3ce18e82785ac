BEGIN TRANSACTION;
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO "alembic_version" VALUES('0015');
CREATE TABLE alert_rules (
	id VARCHAR(32) NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	group_id VARCHAR(255), 
	name VARCHAR(255) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	severity VARCHAR(16) NOT NULL, 
	enabled BOOLEAN NOT NULL, 
	no_contact_minutes INTEGER, 
	resource_url VARCHAR(32), 
	above FLOAT, 
	below FLOAT, 
	hysteresis FLOAT NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	CONSTRAINT pk_alert_rules PRIMARY KEY (id), 
	CONSTRAINT fk_alert_rules_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE CASCADE, 
	CONSTRAINT fk_alert_rules_group_id_device_groups FOREIGN KEY(group_id) REFERENCES device_groups (id) ON DELETE CASCADE
);
CREATE TABLE alerts (
	id VARCHAR(32) NOT NULL, 
	rule_id VARCHAR(32) NOT NULL, 
	device_id VARCHAR(255) NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	severity VARCHAR(16) NOT NULL, 
	message TEXT NOT NULL, 
	value JSON, 
	open_key VARCHAR(320), 
	raised_at DATETIME NOT NULL, 
	acknowledged_at DATETIME, 
	acknowledged_by VARCHAR(255), 
	cleared_at DATETIME, 
	CONSTRAINT pk_alerts PRIMARY KEY (id), 
	CONSTRAINT fk_alerts_device_id_devices FOREIGN KEY(device_id) REFERENCES devices (id) ON DELETE CASCADE, 
	CONSTRAINT fk_alerts_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE CASCADE, 
	CONSTRAINT fk_alerts_rule_id_alert_rules FOREIGN KEY(rule_id) REFERENCES alert_rules (id) ON DELETE CASCADE, 
	CONSTRAINT uq_alerts_open_key UNIQUE (open_key)
);
CREATE TABLE api_tokens (
	id VARCHAR(32) NOT NULL, 
	user_id VARCHAR(64) NOT NULL, 
	name VARCHAR(128) NOT NULL, 
	token_hash VARCHAR(64) NOT NULL, 
	permissions JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	expires_at DATETIME NOT NULL, 
	last_used_at DATETIME, 
	revoked_at DATETIME, 
	CONSTRAINT pk_api_tokens PRIMARY KEY (id), 
	CONSTRAINT fk_api_tokens_user_id_users FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE TABLE audit_log (
	id INTEGER NOT NULL, 
	at DATETIME NOT NULL, 
	event VARCHAR(64) NOT NULL, 
	actor VARCHAR(255), 
	subject VARCHAR(255), 
	domain_id VARCHAR(512), 
	client_ip VARCHAR(64), 
	details JSON NOT NULL, 
	CONSTRAINT pk_audit_log PRIMARY KEY (id)
);
CREATE TABLE auth_sessions (
	id VARCHAR(64) NOT NULL, 
	user_id VARCHAR(64) NOT NULL, 
	grant VARCHAR(160) NOT NULL, 
	created_at DATETIME NOT NULL, 
	expires_at DATETIME NOT NULL, 
	revoked_at DATETIME, 
	revoked_reason VARCHAR(64), 
	CONSTRAINT pk_auth_sessions PRIMARY KEY (id), 
	CONSTRAINT fk_auth_sessions_user_id_users FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE TABLE bootstrap_accounts (
	id VARCHAR(255) NOT NULL, 
	endpoint_name VARCHAR(255) NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	friendly_name VARCHAR(255) NOT NULL, 
	description VARCHAR(4096) NOT NULL, 
	security_mode VARCHAR(32) NOT NULL, 
	dtls_identity VARCHAR(255), 
	dtls_psk VARCHAR(512), 
	creation_time DATETIME NOT NULL, 
	last_bootstrap_time DATETIME, 
	last_bootstrap_result VARCHAR(128), 
	CONSTRAINT pk_bootstrap_accounts PRIMARY KEY (id), 
	CONSTRAINT fk_bootstrap_accounts_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE RESTRICT, 
	CONSTRAINT uq_bootstrap_accounts_dtls_identity UNIQUE (dtls_identity), 
	CONSTRAINT uq_bootstrap_accounts_endpoint_name UNIQUE (endpoint_name)
);
CREATE TABLE bootstrap_configs (
	target_kind VARCHAR(8) NOT NULL, 
	target_id VARCHAR(255) NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	server_uri VARCHAR(1024), 
	security_mode VARCHAR(16) NOT NULL, 
	short_server_id INTEGER NOT NULL, 
	lifetime INTEGER NOT NULL, 
	binding VARCHAR(8) NOT NULL, 
	notification_storing BOOLEAN NOT NULL, 
	updated_at DATETIME NOT NULL, 
	CONSTRAINT pk_bootstrap_configs PRIMARY KEY (target_kind, target_id), 
	CONSTRAINT fk_bootstrap_configs_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE CASCADE
);
CREATE TABLE cluster_leases (
	name VARCHAR(64) NOT NULL, 
	holder VARCHAR(64) NOT NULL, 
	expires_at DATETIME NOT NULL, 
	CONSTRAINT pk_cluster_leases PRIMARY KEY (name)
);
CREATE TABLE cluster_messages (
	id VARCHAR(32) NOT NULL, 
	body TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_cluster_messages PRIMARY KEY (id)
);
CREATE TABLE connectivity_events (
	id INTEGER NOT NULL, 
	at DATETIME NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	thing_id VARCHAR(64), 
	endpoint VARCHAR(255), 
	data_type VARCHAR(32) NOT NULL, 
	message_type VARCHAR(32) NOT NULL, 
	severity VARCHAR(16) NOT NULL, 
	message TEXT NOT NULL, 
	details JSON NOT NULL, 
	CONSTRAINT pk_connectivity_events PRIMARY KEY (id)
);
CREATE TABLE custom_object_models (
	id VARCHAR(64) NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	object_id INTEGER NOT NULL, 
	version VARCHAR(16) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	ddf_xml TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	CONSTRAINT pk_custom_object_models PRIMARY KEY (id), 
	CONSTRAINT fk_custom_object_models_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE CASCADE, 
	CONSTRAINT uq_custom_object_models_domain_id UNIQUE (domain_id, object_id, version)
);
CREATE TABLE device_groups (
	id VARCHAR(255) NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	description TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_device_groups PRIMARY KEY (id), 
	CONSTRAINT fk_device_groups_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE RESTRICT
);
INSERT INTO "device_groups" VALUES('legacy-group','/root/legacy/','old fleet','2026-01-15 08:00:00.000000');
CREATE TABLE devices (
	id VARCHAR(255) NOT NULL, 
	endpoint_name VARCHAR(255) NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	friendly_name VARCHAR(255) NOT NULL, 
	description TEXT NOT NULL, 
	properties JSON NOT NULL, 
	blacklisted BOOLEAN NOT NULL, 
	management_enabled BOOLEAN NOT NULL, 
	connector_type VARCHAR(32) NOT NULL, 
	security_mode VARCHAR(32) NOT NULL, 
	dtls_identity VARCHAR(255), 
	dtls_psk VARCHAR(512), 
	first_register_time DATETIME, 
	last_register_time DATETIME, 
	last_contact_time DATETIME, 
	last_session_time DATETIME, 
	creation_time DATETIME NOT NULL, 
	ip_address VARCHAR(64), 
	port INTEGER, 
	lwm2m_version VARCHAR(8), 
	binding VARCHAR(8), 
	lifetime BIGINT, 
	queue_mode BOOLEAN NOT NULL, 
	registered_objects TEXT, 
	registration_id VARCHAR(64), 
	manufacturer VARCHAR(255), 
	model_name VARCHAR(255), 
	serial_number VARCHAR(255), 
	firmware_version VARCHAR(255), 
	hardware_version VARCHAR(255), 
	software_version VARCHAR(255), 
	CONSTRAINT pk_devices PRIMARY KEY (id), 
	CONSTRAINT fk_devices_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE RESTRICT, 
	CONSTRAINT uq_devices_endpoint_name UNIQUE (endpoint_name)
);
INSERT INTO "devices" VALUES('legacy-plain','legacy-plain','/root/legacy/','legacy device','','{}',0,1,'lwm2m','nosec',NULL,NULL,NULL,NULL,NULL,NULL,'2026-01-15 08:00:00.000000',NULL,NULL,NULL,NULL,NULL,0,NULL,NULL,'Legacy Corp',NULL,'SN-0001',NULL,NULL,NULL);
INSERT INTO "devices" VALUES('legacy-psk','legacy-psk','/root/legacy/','legacy device','','{}',0,1,'lwm2m','psk','id-legacy-psk','enc1:EdGd4KeIdHbC0Fa0ejmeZOSE1PGesCiDIBv5dkwKw_iejbP9lcob48RZd1U',NULL,NULL,NULL,NULL,'2026-01-15 08:00:00.000000',NULL,NULL,NULL,NULL,NULL,0,NULL,NULL,'Legacy Corp',NULL,'SN-0001',NULL,NULL,NULL);
CREATE TABLE domains (
	id VARCHAR(512) NOT NULL, 
	description TEXT NOT NULL, 
	customer_id VARCHAR(64) NOT NULL, 
	organization_id VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_domains PRIMARY KEY (id), 
	CONSTRAINT uq_domains_customer_id UNIQUE (customer_id), 
	CONSTRAINT uq_domains_organization_id UNIQUE (organization_id)
);
INSERT INTO "domains" VALUES('/root/legacy/','legacy customers','cust-legacy','org-legacy','2026-01-15 08:00:00.000000');
CREATE TABLE event_handler_outbox (
	id INTEGER NOT NULL, 
	handler_id VARCHAR(24) NOT NULL, 
	endpoint VARCHAR(255) NOT NULL, 
	payload JSON NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_attempt_at DATETIME NOT NULL, 
	claimed_until DATETIME, 
	first_failed_at DATETIME, 
	last_error TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_event_handler_outbox PRIMARY KEY (id), 
	CONSTRAINT fk_event_handler_outbox_handler_id_event_handlers FOREIGN KEY(handler_id) REFERENCES event_handlers (id) ON DELETE CASCADE
);
CREATE TABLE event_handlers (
	id VARCHAR(24) NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	type VARCHAR(16) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	description TEXT NOT NULL, 
	enabled BOOLEAN NOT NULL, 
	filter JSON NOT NULL, 
	connection JSON NOT NULL, 
	signing_secret VARCHAR(256) NOT NULL, 
	consecutive_failures INTEGER NOT NULL, 
	disabled_reason TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	CONSTRAINT pk_event_handlers PRIMARY KEY (id), 
	CONSTRAINT fk_event_handlers_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE CASCADE
);
CREATE TABLE firmware_resources (
	id VARCHAR(255) NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	file_name VARCHAR(255) NOT NULL, 
	category VARCHAR(32) NOT NULL, 
	expiration_time VARCHAR(32) NOT NULL, 
	blob_key VARCHAR(64), 
	size BIGINT, 
	sha256 VARCHAR(64), 
	created_at DATETIME NOT NULL, 
	uploaded_at DATETIME, 
	CONSTRAINT pk_firmware_resources PRIMARY KEY (id), 
	CONSTRAINT fk_firmware_resources_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE CASCADE, 
	CONSTRAINT uq_firmware_resources_blob_key UNIQUE (blob_key)
);
CREATE TABLE group_memberships (
	device_id VARCHAR(255) NOT NULL, 
	group_id VARCHAR(255) NOT NULL, 
	CONSTRAINT pk_group_memberships PRIMARY KEY (device_id, group_id), 
	CONSTRAINT fk_group_memberships_device_id_devices FOREIGN KEY(device_id) REFERENCES devices (id) ON DELETE CASCADE, 
	CONSTRAINT fk_group_memberships_group_id_device_groups FOREIGN KEY(group_id) REFERENCES device_groups (id) ON DELETE CASCADE
);
INSERT INTO "group_memberships" VALUES('legacy-plain','legacy-group');
CREATE TABLE monitoring_aliases (
	device_id VARCHAR(255) NOT NULL, 
	lwm2m_url VARCHAR(32) NOT NULL, 
	alias VARCHAR(255) NOT NULL, 
	CONSTRAINT pk_monitoring_aliases PRIMARY KEY (device_id, lwm2m_url), 
	CONSTRAINT fk_monitoring_aliases_device_id_devices FOREIGN KEY(device_id) REFERENCES devices (id) ON DELETE CASCADE, 
	CONSTRAINT uq_monitoring_aliases_device_id UNIQUE (device_id, alias)
);
CREATE TABLE monitoring_configurations (
	name VARCHAR(255) NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	group_id VARCHAR(255) NOT NULL, 
	resources JSON NOT NULL, 
	source VARCHAR(16) NOT NULL, 
	read_interval INTEGER, 
	description TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_monitoring_configurations PRIMARY KEY (name), 
	CONSTRAINT fk_monitoring_configurations_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE CASCADE, 
	CONSTRAINT fk_monitoring_configurations_group_id_device_groups FOREIGN KEY(group_id) REFERENCES device_groups (id) ON DELETE CASCADE
);
CREATE TABLE monitoring_devices (
	device_id VARCHAR(255) NOT NULL, 
	enabled BOOLEAN NOT NULL, 
	CONSTRAINT pk_monitoring_devices PRIMARY KEY (device_id), 
	CONSTRAINT fk_monitoring_devices_device_id_devices FOREIGN KEY(device_id) REFERENCES devices (id) ON DELETE CASCADE
);
CREATE TABLE monitoring_groups (
	group_id VARCHAR(255) NOT NULL, 
	enabled BOOLEAN NOT NULL, 
	CONSTRAINT pk_monitoring_groups PRIMARY KEY (group_id), 
	CONSTRAINT fk_monitoring_groups_group_id_device_groups FOREIGN KEY(group_id) REFERENCES device_groups (id) ON DELETE CASCADE
);
CREATE TABLE monitoring_samples (
	device_id VARCHAR(255) NOT NULL, 
	path VARCHAR(32) NOT NULL, 
	at_ms BIGINT NOT NULL, 
	numeric_value FLOAT, 
	text_value TEXT, 
	type VARCHAR(16) NOT NULL, 
	value JSON, 
	CONSTRAINT pk_monitoring_samples PRIMARY KEY (device_id, path, at_ms), 
	CONSTRAINT fk_monitoring_samples_device_id_devices FOREIGN KEY(device_id) REFERENCES devices (id) ON DELETE CASCADE
)
 WITHOUT ROWID

;
CREATE TABLE observation_configs (
	id INTEGER NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	target_kind VARCHAR(8) NOT NULL, 
	target_id VARCHAR(255) NOT NULL, 
	path VARCHAR(512) NOT NULL, 
	lwm2m_path VARCHAR(32) NOT NULL, 
	attributes JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_observation_configs PRIMARY KEY (id), 
	CONSTRAINT fk_observation_configs_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE CASCADE, 
	CONSTRAINT uq_observation_configs_target_kind UNIQUE (target_kind, target_id, lwm2m_path)
);
CREATE TABLE queued_requests (
	id VARCHAR(64) NOT NULL, 
	device_id VARCHAR(255) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	request JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	expires_at DATETIME NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	result JSON NOT NULL, 
	CONSTRAINT pk_queued_requests PRIMARY KEY (id), 
	CONSTRAINT fk_queued_requests_device_id_devices FOREIGN KEY(device_id) REFERENCES devices (id) ON DELETE CASCADE
);
CREATE TABLE recovery_codes (
	id INTEGER NOT NULL, 
	user_id VARCHAR(64) NOT NULL, 
	code_hash VARCHAR(64) NOT NULL, 
	used_at DATETIME, 
	CONSTRAINT pk_recovery_codes PRIMARY KEY (id), 
	CONSTRAINT fk_recovery_codes_user_id_users FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE TABLE refresh_tokens (
	id VARCHAR(64) NOT NULL, 
	session_id VARCHAR(64) NOT NULL, 
	token_hash VARCHAR(64) NOT NULL, 
	expires_at DATETIME NOT NULL, 
	used_at DATETIME, 
	CONSTRAINT pk_refresh_tokens PRIMARY KEY (id), 
	CONSTRAINT fk_refresh_tokens_session_id_auth_sessions FOREIGN KEY(session_id) REFERENCES auth_sessions (id) ON DELETE CASCADE, 
	CONSTRAINT uq_refresh_tokens_token_hash UNIQUE (token_hash)
);
CREATE TABLE registration_owners (
	endpoint_name VARCHAR(255) NOT NULL, 
	registration_id VARCHAR(64) NOT NULL, 
	node_id VARCHAR(64) NOT NULL, 
	claimed_at DATETIME NOT NULL, 
	CONSTRAINT pk_registration_owners PRIMARY KEY (endpoint_name), 
	CONSTRAINT fk_registration_owners_endpoint_name_devices FOREIGN KEY(endpoint_name) REFERENCES devices (endpoint_name) ON DELETE CASCADE
);
CREATE TABLE report_histories (
	id VARCHAR(64) NOT NULL, 
	template_id VARCHAR(64) NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	csv_path VARCHAR(255) NOT NULL, 
	csv TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_report_histories PRIMARY KEY (id), 
	CONSTRAINT fk_report_histories_template_id_report_templates FOREIGN KEY(template_id) REFERENCES report_templates (id) ON DELETE CASCADE, 
	CONSTRAINT uq_report_histories_csv_path UNIQUE (csv_path)
);
CREATE TABLE report_templates (
	id VARCHAR(64) NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	description TEXT NOT NULL, 
	group_by VARCHAR(64) NOT NULL, 
	report_type VARCHAR(32) NOT NULL, 
	period_start DATETIME NOT NULL, 
	period_end DATETIME NOT NULL, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_report_templates PRIMARY KEY (id), 
	CONSTRAINT fk_report_templates_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE CASCADE
);
CREATE TABLE resource_values (
	device_id VARCHAR(255) NOT NULL, 
	path VARCHAR(32) NOT NULL, 
	type VARCHAR(32) NOT NULL, 
	value JSON, 
	updated_at DATETIME NOT NULL, 
	CONSTRAINT pk_resource_values PRIMARY KEY (device_id, path), 
	CONSTRAINT fk_resource_values_device_id_devices FOREIGN KEY(device_id) REFERENCES devices (id) ON DELETE CASCADE
);
INSERT INTO "resource_values" VALUES('legacy-plain','/3/0/0','String','"Legacy Corp"','2026-01-15 08:00:00.000000');
INSERT INTO "resource_values" VALUES('legacy-plain','/3/0/2','String','"SN-0001"','2026-01-15 08:00:00.000000');
INSERT INTO "resource_values" VALUES('legacy-plain','/3303/0/5700','Float',19.25,'2026-01-15 08:00:00.000000');
CREATE TABLE "roles" (
	id VARCHAR(64) NOT NULL, 
	name VARCHAR(128) NOT NULL, 
	realm VARCHAR(32) NOT NULL, 
	permissions JSON NOT NULL, 
	builtin BOOLEAN NOT NULL, 
	things_group_scoped BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	modified_at DATETIME NOT NULL, 
	cas BIGINT NOT NULL, 
	domain_id VARCHAR(512), 
	CONSTRAINT pk_roles PRIMARY KEY (id), 
	CONSTRAINT fk_roles_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE CASCADE
);
CREATE TABLE service_accounts (
	client_id VARCHAR(128) NOT NULL, 
	realm VARCHAR(128) NOT NULL, 
	secret_hash VARCHAR(255) NOT NULL, 
	user_id VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_service_accounts PRIMARY KEY (client_id), 
	CONSTRAINT fk_service_accounts_user_id_users FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE TABLE setting_values (
	id INTEGER NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	target_kind VARCHAR(8) NOT NULL, 
	target_id VARCHAR(512) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	value TEXT NOT NULL, 
	is_secret BOOLEAN NOT NULL, 
	updated_at DATETIME NOT NULL, 
	CONSTRAINT pk_setting_values PRIMARY KEY (id), 
	CONSTRAINT fk_setting_values_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE CASCADE, 
	CONSTRAINT uq_setting_values_target_kind UNIQUE (target_kind, target_id, name)
);
CREATE TABLE task_callback_outbox (
	id INTEGER NOT NULL, 
	task_id VARCHAR(320) NOT NULL, 
	device_id VARCHAR(255) NOT NULL, 
	callback_name VARCHAR(255) NOT NULL, 
	url TEXT NOT NULL, 
	secret VARCHAR(512) NOT NULL, 
	payload JSON NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_attempt_at DATETIME NOT NULL, 
	delivered_at DATETIME, 
	gave_up BOOLEAN NOT NULL, 
	last_error TEXT NOT NULL, 
	CONSTRAINT pk_task_callback_outbox PRIMARY KEY (id), 
	CONSTRAINT fk_task_callback_outbox_task_id_tasks FOREIGN KEY(task_id) REFERENCES tasks (id) ON DELETE CASCADE
);
CREATE TABLE task_counters (
	prefix VARCHAR(300) NOT NULL, 
	last INTEGER NOT NULL, 
	CONSTRAINT pk_task_counters PRIMARY KEY (prefix)
);
CREATE TABLE task_report_cursors (
	id INTEGER NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	owner VARCHAR(255) NOT NULL, 
	search_criteria TEXT NOT NULL, 
	position INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_task_report_cursors PRIMARY KEY (id), 
	CONSTRAINT fk_task_report_cursors_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE CASCADE
);
CREATE TABLE task_runs (
	id INTEGER NOT NULL, 
	task_id VARCHAR(320) NOT NULL, 
	device_id VARCHAR(255) NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	direct BOOLEAN NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	attempts INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	start_time DATETIME, 
	finish_time DATETIME, 
	last_update_time DATETIME NOT NULL, 
	summary TEXT NOT NULL, 
	properties JSON, 
	CONSTRAINT pk_task_runs PRIMARY KEY (id), 
	CONSTRAINT fk_task_runs_device_id_devices FOREIGN KEY(device_id) REFERENCES devices (id) ON DELETE CASCADE, 
	CONSTRAINT fk_task_runs_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE CASCADE, 
	CONSTRAINT fk_task_runs_task_id_tasks FOREIGN KEY(task_id) REFERENCES tasks (id) ON DELETE CASCADE, 
	CONSTRAINT uq_task_runs_task_id UNIQUE (task_id, device_id)
);
CREATE TABLE task_templates (
	id INTEGER NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	description TEXT NOT NULL, 
	parameters JSON NOT NULL, 
	operations JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_task_templates PRIMARY KEY (id), 
	CONSTRAINT fk_task_templates_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE CASCADE, 
	CONSTRAINT uq_task_templates_domain_id UNIQUE (domain_id, name)
);
CREATE TABLE tasks (
	id VARCHAR(320) NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	target_kind VARCHAR(8) NOT NULL, 
	target_id VARCHAR(255) NOT NULL, 
	operations JSON NOT NULL, 
	parameters JSON NOT NULL, 
	properties JSON NOT NULL, 
	is_active BOOLEAN NOT NULL, 
	batch_requests BOOLEAN NOT NULL, 
	template_name VARCHAR(255), 
	max_attempts INTEGER NOT NULL, 
	callback JSON, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	CONSTRAINT pk_tasks PRIMARY KEY (id), 
	CONSTRAINT fk_tasks_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE CASCADE, 
	CONSTRAINT uq_tasks_target_kind UNIQUE (target_kind, target_id, name)
);
INSERT INTO "tasks" VALUES('legacy-plain:1','/root/legacy/','read serial','device','legacy-plain','[{"read": {"key": "/3/0/2"}}]','[]','{}',0,1,NULL,3,NULL,'2026-01-15 08:00:00.000000','2026-01-15 08:00:00.000000');
CREATE TABLE thing_tags (
	id VARCHAR(64) NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	name VARCHAR(128) NOT NULL, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_thing_tags PRIMARY KEY (id), 
	CONSTRAINT fk_thing_tags_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE RESTRICT, 
	CONSTRAINT uq_thing_tags_domain_id UNIQUE (domain_id, name)
);
CREATE TABLE thing_usage (
	thing_id VARCHAR(64) NOT NULL, 
	day DATE NOT NULL, 
	bytes_in BIGINT NOT NULL, 
	bytes_out BIGINT NOT NULL, 
	messages_in BIGINT NOT NULL, 
	messages_out BIGINT NOT NULL, 
	sms_mt INTEGER NOT NULL, 
	CONSTRAINT pk_thing_usage PRIMARY KEY (thing_id, day), 
	CONSTRAINT fk_thing_usage_thing_id_things FOREIGN KEY(thing_id) REFERENCES things (id) ON DELETE CASCADE
);
CREATE TABLE things (
	id VARCHAR(64) NOT NULL, 
	iccid VARCHAR(22) NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	description TEXT NOT NULL, 
	imsi VARCHAR(16) NOT NULL, 
	msisdn VARCHAR(16) NOT NULL, 
	imei VARCHAR(16) NOT NULL, 
	master_imei VARCHAR(16) NOT NULL, 
	lock_master_imei BOOLEAN NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	group_id VARCHAR(64), 
	tags JSON NOT NULL, 
	device_endpoint VARCHAR(255), 
	created_at DATETIME NOT NULL, 
	modified_at DATETIME NOT NULL, 
	cas BIGINT NOT NULL, 
	CONSTRAINT pk_things PRIMARY KEY (id), 
	CONSTRAINT fk_things_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE RESTRICT, 
	CONSTRAINT fk_things_group_id_things_groups FOREIGN KEY(group_id) REFERENCES things_groups (id) ON DELETE RESTRICT, 
	CONSTRAINT uq_things_device_endpoint UNIQUE (device_endpoint), 
	CONSTRAINT uq_things_iccid UNIQUE (iccid)
);
CREATE TABLE things_groups (
	id VARCHAR(64) NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	imei_prefix VARCHAR(16) NOT NULL, 
	lock_master_imei BOOLEAN NOT NULL, 
	telephony_profile_id VARCHAR(128) NOT NULL, 
	created_at DATETIME NOT NULL, 
	modified_at DATETIME NOT NULL, 
	cas BIGINT NOT NULL, 
	CONSTRAINT pk_things_groups PRIMARY KEY (id), 
	CONSTRAINT fk_things_groups_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE RESTRICT
);
CREATE TABLE users (
	id VARCHAR(64) NOT NULL, 
	login VARCHAR(255) NOT NULL, 
	email VARCHAR(320) NOT NULL, 
	password_hash VARCHAR(255) NOT NULL, 
	domain_id VARCHAR(512) NOT NULL, 
	account_type VARCHAR(16) NOT NULL, 
	active BOOLEAN NOT NULL, 
	email_verified BOOLEAN NOT NULL, 
	tos_accepted BOOLEAN NOT NULL, 
	full_name VARCHAR(255) NOT NULL, 
	roles JSON NOT NULL, 
	extra_permissions JSON NOT NULL, 
	things_group_ids JSON NOT NULL, 
	properties JSON NOT NULL, 
	token_generation INTEGER NOT NULL, 
	totp_secret VARCHAR(64), 
	totp_enabled BOOLEAN NOT NULL, 
	expiration_date DATETIME, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	CONSTRAINT pk_users PRIMARY KEY (id), 
	CONSTRAINT fk_users_domain_id_domains FOREIGN KEY(domain_id) REFERENCES domains (id) ON DELETE RESTRICT, 
	CONSTRAINT uq_users_login UNIQUE (login)
);
INSERT INTO "users" VALUES('u-legacy','legacy-user','legacy@example.com','$argon2id$v=19$m=65536,t=3,p=4$R6boXCFVVlWXzd3xUkk1Cg$82UCi+MS/6cXSjdqWTs6tjf08GkBdcRReLJTBlPsa40','/root/legacy/','developer',1,1,1,'Legacy User','["Monitor"]','[]','[]','{}',0,NULL,0,NULL,'2026-01-15 08:00:00.000000','2026-01-15 08:00:00.000000');
CREATE INDEX ix_audit_log_at ON audit_log (at);
CREATE INDEX ix_audit_log_domain_id ON audit_log (domain_id);
CREATE INDEX ix_audit_log_event ON audit_log (event);
CREATE INDEX ix_users_domain_id ON users (domain_id);
CREATE INDEX ix_api_tokens_user_id ON api_tokens (user_id);
CREATE INDEX ix_auth_sessions_user_id ON auth_sessions (user_id);
CREATE INDEX ix_recovery_codes_user_id ON recovery_codes (user_id);
CREATE INDEX ix_service_accounts_user_id ON service_accounts (user_id);
CREATE INDEX ix_refresh_tokens_session_id ON refresh_tokens (session_id);
CREATE INDEX ix_devices_domain_id ON devices (domain_id);
CREATE INDEX ix_queued_requests_device_state ON queued_requests (device_id, state, created_at);
CREATE INDEX ix_queued_requests_state_expires ON queued_requests (state, expires_at);
CREATE INDEX ix_device_groups_domain_id ON device_groups (domain_id);
CREATE INDEX ix_observation_configs_domain ON observation_configs (domain_id);
CREATE INDEX ix_group_memberships_group ON group_memberships (group_id, device_id);
CREATE INDEX ix_roles_name ON roles (name);
CREATE INDEX ix_roles_domain_id ON roles (domain_id);
CREATE INDEX ix_connectivity_events_domain_at ON connectivity_events (domain_id, at);
CREATE INDEX ix_connectivity_events_thing_at ON connectivity_events (thing_id, at);
CREATE INDEX ix_report_templates_domain_id ON report_templates (domain_id);
CREATE INDEX ix_thing_tags_domain_id ON thing_tags (domain_id);
CREATE INDEX ix_things_groups_domain_id ON things_groups (domain_id);
CREATE INDEX ix_report_histories_domain_id ON report_histories (domain_id);
CREATE INDEX ix_report_histories_template_id ON report_histories (template_id);
CREATE INDEX ix_things_domain_id ON things (domain_id);
CREATE INDEX ix_things_name ON things (name, id);
CREATE INDEX ix_things_domain_state ON things (domain_id, state);
CREATE INDEX ix_things_group_id ON things (group_id);
CREATE INDEX ix_things_imei ON things (imei);
CREATE INDEX ix_firmware_resources_domain_id ON firmware_resources (domain_id);
CREATE INDEX ix_setting_values_domain_id ON setting_values (domain_id);
CREATE INDEX ix_tasks_domain_id ON tasks (domain_id);
CREATE INDEX ix_task_callback_outbox_due ON task_callback_outbox (delivered_at, next_attempt_at);
CREATE INDEX ix_task_callback_outbox_task_id ON task_callback_outbox (task_id);
CREATE INDEX ix_task_runs_device_status ON task_runs (device_id, status);
CREATE INDEX ix_task_runs_task_status ON task_runs (task_id, status);
CREATE INDEX ix_task_runs_updated ON task_runs (last_update_time);
CREATE INDEX ix_task_runs_status ON task_runs (status);
CREATE INDEX ix_setting_values_name ON setting_values (name);
CREATE INDEX ix_registration_owners_node_id ON registration_owners (node_id);
CREATE INDEX ix_registration_owners_registration_id ON registration_owners (registration_id);
CREATE INDEX ix_cluster_messages_created_at ON cluster_messages (created_at);
CREATE INDEX ix_bootstrap_accounts_domain_id ON bootstrap_accounts (domain_id);
CREATE INDEX ix_bootstrap_configs_domain_id ON bootstrap_configs (domain_id);
CREATE INDEX ix_monitoring_configurations_domain_id ON monitoring_configurations (domain_id);
CREATE INDEX ix_monitoring_configurations_group_id ON monitoring_configurations (group_id);
CREATE INDEX ix_event_handlers_domain_id ON event_handlers (domain_id);
CREATE INDEX ix_event_handler_outbox_queue ON event_handler_outbox (handler_id, endpoint, id);
CREATE INDEX ix_event_handler_outbox_due ON event_handler_outbox (next_attempt_at);
CREATE INDEX ix_alert_rules_domain_id ON alert_rules (domain_id);
CREATE INDEX ix_alert_rules_group_id ON alert_rules (group_id);
CREATE INDEX ix_alert_rules_kind ON alert_rules (kind);
CREATE INDEX ix_alerts_domain_id ON alerts (domain_id, id);
CREATE INDEX ix_alerts_device_id ON alerts (device_id, id);
CREATE INDEX ix_alerts_rule_state ON alerts (rule_id, state);
CREATE INDEX ix_devices_last_contact_time ON devices (last_contact_time);
CREATE UNIQUE INDEX uq_devices_dtls_identity ON devices (dtls_identity) WHERE dtls_identity IS NOT NULL;
COMMIT;
