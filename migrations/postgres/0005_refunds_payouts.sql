-- Refunds and pay-outs, and what holds need to know about pay-ins.

-- When an order succeeded and what of it went to the seller's wallet (the
-- rest is commission): money is pending until succeeded_at + hold_days.
ALTER TABLE payment_orders ADD COLUMN seller_amount_minor BIGINT;
ALTER TABLE payment_orders ADD COLUMN succeeded_at TEXT;
CREATE INDEX payment_orders_seller_success ON payment_orders(seller_id, currency, succeeded_at)
    WHERE payment_order_status = 'SUCCESS';

CREATE TABLE refunds (
    refund_id         TEXT PRIMARY KEY,          -- UUID
    payment_order_id  TEXT NOT NULL REFERENCES payment_orders(payment_order_id),
    amount_minor      BIGINT NOT NULL CHECK (amount_minor > 0),
    currency          TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED')),
    -- How the refund is split: what leaves the seller's wallet and what the
    -- platform gives back of its commission (seller_part + commission_part = amount).
    seller_part_minor      BIGINT NOT NULL CHECK (seller_part_minor >= 0),
    commission_part_minor  BIGINT NOT NULL CHECK (commission_part_minor >= 0),
    reason            TEXT,
    failure_code      TEXT,
    psp_refund_id     TEXT UNIQUE,               -- re_… at the PSP
    created_by        TEXT NOT NULL,             -- api key id or staff user
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    CHECK (seller_part_minor + commission_part_minor = amount_minor)
);
CREATE INDEX refunds_order ON refunds(payment_order_id);
CREATE INDEX refunds_status ON refunds(status, updated_at);

CREATE TABLE sellers (
    seller_id           TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    payout_destination  TEXT,                    -- acct_… at the PSP
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);

CREATE TABLE payouts (
    payout_id        TEXT PRIMARY KEY,           -- UUID
    seller_id        TEXT NOT NULL,
    amount_minor     BIGINT NOT NULL CHECK (amount_minor > 0),
    currency         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('PENDING', 'IN_TRANSIT', 'PAID', 'FAILED')),
    destination      TEXT NOT NULL,
    failure_code     TEXT,
    psp_transfer_id  TEXT UNIQUE,                -- tr_… at the PSP
    created_by       TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX payouts_seller ON payouts(seller_id, created_at);
CREATE INDEX payouts_status ON payouts(status, updated_at);
