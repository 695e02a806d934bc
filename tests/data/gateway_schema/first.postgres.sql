-- The gateway's schema as created by create_all at b1d5cca (the first delivery engine),
-- before Alembic: what a database made by that version holds. PostgreSQL (pg_dump).
CREATE TABLE public.callback_data (
    key character varying(40) NOT NULL,
    data text NOT NULL,
    created_at double precision NOT NULL
);
CREATE TABLE public.delivery_chats (
    chat_id bigint NOT NULL,
    lease_owner character varying(64),
    lease_expires_at double precision,
    unreachable_at double precision,
    unreachable_reason text
);
CREATE TABLE public.delivery_jobs (
    id bigint NOT NULL,
    job_key character varying(200) NOT NULL,
    chat_id bigint NOT NULL,
    state character varying(12) NOT NULL,
    parts_total integer NOT NULL,
    history text,
    hook_attempts integer NOT NULL,
    hook_next_at double precision NOT NULL,
    lease_owner character varying(64),
    lease_expires_at double precision,
    last_error text,
    created_at double precision NOT NULL,
    finished_at double precision
);
CREATE SEQUENCE public.delivery_jobs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.delivery_jobs_id_seq OWNED BY public.delivery_jobs.id;
CREATE TABLE public.delivery_parts (
    id bigint NOT NULL,
    job_id bigint NOT NULL,
    chat_id bigint NOT NULL,
    seq integer NOT NULL,
    text text NOT NULL,
    parse_mode character varying(16),
    reply_markup text,
    reply_to_message_id bigint,
    state character varying(12) NOT NULL,
    attempts integer NOT NULL,
    first_attempt_at double precision,
    next_attempt_at double precision NOT NULL,
    plain_fallback integer NOT NULL,
    message_id bigint,
    sent_at double precision,
    last_error text,
    created_at double precision NOT NULL
);
CREATE SEQUENCE public.delivery_parts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.delivery_parts_id_seq OWNED BY public.delivery_parts.id;
CREATE TABLE public.inbox (
    seq bigint NOT NULL,
    update_id bigint NOT NULL,
    chat_key character varying(64) NOT NULL,
    kind character varying(40) NOT NULL,
    payload text NOT NULL,
    state character varying(12) NOT NULL,
    attempts integer NOT NULL,
    next_attempt_at double precision NOT NULL,
    lease_owner character varying(64),
    lease_expires_at double precision,
    progress text,
    last_error text,
    received_at double precision NOT NULL,
    finished_at double precision
);
CREATE SEQUENCE public.inbox_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.inbox_seq_seq OWNED BY public.inbox.seq;
CREATE TABLE public.storage_retry (
    id bigint NOT NULL,
    dedupe_key character varying(128),
    payload text NOT NULL,
    attempts integer NOT NULL,
    next_attempt_at double precision NOT NULL,
    last_error text,
    created_at double precision NOT NULL
);
CREATE SEQUENCE public.storage_retry_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.storage_retry_id_seq OWNED BY public.storage_retry.id;
ALTER TABLE ONLY public.delivery_jobs ALTER COLUMN id SET DEFAULT nextval('public.delivery_jobs_id_seq'::regclass);
ALTER TABLE ONLY public.delivery_parts ALTER COLUMN id SET DEFAULT nextval('public.delivery_parts_id_seq'::regclass);
ALTER TABLE ONLY public.inbox ALTER COLUMN seq SET DEFAULT nextval('public.inbox_seq_seq'::regclass);
ALTER TABLE ONLY public.storage_retry ALTER COLUMN id SET DEFAULT nextval('public.storage_retry_id_seq'::regclass);
ALTER TABLE ONLY public.callback_data
    ADD CONSTRAINT pk_callback_data PRIMARY KEY (key);
ALTER TABLE ONLY public.delivery_chats
    ADD CONSTRAINT pk_delivery_chats PRIMARY KEY (chat_id);
ALTER TABLE ONLY public.delivery_jobs
    ADD CONSTRAINT pk_delivery_jobs PRIMARY KEY (id);
ALTER TABLE ONLY public.delivery_parts
    ADD CONSTRAINT pk_delivery_parts PRIMARY KEY (id);
ALTER TABLE ONLY public.inbox
    ADD CONSTRAINT pk_inbox PRIMARY KEY (seq);
ALTER TABLE ONLY public.storage_retry
    ADD CONSTRAINT pk_storage_retry PRIMARY KEY (id);
ALTER TABLE ONLY public.delivery_jobs
    ADD CONSTRAINT uq_delivery_jobs_job_key UNIQUE (job_key);
ALTER TABLE ONLY public.inbox
    ADD CONSTRAINT uq_inbox_update_id UNIQUE (update_id);
ALTER TABLE ONLY public.storage_retry
    ADD CONSTRAINT uq_storage_retry_dedupe_key UNIQUE (dedupe_key);
CREATE INDEX ix_delivery_jobs_state_hook ON public.delivery_jobs USING btree (state, hook_next_at);
CREATE INDEX ix_delivery_parts_job ON public.delivery_parts USING btree (job_id, seq);
CREATE INDEX ix_delivery_parts_state_chat_id ON public.delivery_parts USING btree (state, chat_id, id);
CREATE INDEX ix_inbox_state_chat_seq ON public.inbox USING btree (state, chat_key, seq);
CREATE INDEX ix_inbox_state_finished ON public.inbox USING btree (state, finished_at);
