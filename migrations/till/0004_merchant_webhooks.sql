-- Outgoing webhooks to the shop (Standard Webhooks signatures).
CREATE TABLE webhook_endpoints (
    id              TEXT PRIMARY KEY,          -- we_…
    url             TEXT NOT NULL,
    secret          TEXT NOT NULL,             -- whsec_<base64>: signs every delivery
    enabled_events  TEXT NOT NULL,             -- JSON array of event types, ["*"] = all
    status          TEXT NOT NULL CHECK (status IN ('enabled', 'disabled')),
    created_at      TEXT NOT NULL
) STRICT;

-- Each event till tells the shop about, stored in the transaction that caused it.
CREATE TABLE merchant_events (
    id          TEXT PRIMARY KEY,              -- msg_…: the webhook-id header
    event_type  TEXT NOT NULL,
    subject_id  TEXT NOT NULL,
    payload     TEXT NOT NULL,                 -- the exact body sent
    created_at  TEXT NOT NULL
) STRICT;
CREATE INDEX merchant_events_subject ON merchant_events(subject_id);

-- One delivery per event and endpoint; its retries are queue jobs.
CREATE TABLE webhook_deliveries (
    id            INTEGER PRIMARY KEY,
    event_id      TEXT NOT NULL REFERENCES merchant_events(id),
    endpoint_id   TEXT NOT NULL REFERENCES webhook_endpoints(id),
    status        TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_status   INTEGER,
    last_error    TEXT,
    delivered_at  TEXT,
    UNIQUE (event_id, endpoint_id)
) STRICT;
