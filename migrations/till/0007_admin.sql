-- The admin dashboard: staff users, their sessions, the audit trail of what
-- they did, and the indexes that keep its pages fast on large tables.

CREATE TABLE staff_users (
    id             INTEGER PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,     -- stored lower-case
    password_hash  TEXT NOT NULL,            -- argon2id PHC string; the password itself is never stored
    created_at     TEXT NOT NULL,
    disabled_at    TEXT
) STRICT;

-- A signed-in browser. The cookie holds a random token; only its SHA-256 is
-- stored, so a copy of the database does not let anyone sign in.
CREATE TABLE staff_sessions (
    token_hash     TEXT PRIMARY KEY,         -- hex SHA-256 of the cookie's token
    user_id        INTEGER NOT NULL REFERENCES staff_users(id),
    csrf_token     TEXT NOT NULL,            -- every form of this session carries it
    created_at     TEXT NOT NULL,
    expires_at_ms  INTEGER NOT NULL          -- unix milliseconds
) STRICT, WITHOUT ROWID;
CREATE INDEX staff_sessions_expiry ON staff_sessions(expires_at_ms);

-- Every action a staff member took in the dashboard. The form's hidden key
-- makes it idempotent: the row inserted first is the lock, a second submit
-- of the same form finds it and does nothing again.
CREATE TABLE admin_actions (
    id               INTEGER PRIMARY KEY,
    idempotency_key  TEXT NOT NULL UNIQUE,
    staff_email      TEXT NOT NULL,
    action           TEXT NOT NULL,          -- refund, payout, retry_job, discard_job, resolve_alert, …
    subject_id       TEXT NOT NULL,          -- the order, seller, job, alert, … acted on
    request_hash     TEXT NOT NULL,          -- SHA-256 of the form: same key, same request?
    status           TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    result_id        TEXT,                   -- what it created (refund id, payout id, run id)
    message          TEXT,                   -- what the staff member is told
    created_at       TEXT NOT NULL,
    finished_at      TEXT
) STRICT;
CREATE INDEX admin_actions_subject ON admin_actions(subject_id, id);

-- A discarded dead letter stays dead (nobody runs it) and leaves the list of
-- dead letters that need a person.
ALTER TABLE jobs ADD COLUMN discarded_at TEXT;
ALTER TABLE jobs ADD COLUMN discarded_by TEXT;

-- Payments list: each filter alone walks an index in rowid order (newest
-- first, keyset pagination), never sorting a large result.
CREATE INDEX payment_orders_by_seller ON payment_orders(seller_id);
CREATE INDEX payment_orders_by_buyer ON payment_orders(buyer_account);
CREATE INDEX payment_orders_by_status ON payment_orders(payment_order_status);
CREATE INDEX payment_events_buyer_email ON payment_events(lower(json_extract(buyer_info, '$.email')));
-- Overview: volume per day and currency, read from the index alone.
CREATE INDEX payment_orders_succeeded ON payment_orders(succeeded_at, currency, amount_minor)
    WHERE payment_order_status = 'SUCCESS';
-- Overview: today's orders by outcome.
CREATE INDEX payment_orders_created_status ON payment_orders(created_at, payment_order_status);
