-- Manual capture (Stripe's capture_method=manual): a PaymentIntent may stop
-- at 'requires_capture' (authorized, its charge not yet captured) and may be
-- 'canceled'. Their CHECK constraints change, so payment_intents and
-- checkout_sessions are rebuilt with SQLite's recipe (foreign keys are off
-- while migrations run; the migration ends with a foreign_key_check).

CREATE TABLE payment_intents_new (
    id                 TEXT PRIMARY KEY,
    amount             INTEGER NOT NULL CHECK (amount > 0),
    currency           TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN
                         ('requires_payment_method', 'requires_confirmation', 'requires_capture',
                          'succeeded', 'canceled')),
    payment_method     TEXT,
    description        TEXT,
    metadata           TEXT NOT NULL,            -- JSON object of strings
    last_payment_error TEXT,                     -- JSON object, Stripe's shape
    latest_charge      TEXT UNIQUE,              -- ch_… once authorized or charged
    card_brand         TEXT,                     -- never the card number
    card_last4         TEXT,
    checkout_session   TEXT,
    amount_refunded    INTEGER NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    created            INTEGER NOT NULL,
    automatic_payment_methods   TEXT,
    statement_descriptor_suffix TEXT,
    capture_method     TEXT NOT NULL DEFAULT 'automatic'
                         CHECK (capture_method IN ('automatic', 'automatic_async', 'manual')),
    -- Authorized and not yet captured (only in 'requires_capture').
    amount_capturable  INTEGER NOT NULL DEFAULT 0 CHECK (amount_capturable BETWEEN 0 AND amount),
    -- Captured: all of amount, or what a manual capture took.
    amount_received    INTEGER NOT NULL DEFAULT 0 CHECK (amount_received BETWEEN 0 AND amount),
    authorized_at_ms   INTEGER,                  -- when a manual intent was authorized: it expires from here
    canceled_at        INTEGER,
    cancellation_reason TEXT CHECK (cancellation_reason IN
                         ('duplicate', 'fraudulent', 'requested_by_customer', 'abandoned', 'automatic')),
    -- The card is the dispute test card (never the number, only this).
    card_disputes      INTEGER NOT NULL DEFAULT 0 CHECK (card_disputes IN (0, 1)),
    -- When the ticker opens the dispute of a captured dispute test card; NULL: none to open.
    dispute_at_ms      INTEGER,
    CHECK (latest_charge IS NOT NULL OR status IN ('requires_payment_method', 'requires_confirmation', 'canceled')),
    CHECK (latest_charge IS NULL OR status IN ('requires_capture', 'succeeded', 'canceled')),
    CHECK ((status = 'requires_capture') = (amount_capturable > 0)),
    CHECK (status <> 'requires_capture' OR authorized_at_ms IS NOT NULL),
    CHECK ((status = 'succeeded') = (amount_received > 0)),
    CHECK (amount_refunded <= amount_received),
    CHECK ((status = 'canceled') = (canceled_at IS NOT NULL)),
    CHECK (cancellation_reason IS NULL OR status = 'canceled'),
    CHECK (dispute_at_ms IS NULL OR (status = 'succeeded' AND card_disputes = 1))
) STRICT;

INSERT INTO payment_intents_new (id, amount, currency, status, payment_method, description, metadata,
        last_payment_error, latest_charge, card_brand, card_last4, checkout_session, amount_refunded, created,
        automatic_payment_methods, statement_descriptor_suffix, capture_method, amount_capturable, amount_received)
    SELECT id, amount, currency, status, payment_method, description, metadata,
        last_payment_error, latest_charge, card_brand, card_last4, checkout_session, amount_refunded, created,
        automatic_payment_methods, statement_descriptor_suffix, 'automatic', 0,
        CASE WHEN status = 'succeeded' THEN amount ELSE 0 END
    FROM payment_intents;
DROP TABLE payment_intents;
ALTER TABLE payment_intents_new RENAME TO payment_intents;
CREATE INDEX payment_intents_authorized ON payment_intents (authorized_at_ms) WHERE status = 'requires_capture';
CREATE INDEX payment_intents_dispute_due ON payment_intents (dispute_at_ms) WHERE dispute_at_ms IS NOT NULL;

-- A session paid for manual capture is 'complete' but 'unpaid', as on Stripe
-- (its PaymentIntent waits in 'requires_capture'), and stays so.
CREATE TABLE checkout_sessions_new (
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
    statement_descriptor_suffix TEXT,
    -- payment_intent_data[capture_method], for the PaymentIntent.
    capture_method          TEXT NOT NULL DEFAULT 'automatic'
                              CHECK (capture_method IN ('automatic', 'automatic_async', 'manual')),
    CHECK ((status = 'complete') = (payment_intent IS NOT NULL)),
    CHECK ((payment_status = 'paid') = (status = 'complete' AND capture_method <> 'manual'))
) STRICT;

INSERT INTO checkout_sessions_new (id, status, payment_status, mode, currency, amount_total, success_url,
        cancel_url, client_reference_id, metadata, payment_intent_metadata, payment_intent, expires_at, created,
        statement_descriptor_suffix, capture_method)
    SELECT id, status, payment_status, mode, currency, amount_total, success_url,
        cancel_url, client_reference_id, metadata, payment_intent_metadata, payment_intent, expires_at, created,
        statement_descriptor_suffix, 'automatic'
    FROM checkout_sessions;
DROP TABLE checkout_sessions;
ALTER TABLE checkout_sessions_new RENAME TO checkout_sessions;
CREATE INDEX checkout_sessions_open_by_expiry ON checkout_sessions (expires_at) WHERE status = 'open';
