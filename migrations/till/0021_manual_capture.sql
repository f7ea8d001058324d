-- Authorize now, capture later (SPEC §3.6a). A checkout is captured
-- `automatic`ally (as before) or `manual`ly: its orders then stop at
-- AUTHORIZED until the shop captures (all or part of each order) or voids
-- them, or the authorization expires. The shop's one decision on a manual
-- checkout is recorded once (`capture_decision`), so a capture and a void
-- (or the expiry) racing each other cannot both happen.
ALTER TABLE payment_events ADD COLUMN capture_method TEXT NOT NULL DEFAULT 'automatic'
    CHECK (capture_method IN ('automatic', 'manual'));
ALTER TABLE payment_events ADD COLUMN capture_decision TEXT
    CHECK (capture_decision IN ('capture', 'void', 'expire'));
ALTER TABLE payment_events ADD COLUMN capture_decided_at TEXT;
-- When every order of a manual checkout was authorized or had failed (the
-- shop is told once: checkout.authorized).
ALTER TABLE payment_events ADD COLUMN authorized_at TEXT;

-- payment_orders gains the state AUTHORIZED and what capture needs; its
-- status CHECK changes, so the table is rebuilt (SQLite's recipe, with
-- foreign keys off: see db::migrate_sqlite). `amount_minor` stays what the
-- shop asked for (and the PSP authorized); `captured_minor` is what was
-- charged, set when the order becomes SUCCESS (the whole amount, unless a
-- manual capture took less). Refunds come out of what was charged.
CREATE TABLE payment_orders_new (
    payment_order_id      TEXT PRIMARY KEY,
    checkout_id           TEXT NOT NULL REFERENCES payment_events(checkout_id),
    position              INTEGER NOT NULL,   -- index in the request's orders
    buyer_account         TEXT NOT NULL,
    seller_id             TEXT NOT NULL,
    amount_minor          INTEGER NOT NULL CHECK (amount_minor > 0),
    currency              TEXT NOT NULL,
    payment_order_status  TEXT NOT NULL
        CHECK (payment_order_status IN ('NOT_STARTED', 'EXECUTING', 'AUTHORIZED', 'SUCCESS', 'FAILED')),
    failure_code          TEXT,
    psp_payment_intent_id TEXT,
    ledger_updated        INTEGER NOT NULL DEFAULT 0 CHECK (ledger_updated IN (0, 1)),
    wallet_updated        INTEGER NOT NULL DEFAULT 0 CHECK (wallet_updated IN (0, 1)),
    refunded_minor        INTEGER NOT NULL DEFAULT 0,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    seller_amount_minor   INTEGER,
    succeeded_at          TEXT,
    seller_refunded_minor INTEGER NOT NULL DEFAULT 0 CHECK (seller_refunded_minor >= 0),
    description           TEXT,
    metadata              TEXT,
    authorized_at         TEXT,               -- when the PSP authorized it (manual capture)
    capture_before        TEXT,               -- the shop captures by then, or the authorization expires
    capture_minor         INTEGER              -- what the shop's capture takes of it (0: released)
        CHECK (capture_minor IS NULL OR (capture_minor >= 0 AND capture_minor <= amount_minor)),
    captured_minor        INTEGER              -- what was charged, once SUCCESS
        CHECK (captured_minor IS NULL OR (captured_minor > 0 AND captured_minor <= amount_minor)),
    CHECK (refunded_minor >= 0 AND refunded_minor <= COALESCE(captured_minor, amount_minor)),
    CHECK ((payment_order_status = 'SUCCESS') = (captured_minor IS NOT NULL)),
    UNIQUE (checkout_id, position)
) STRICT;

INSERT INTO payment_orders_new (payment_order_id, checkout_id, position, buyer_account, seller_id, amount_minor,
    currency, payment_order_status, failure_code, psp_payment_intent_id, ledger_updated, wallet_updated,
    refunded_minor, created_at, updated_at, seller_amount_minor, succeeded_at, seller_refunded_minor, description,
    metadata, captured_minor)
SELECT payment_order_id, checkout_id, position, buyer_account, seller_id, amount_minor, currency,
    payment_order_status, failure_code, psp_payment_intent_id, ledger_updated, wallet_updated, refunded_minor,
    created_at, updated_at, seller_amount_minor, succeeded_at, seller_refunded_minor, description, metadata,
    CASE WHEN payment_order_status = 'SUCCESS' THEN amount_minor END
FROM payment_orders;

DROP TABLE payment_orders;
ALTER TABLE payment_orders_new RENAME TO payment_orders;

CREATE INDEX payment_orders_seller_success ON payment_orders(seller_id, currency, succeeded_at)
    WHERE payment_order_status = 'SUCCESS';
-- Overview: volume per day and currency (what was charged), read from the index alone.
CREATE INDEX payment_orders_succeeded ON payment_orders(succeeded_at, currency, captured_minor)
    WHERE payment_order_status = 'SUCCESS';
CREATE INDEX payment_orders_created_status ON payment_orders(created_at, payment_order_status);
CREATE INDEX payment_orders_list ON payment_orders(created_at, checkout_id, position);
CREATE INDEX payment_orders_list_by_status ON payment_orders(payment_order_status, created_at, checkout_id, position);
CREATE INDEX payment_orders_list_by_seller ON payment_orders(seller_id, created_at, checkout_id, position);
CREATE INDEX payment_orders_list_by_buyer ON payment_orders(buyer_account, created_at, checkout_id, position);
-- Authorized orders awaiting the shop's capture (overview, sellers, the expiry plan).
CREATE INDEX payment_orders_authorized ON payment_orders(seller_id, currency, amount_minor)
    WHERE payment_order_status = 'AUTHORIZED';

-- An order never leaves a final state; the database refuses it as well as the code.
CREATE TRIGGER payment_orders_final_stays_final
BEFORE UPDATE OF payment_order_status ON payment_orders
WHEN OLD.payment_order_status IN ('SUCCESS', 'FAILED')
 AND NEW.payment_order_status IS NOT OLD.payment_order_status
BEGIN
    SELECT RAISE(ABORT, 'payment order is in a final state');
END;
