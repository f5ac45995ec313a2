-- The queue and its results: one row per requested secret.
-- Times that decide anything (run_at, leases) come from this database's clock, never a worker's.

CREATE TABLE secret_jobs (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id              text NOT NULL,
    client_id           text NOT NULL,
    expires_after_hours integer NOT NULL,
    idempotency_key     text NOT NULL,
    batch               text NOT NULL DEFAULT 'default',
    priority            integer NOT NULL DEFAULT 0,
    state               text NOT NULL DEFAULT 'queued',
    attempts            integer NOT NULL DEFAULT 0,      -- attempts spent (a throttled or released one is given back)
    max_attempts        integer NOT NULL DEFAULT 5,
    run_at              timestamptz NOT NULL DEFAULT now(),
    lease_owner         text,                            -- worker process id, new at every start
    lease_expires_at    timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    -- the result; the secret itself only as AES-256-GCM ciphertext (nonce || ciphertext || tag)
    secret_id           text,
    secret_created_at   timestamptz,
    secret_expires_at   timestamptz,
    masked_secret       text,
    secret_ciphertext   bytea,
    secret_key_id       text,
    -- the last error, kept as Atlas said it
    last_error_code     text,
    last_error_detail   text,
    last_http_status    integer,
    -- no duplicate secret: what the account held before this job's create, and what it revoked
    known_secret_ids    text[],
    known_secrets_attempt integer,                   -- the attempt that read known_secret_ids
    needs_reconcile     boolean NOT NULL DEFAULT false,
    revoked_secrets     jsonb NOT NULL DEFAULT '[]',
    shortened_secrets   jsonb NOT NULL DEFAULT '[]',
    orphan_policy       text,

    CONSTRAINT secret_jobs_idempotency_key_unique UNIQUE (idempotency_key),
    CONSTRAINT "org_id must be 24 lowercase hex characters" CHECK (org_id ~ '^[a-f0-9]{24}$'),
    CONSTRAINT "client_id must be mdb_sa_id_ followed by 24 hex characters" CHECK (client_id ~ '^mdb_sa_id_[a-fA-F0-9]{24}$'),
    CONSTRAINT "expires_after_hours must be between 8 and 8760" CHECK (expires_after_hours BETWEEN 8 AND 8760),
    CONSTRAINT "state must be queued, running, succeeded, failed or cancelled"
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    CONSTRAINT "batch must be 1 to 200 printable characters" CHECK (batch ~ '^[[:print:]]{1,200}$'),
    CONSTRAINT "idempotency_key must be 1 to 200 printable characters" CHECK (idempotency_key ~ '^[[:print:]]{1,200}$'),
    CONSTRAINT "max_attempts must be between 1 and 100" CHECK (max_attempts BETWEEN 1 AND 100),
    CONSTRAINT "a running job has a lease" CHECK (state <> 'running' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CONSTRAINT "a succeeded job has its encrypted secret" CHECK (
        state <> 'succeeded' OR (secret_id IS NOT NULL AND secret_ciphertext IS NOT NULL AND secret_key_id IS NOT NULL))
);

COMMENT ON TABLE secret_jobs IS 'atlas-secrets: queued requests to create Atlas service-account secrets, and their results';

-- The claim walks only runnable rows, in its own order, however many finished rows the table holds.
CREATE INDEX secret_jobs_claim ON secret_jobs (priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX secret_jobs_claim_by_batch_org ON secret_jobs (batch, org_id, priority DESC, run_at, id) WHERE state = 'queued';
-- One job at a time per service account: a second running job for the same account is refused.
CREATE UNIQUE INDEX secret_jobs_one_running_per_account ON secret_jobs (org_id, client_id) WHERE state = 'running';
-- The next due job (status's oldest waiting job, drain's next runnable time).
CREATE INDEX secret_jobs_queued_run_at ON secret_jobs (run_at) WHERE state = 'queued';
-- A service account's jobs (reconciliation checks what the others hold).
CREATE INDEX secret_jobs_account ON secret_jobs (org_id, client_id);
-- Jobs that must settle an unknown outcome before their account's other jobs may run.
CREATE INDEX secret_jobs_unsettled ON secret_jobs (org_id, client_id) WHERE state = 'queued' AND needs_reconcile;
-- Rescue of expired leases.
CREATE INDEX secret_jobs_lease ON secret_jobs (lease_expires_at) WHERE state = 'running';
-- list / status filters and rates.
CREATE INDEX secret_jobs_batch_state ON secret_jobs (batch, state, id);
CREATE INDEX secret_jobs_org_state ON secret_jobs (org_id, state, id);
CREATE INDEX secret_jobs_finished ON secret_jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX secret_jobs_failed_code ON secret_jobs (batch, last_error_code) WHERE state = 'failed';

-- Every attempt, as it happened.
CREATE TABLE secret_job_attempts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id       bigint NOT NULL REFERENCES secret_jobs (id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    owner        text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    -- started | succeeded | retry | failed | throttled | deferred | paused | released | made_room
    -- | superseded | lease_expired
    outcome      text NOT NULL DEFAULT 'started',
    http_status  integer,
    error_code   text,
    detail       text,
    duration_ms  integer,
    secret_id    text
);
CREATE INDEX secret_job_attempts_job ON secret_job_attempts (job_id, id);

-- Per organization: a not-before time shared by every worker (throttling), and a pause.
CREATE TABLE secret_org_pacing (
    org_id        text PRIMARY KEY,
    not_before    timestamptz,                 -- Atlas throttled the org: nobody calls it before this
    next_slot_at  timestamptz,                 -- --org-rate: the next job of this org may start then
    paused_reason text,
    paused_at     timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Counts by (batch, org, state), kept by statement triggers, so status never scans the jobs.
CREATE TABLE secret_job_counts (
    batch   text NOT NULL,
    org_id  text NOT NULL,
    state   text NOT NULL,
    n       bigint NOT NULL,
    PRIMARY KEY (batch, org_id, state)
);
CREATE INDEX secret_job_counts_org ON secret_job_counts (org_id, state);
