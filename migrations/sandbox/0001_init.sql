-- The sandbox PSP's own database. It is an independent party: nothing here is
-- shared with till's database. Times are unix seconds (as Stripe's API writes
-- them) or unix milliseconds where the background tasks schedule work
-- (columns ending in _ms). Amounts are integers in the currency's minor unit;
-- currencies are lower-case ISO codes, as Stripe writes them.

-- Idempotency-Key rows: inserted first as the lock ('running'), completed in
-- the same transaction as the work they guard ('done'), kept 24 h.
CREATE TABLE idempotency_keys (
    key             TEXT PRIMARY KEY,
    request_hash    TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('running', 'done')),
    response_status INTEGER,
    response_body   TEXT,
    created_ms      INTEGER NOT NULL,
    locked_ms       INTEGER NOT NULL,
    CHECK ((state = 'done') = (response_status IS NOT NULL AND response_body IS NOT NULL))
) STRICT;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_ms);

CREATE TABLE payment_intents (
    id                 TEXT PRIMARY KEY,
    amount             INTEGER NOT NULL CHECK (amount > 0),
    currency           TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN
                         ('requires_payment_method', 'requires_confirmation', 'succeeded')),
    payment_method     TEXT,
    description        TEXT,
    metadata           TEXT NOT NULL,            -- JSON object of strings
    last_payment_error TEXT,                     -- JSON object, Stripe's shape
    latest_charge      TEXT UNIQUE,              -- ch_… once succeeded
    card_brand         TEXT,                     -- never the card number
    card_last4         TEXT,
    checkout_session   TEXT,
    amount_refunded    INTEGER NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    created            INTEGER NOT NULL,
    CHECK ((status = 'succeeded') = (latest_charge IS NOT NULL)),
    CHECK (amount_refunded <= amount)
) STRICT;

CREATE TABLE checkout_sessions (
    id                      TEXT PRIMARY KEY,
    status                  TEXT NOT NULL CHECK (status IN ('open', 'complete', 'expired')),
    payment_status          TEXT NOT NULL CHECK (payment_status IN ('unpaid', 'paid')),
    mode                    TEXT NOT NULL CHECK (mode = 'payment'),
    currency                TEXT NOT NULL,
    amount_total            INTEGER NOT NULL CHECK (amount_total > 0),
    success_url             TEXT NOT NULL,
    cancel_url              TEXT,
    client_reference_id     TEXT,
    metadata                TEXT NOT NULL,       -- JSON object of strings
    payment_intent_metadata TEXT NOT NULL,       -- copied onto the PaymentIntent when paid
    payment_intent          TEXT UNIQUE REFERENCES payment_intents (id),
    expires_at              INTEGER NOT NULL,
    created                 INTEGER NOT NULL,
    CHECK ((status = 'complete') = (payment_status = 'paid')),
    CHECK ((payment_status = 'paid') = (payment_intent IS NOT NULL))
) STRICT;
CREATE INDEX checkout_sessions_open_by_expiry ON checkout_sessions (expires_at) WHERE status = 'open';

CREATE TABLE checkout_line_items (
    session_id   TEXT NOT NULL REFERENCES checkout_sessions (id),
    position     INTEGER NOT NULL CHECK (position >= 0),
    name         TEXT NOT NULL,
    unit_amount  INTEGER NOT NULL CHECK (unit_amount >= 0),
    quantity     INTEGER NOT NULL CHECK (quantity > 0),
    amount_total INTEGER NOT NULL CHECK (amount_total = unit_amount * quantity),
    PRIMARY KEY (session_id, position)
) STRICT;

CREATE TABLE refunds (
    id             TEXT PRIMARY KEY,
    payment_intent TEXT NOT NULL REFERENCES payment_intents (id),
    charge         TEXT NOT NULL,
    amount         INTEGER NOT NULL CHECK (amount > 0),
    currency       TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    failure_reason TEXT,
    metadata       TEXT NOT NULL,
    settle_at_ms   INTEGER NOT NULL,             -- when the ticker settles it
    created        INTEGER NOT NULL
) STRICT;
CREATE INDEX refunds_pending ON refunds (settle_at_ms) WHERE status = 'pending';

CREATE TABLE transfers (
    id              TEXT PRIMARY KEY,
    amount          INTEGER NOT NULL CHECK (amount > 0),
    currency        TEXT NOT NULL,
    destination     TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'failed')),
    amount_reversed INTEGER NOT NULL DEFAULT 0 CHECK (amount_reversed IN (0, amount)),
    description     TEXT,
    metadata        TEXT NOT NULL,
    settle_at_ms    INTEGER NOT NULL,
    created         INTEGER NOT NULL,
    CHECK ((status = 'failed') = (amount_reversed = amount))
) STRICT;
CREATE INDEX transfers_pending ON transfers (settle_at_ms) WHERE status = 'pending';

-- The merchant's balance at the sandbox, one row per money movement, written
-- when the money moves; the settlement report is read from here.
CREATE TABLE balance_transactions (
    id                 TEXT PRIMARY KEY,
    created            INTEGER NOT NULL,
    available_on       INTEGER NOT NULL,
    currency           TEXT NOT NULL,
    amount             INTEGER NOT NULL,         -- gross, signed
    fee                INTEGER NOT NULL CHECK (fee >= 0),
    net                INTEGER NOT NULL CHECK (net = amount - fee),
    reporting_category TEXT NOT NULL CHECK (reporting_category IN
                         ('charge', 'refund', 'transfer', 'fee', 'payout')),
    source_id          TEXT NOT NULL UNIQUE,     -- ch_…, re_…, tr_…, po_…: booked once
    payment_intent     TEXT,
    description        TEXT,
    payment_metadata   TEXT NOT NULL             -- JSON: the PaymentIntent's metadata
) STRICT;
CREATE INDEX balance_transactions_created ON balance_transactions (created);

-- One payout per currency and UTC day, moving that day's net to the bank.
CREATE TABLE payouts (
    id       TEXT PRIMARY KEY,
    day      TEXT NOT NULL,                      -- YYYY-MM-DD
    currency TEXT NOT NULL,
    amount   INTEGER NOT NULL,
    created  INTEGER NOT NULL,
    UNIQUE (day, currency)
) STRICT;

CREATE TABLE webhook_endpoints (
    id             TEXT PRIMARY KEY,
    url            TEXT NOT NULL,
    secret         TEXT NOT NULL,
    enabled_events TEXT NOT NULL,                -- JSON array; ["*"] = all
    status         TEXT NOT NULL CHECK (status IN ('enabled', 'disabled')),
    created        INTEGER NOT NULL
) STRICT;

CREATE TABLE events (
    id      TEXT PRIMARY KEY,
    type    TEXT NOT NULL,
    created INTEGER NOT NULL,
    body    TEXT NOT NULL                        -- the exact JSON delivered
) STRICT;

-- The outbox of webhook deliveries: one row per (event, endpoint, copy),
-- inserted in the transaction that made the event.
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES events (id),
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints (id),
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'dropped')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_ms INTEGER NOT NULL,
    lease_until_ms  INTEGER NOT NULL DEFAULT 0,
    last_http_status INTEGER,
    last_error      TEXT,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_ms) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
