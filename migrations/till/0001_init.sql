-- till's own database. Amounts are integer minor units (*_minor) beside a
-- currency code; times are RFC 3339 UTC text with milliseconds.

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,          -- key_…
    name        TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,      -- hex SHA-256 of the key; the key itself is never stored
    key_prefix  TEXT NOT NULL,             -- first characters, to recognise a key
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
) STRICT;

-- The seed design's payment event: one checkout, one or more orders.
CREATE TABLE payment_events (
    checkout_id          TEXT PRIMARY KEY,
    api_key_id           TEXT NOT NULL REFERENCES api_keys(id),
    buyer_info           TEXT NOT NULL,    -- JSON {"id", "email"}
    payment_method       TEXT NOT NULL CHECK (payment_method IN ('hosted_page', 'token')),
    payment_method_token TEXT,
    success_url          TEXT,
    cancel_url           TEXT,
    psp_session_id       TEXT UNIQUE,      -- the PSP's checkout session (cs_…)
    redirect_url         TEXT,
    is_payment_done      INTEGER NOT NULL DEFAULT 0 CHECK (is_payment_done IN (0, 1)),
    request_hash         TEXT NOT NULL,    -- SHA-256 of the canonical request: same checkout_id, same body?
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
) STRICT;

CREATE TABLE payment_orders (
    payment_order_id      TEXT PRIMARY KEY,
    checkout_id           TEXT NOT NULL REFERENCES payment_events(checkout_id),
    position              INTEGER NOT NULL,   -- index in the request's orders
    buyer_account         TEXT NOT NULL,
    seller_id             TEXT NOT NULL,
    amount_minor          INTEGER NOT NULL CHECK (amount_minor > 0),
    currency              TEXT NOT NULL,
    payment_order_status  TEXT NOT NULL
        CHECK (payment_order_status IN ('NOT_STARTED', 'EXECUTING', 'SUCCESS', 'FAILED')),
    failure_code          TEXT,
    psp_payment_intent_id TEXT,
    ledger_updated        INTEGER NOT NULL DEFAULT 0 CHECK (ledger_updated IN (0, 1)),
    wallet_updated        INTEGER NOT NULL DEFAULT 0 CHECK (wallet_updated IN (0, 1)),
    refunded_minor        INTEGER NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor),
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    UNIQUE (checkout_id, position)
) STRICT;
CREATE INDEX payment_orders_seller ON payment_orders(seller_id, created_at);
CREATE INDEX payment_orders_status ON payment_orders(payment_order_status, updated_at);
CREATE INDEX payment_orders_created ON payment_orders(created_at);

-- An order never leaves a final state; the database refuses it as well as the code.
CREATE TRIGGER payment_orders_final_stays_final
BEFORE UPDATE OF payment_order_status ON payment_orders
WHEN OLD.payment_order_status IN ('SUCCESS', 'FAILED')
 AND NEW.payment_order_status IS NOT OLD.payment_order_status
BEGIN
    SELECT RAISE(ABORT, 'payment order is in a final state');
END;

CREATE TABLE payment_order_history (
    id               INTEGER PRIMARY KEY,
    payment_order_id TEXT NOT NULL REFERENCES payment_orders(payment_order_id),
    from_status      TEXT,
    to_status        TEXT NOT NULL,
    reason           TEXT,
    at               TEXT NOT NULL
) STRICT;
CREATE INDEX payment_order_history_order ON payment_order_history(payment_order_id, id);

-- Every event the PSP sent us, stored once (deduplicated by its id).
CREATE TABLE psp_events (
    event_id      TEXT PRIMARY KEY,
    event_type    TEXT NOT NULL,
    object_id     TEXT,
    payload       TEXT NOT NULL,
    deliveries    INTEGER NOT NULL DEFAULT 1,
    received_at   TEXT NOT NULL,
    processed_at  TEXT,
    last_error    TEXT
) STRICT;
CREATE INDEX psp_events_object ON psp_events(object_id);

-- Every call the connector made to the PSP, for the dashboard and audits.
CREATE TABLE psp_calls (
    id              INTEGER PRIMARY KEY,
    subject_id      TEXT NOT NULL,           -- checkout_id or payment_order_id the call was for
    method          TEXT NOT NULL,
    path            TEXT NOT NULL,
    idempotency_key TEXT,
    http_status     INTEGER,                 -- NULL: no answer (timeout, connection error)
    outcome         TEXT NOT NULL,
    duration_ms     INTEGER NOT NULL,
    at              TEXT NOT NULL
) STRICT;
CREATE INDEX psp_calls_subject ON psp_calls(subject_id, id);

-- Wallets: what till owes each seller, per currency. Always equal to the
-- seller's ledger account (invariant 2).
CREATE TABLE wallets (
    seller_id      TEXT NOT NULL,
    currency       TEXT NOT NULL,
    balance_minor  INTEGER NOT NULL DEFAULT 0,
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (seller_id, currency)
) STRICT;

-- Double-entry ledger. Convention: debits are positive, credits negative;
-- every transaction's entries sum to zero. Assets and expenses carry
-- positive balances, liabilities and revenue negative ones.
CREATE TABLE ledger_accounts (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL,            -- assets:psp_balance, liabilities:seller:{id}, …
    currency       TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('asset', 'liability', 'revenue', 'expense')),
    balance_minor  INTEGER NOT NULL DEFAULT 0, -- sum of its entries, kept for cheap reads
    UNIQUE (name, currency)
) STRICT;

CREATE TABLE ledger_transactions (
    id           INTEGER PRIMARY KEY,
    source_type  TEXT NOT NULL,              -- payment_order, refund, payout, settlement_fee, …
    source_id    TEXT NOT NULL,
    currency     TEXT NOT NULL,
    description  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    UNIQUE (source_type, source_id)          -- the same event is never booked twice
) STRICT;

CREATE TABLE ledger_entries (
    id              INTEGER PRIMARY KEY,
    transaction_id  INTEGER NOT NULL REFERENCES ledger_transactions(id),
    account_id      INTEGER NOT NULL REFERENCES ledger_accounts(id),
    amount_minor    INTEGER NOT NULL CHECK (amount_minor <> 0)
) STRICT;
CREATE INDEX ledger_entries_transaction ON ledger_entries(transaction_id);
CREATE INDEX ledger_entries_account ON ledger_entries(account_id, id);

-- Append-only: corrections are new transactions.
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER ledger_transactions_no_update BEFORE UPDATE ON ledger_transactions
BEGIN SELECT RAISE(ABORT, 'ledger transactions are append-only'); END;
CREATE TRIGGER ledger_transactions_no_delete BEFORE DELETE ON ledger_transactions
BEGIN SELECT RAISE(ABORT, 'ledger transactions are append-only'); END;
