-- Webhook endpoints managed like Stripe's (issue 18): a description, a
-- reason when disabled, a previous secret that still signs beside the
-- new one for 24 h after a rotation, and deletion that keeps the history.
ALTER TABLE webhook_endpoints ADD COLUMN description TEXT;
ALTER TABLE webhook_endpoints ADD COLUMN disabled_reason TEXT;
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret TEXT;
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret_expires_at_ms INTEGER;
ALTER TABLE webhook_endpoints ADD COLUMN updated_at TEXT;
ALTER TABLE webhook_endpoints ADD COLUMN deleted_at TEXT;   -- gone from the API; its deliveries stay

-- Every event is kept (events.retention_days) and listed newest first on
-- a total order both engines have: (created_at, id).
CREATE INDEX merchant_events_list ON merchant_events(created_at, id);
CREATE INDEX merchant_events_list_by_type ON merchant_events(event_type, created_at, id);

-- A delivery may now be canceled (its endpoint deleted or disabled), and
-- says when it was made (its next try is its queue job's). (SQLite cannot change
-- a CHECK: the table is rebuilt; nothing references it yet.)
CREATE TABLE webhook_deliveries_new (
    id               INTEGER PRIMARY KEY,
    event_id         TEXT NOT NULL REFERENCES merchant_events(id),
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints(id),
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'canceled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_status      INTEGER,
    last_error       TEXT,
    delivered_at     TEXT,
    created_at       TEXT NOT NULL,
    UNIQUE (event_id, endpoint_id)
) STRICT;
INSERT INTO webhook_deliveries_new (id, event_id, endpoint_id, status, attempts, last_status, last_error,
                                    delivered_at, created_at)
    SELECT d.id, d.event_id, d.endpoint_id, d.status, d.attempts, d.last_status, d.last_error, d.delivered_at,
           (SELECT m.created_at FROM merchant_events m WHERE m.id = d.event_id)
    FROM webhook_deliveries d;
DROP TABLE webhook_deliveries;
ALTER TABLE webhook_deliveries_new RENAME TO webhook_deliveries;
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries(endpoint_id, id);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries(endpoint_id) WHERE status = 'pending';

-- Each attempt of a delivery: when, the endpoint's answer, how long it
-- took, why it failed. An endpoint's health (last success, failures in a
-- row) is read from here, so no row is updated by every delivery.
CREATE TABLE webhook_delivery_attempts (
    id            INTEGER PRIMARY KEY,
    delivery_id   INTEGER NOT NULL REFERENCES webhook_deliveries(id),
    endpoint_id   TEXT NOT NULL REFERENCES webhook_endpoints(id),
    attempted_at  TEXT NOT NULL,
    succeeded     INTEGER NOT NULL CHECK (succeeded IN (0, 1)),
    http_status   INTEGER,
    latency_ms    INTEGER NOT NULL,
    error         TEXT
) STRICT;
CREATE INDEX webhook_delivery_attempts_delivery ON webhook_delivery_attempts(delivery_id, id);
CREATE INDEX webhook_delivery_attempts_health ON webhook_delivery_attempts(endpoint_id, succeeded, attempted_at);
