-- Idempotency-Key on every POST of the merchant API (brandur's design: the
-- row inserted first is the lock; the stored response is replayed for 24 h).
CREATE TABLE idempotency_keys (
    api_key_id       TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    request_hash     TEXT NOT NULL,     -- SHA-256 of method, path and body
    status           TEXT NOT NULL CHECK (status IN ('running', 'done')),
    response_status  BIGINT,
    response_body    BYTEA,
    locked_until_ms  BIGINT NOT NULL,  -- a crashed request's lock lapses
    created_at_ms    BIGINT NOT NULL,
    PRIMARY KEY (api_key_id, idempotency_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at_ms);
