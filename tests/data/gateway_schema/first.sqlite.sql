-- The gateway's schema as created by create_all at b1d5cca (the first delivery engine),
-- before Alembic: what a database made by that version holds. SQLite.
CREATE TABLE inbox (
	seq INTEGER NOT NULL, 
	update_id BIGINT NOT NULL, 
	chat_key VARCHAR(64) NOT NULL, 
	kind VARCHAR(40) NOT NULL, 
	payload TEXT NOT NULL, 
	state VARCHAR(12) NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_attempt_at FLOAT NOT NULL, 
	lease_owner VARCHAR(64), 
	lease_expires_at FLOAT, 
	progress TEXT, 
	last_error TEXT, 
	received_at FLOAT NOT NULL, 
	finished_at FLOAT, 
	CONSTRAINT pk_inbox PRIMARY KEY (seq), 
	CONSTRAINT uq_inbox_update_id UNIQUE (update_id)
);
CREATE INDEX ix_inbox_state_finished ON inbox (state, finished_at);
CREATE INDEX ix_inbox_state_chat_seq ON inbox (state, chat_key, seq);
CREATE TABLE storage_retry (
	id INTEGER NOT NULL, 
	dedupe_key VARCHAR(128), 
	payload TEXT NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_attempt_at FLOAT NOT NULL, 
	last_error TEXT, 
	created_at FLOAT NOT NULL, 
	CONSTRAINT pk_storage_retry PRIMARY KEY (id), 
	CONSTRAINT uq_storage_retry_dedupe_key UNIQUE (dedupe_key)
);
CREATE TABLE callback_data (
	"key" VARCHAR(40) NOT NULL, 
	data TEXT NOT NULL, 
	created_at FLOAT NOT NULL, 
	CONSTRAINT pk_callback_data PRIMARY KEY ("key")
);
CREATE TABLE delivery_jobs (
	id INTEGER NOT NULL, 
	job_key VARCHAR(200) NOT NULL, 
	chat_id BIGINT NOT NULL, 
	state VARCHAR(12) NOT NULL, 
	parts_total INTEGER NOT NULL, 
	history TEXT, 
	hook_attempts INTEGER NOT NULL, 
	hook_next_at FLOAT NOT NULL, 
	lease_owner VARCHAR(64), 
	lease_expires_at FLOAT, 
	last_error TEXT, 
	created_at FLOAT NOT NULL, 
	finished_at FLOAT, 
	CONSTRAINT pk_delivery_jobs PRIMARY KEY (id), 
	CONSTRAINT uq_delivery_jobs_job_key UNIQUE (job_key)
);
CREATE INDEX ix_delivery_jobs_state_hook ON delivery_jobs (state, hook_next_at);
CREATE TABLE delivery_parts (
	id INTEGER NOT NULL, 
	job_id BIGINT NOT NULL, 
	chat_id BIGINT NOT NULL, 
	seq INTEGER NOT NULL, 
	text TEXT NOT NULL, 
	parse_mode VARCHAR(16), 
	reply_markup TEXT, 
	reply_to_message_id BIGINT, 
	state VARCHAR(12) NOT NULL, 
	attempts INTEGER NOT NULL, 
	first_attempt_at FLOAT, 
	next_attempt_at FLOAT NOT NULL, 
	plain_fallback INTEGER NOT NULL, 
	message_id BIGINT, 
	sent_at FLOAT, 
	last_error TEXT, 
	created_at FLOAT NOT NULL, 
	CONSTRAINT pk_delivery_parts PRIMARY KEY (id)
);
CREATE INDEX ix_delivery_parts_job ON delivery_parts (job_id, seq);
CREATE INDEX ix_delivery_parts_state_chat_id ON delivery_parts (state, chat_id, id);
CREATE TABLE delivery_chats (
	chat_id BIGINT NOT NULL, 
	lease_owner VARCHAR(64), 
	lease_expires_at FLOAT, 
	unreachable_at FLOAT, 
	unreachable_reason TEXT, 
	CONSTRAINT pk_delivery_chats PRIMARY KEY (chat_id)
);
