-- The durable job queue: PSP calls to retry, status syncs, merchant
-- webhooks. A job is inserted in the same transaction as the state change
-- that calls for it (outbox); workers claim it with a lease, so a crash never
-- loses one and an expired lease hands it to another worker.
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL,                 -- charge_order, sync_checkout, deliver_webhook, …
    subject_id    TEXT NOT NULL,                 -- what the job is about (an order, a checkout, a delivery)
    payload       TEXT NOT NULL DEFAULT '{}',
    status        TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'dead')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL CHECK (max_attempts > 0),
    run_at_ms     INTEGER NOT NULL,              -- unix milliseconds
    lease_token   TEXT,                          -- who holds it now
    lease_until_ms INTEGER,
    last_error    TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;
-- At most one live job per kind and subject: enqueueing twice is a no-op.
CREATE UNIQUE INDEX jobs_live_subject ON jobs(kind, subject_id) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_due ON jobs(status, run_at_ms);
CREATE INDEX jobs_lease ON jobs(status, lease_until_ms) WHERE status = 'running';

-- Things a person must look at: dead letters, unfinished payments, audit failures.
CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,                  -- dead_letter, unfinished_order, ledger_audit, …
    subject_id   TEXT NOT NULL,
    message      TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
    created_at   TEXT NOT NULL,
    resolved_at  TEXT,
    resolution   TEXT
) STRICT;
-- One open alert per kind and subject.
CREATE UNIQUE INDEX alerts_open_subject ON alerts(kind, subject_id) WHERE status = 'open';
CREATE INDEX alerts_status ON alerts(status, id);
