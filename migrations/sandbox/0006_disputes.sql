-- Disputes (chargebacks) as Stripe's test mode makes them: the dispute test
-- card's charge is disputed a moment after it is captured; the withdrawal
-- (and, if won, the reversal) are balance transactions with the dispute as
-- their source. A source may now have one line per category, so
-- balance_transactions is rebuilt: (source_id, reporting_category) is unique
-- instead of source_id (the same index finds a source's lines), and the two
-- dispute categories are allowed.

CREATE TABLE balance_transactions_new (
    id                 TEXT PRIMARY KEY,
    created            INTEGER NOT NULL,
    available_on       INTEGER NOT NULL,
    currency           TEXT NOT NULL,
    amount             INTEGER NOT NULL,         -- gross, signed
    fee                INTEGER NOT NULL CHECK (fee >= 0),
    net                INTEGER NOT NULL CHECK (net = amount - fee),
    reporting_category TEXT NOT NULL CHECK (reporting_category IN
                         ('charge', 'refund', 'transfer', 'fee', 'payout', 'dispute', 'dispute_reversal')),
    source_id          TEXT NOT NULL,            -- ch_…, re_…, tr_…, po_…, du_…
    payment_intent     TEXT,
    description        TEXT,
    payment_metadata   TEXT NOT NULL,            -- JSON: the PaymentIntent's metadata
    UNIQUE (source_id, reporting_category)       -- each movement booked once
) STRICT;

INSERT INTO balance_transactions_new (id, created, available_on, currency, amount, fee, net, reporting_category,
        source_id, payment_intent, description, payment_metadata)
    SELECT id, created, available_on, currency, amount, fee, net, reporting_category,
        source_id, payment_intent, description, payment_metadata
    FROM balance_transactions;
DROP TABLE balance_transactions;
ALTER TABLE balance_transactions_new RENAME TO balance_transactions;
CREATE INDEX balance_transactions_created ON balance_transactions (created);

-- One dispute per charge. Statuses are Stripe's: needs_response (or
-- warning_needs_response) → under_review (evidence submitted) → won | lost;
-- closing (accepting) it or letting due_by pass makes it lost.
CREATE TABLE disputes (
    id                 TEXT PRIMARY KEY,         -- du_…
    seq                INTEGER NOT NULL UNIQUE,  -- creation order: lists are newest first
    payment_intent     TEXT NOT NULL REFERENCES payment_intents (id),
    charge             TEXT NOT NULL UNIQUE,
    amount             INTEGER NOT NULL CHECK (amount > 0),
    currency           TEXT NOT NULL,
    reason             TEXT NOT NULL CHECK (reason = 'fraudulent'),
    status             TEXT NOT NULL CHECK (status IN
                         ('warning_needs_response', 'needs_response', 'under_review', 'won', 'lost')),
    uncategorized_text TEXT,                     -- evidence[uncategorized_text]
    metadata           TEXT NOT NULL,            -- JSON object of strings
    submission_count   INTEGER NOT NULL DEFAULT 0 CHECK (submission_count >= 0),
    past_due           INTEGER NOT NULL DEFAULT 0 CHECK (past_due IN (0, 1)),
    due_by             INTEGER NOT NULL,         -- unix seconds: evidence is due by then
    decide_at_ms       INTEGER,                  -- when the ticker decides submitted evidence
    created            INTEGER NOT NULL,
    CHECK (decide_at_ms IS NULL OR status = 'under_review'),
    CHECK (status <> 'under_review' OR submission_count > 0)
) STRICT;
CREATE INDEX disputes_payment_intent ON disputes (payment_intent);
CREATE INDEX disputes_awaiting_response ON disputes (due_by)
    WHERE status IN ('warning_needs_response', 'needs_response');
CREATE INDEX disputes_to_decide ON disputes (decide_at_ms) WHERE decide_at_ms IS NOT NULL;
