-- The API requests the sandbox served, newest kept, for tests and for anyone
-- checking what a client sent (as Stripe's Dashboard lists an account's
-- requests). Only requests with the right secret key are kept, and at most
-- request_log::MAX_ROWS of them: each insert deletes what falls past that.
CREATE TABLE request_log (
    seq             INTEGER PRIMARY KEY,         -- order of arrival
    request_id      TEXT NOT NULL,               -- req_…, as the Request-Id header said
    created_ms      INTEGER NOT NULL,
    method          TEXT NOT NULL,
    path            TEXT NOT NULL,
    stripe_version  TEXT,                        -- the Stripe-Version header as sent; NULL: none
    served_version  TEXT,                        -- the version it was served with; NULL: refused
    idempotency_key TEXT,
    http_status     INTEGER NOT NULL,
    CHECK (stripe_version IS NOT NULL OR served_version IS NOT NULL)
) STRICT;
