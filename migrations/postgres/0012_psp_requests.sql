-- Every PSP request that may be retried (checkout sessions, payment
-- intents, refunds, transfers), as it was first built: each retry sends
-- exactly these parameters under the same idempotency key, whatever the
-- clock, the configuration or till's version say by then. A PSP answers a
-- key reused with other parameters with an error, and till must not lose a
-- sale to its own retry.
CREATE TABLE psp_requests (
    idempotency_key TEXT PRIMARY KEY,
    path            TEXT NOT NULL,
    subject_id      TEXT NOT NULL,
    form            TEXT NOT NULL,  -- JSON [[name, value], …] in the order sent
    created_at_ms   BIGINT NOT NULL
);
CREATE INDEX psp_requests_created ON psp_requests(created_at_ms);

-- When the shop canceled the checkout (POST /v1/checkouts/{id}/cancel): its
-- session is expired at the PSP, and its orders fail as `canceled`.
ALTER TABLE payment_events ADD COLUMN canceled_at TEXT;
