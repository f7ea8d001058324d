-- Disputes (chargebacks, SPEC §3.6a). The PSP disputes a charge; till
-- keeps one dispute per order the charge paid (a hosted checkout's one
-- charge pays all its orders: the dispute's amount is shared among them in
-- proportion to what each still holds; its fee is borne by the first).
-- What the PSP says of the dispute (status, deadline, evidence) is kept on
-- every row of it in step. Its money is booked once when the PSP withdraws
-- it (`withdrawn_at`) and reversed once when the PSP reinstates it
-- (`reinstated_at`, a won dispute): the seller's wallet bears its share
-- (`seller_part_minor`, when `disputes.seller_liable`), or the platform
-- (`expenses:disputes`); the fee is the platform's (`expenses:dispute_fees`).
CREATE TABLE disputes (
    dispute_id            TEXT PRIMARY KEY,      -- till's (a UUID)
    psp_dispute_id        TEXT NOT NULL,         -- the PSP's (du_…)
    part                  INTEGER NOT NULL CHECK (part >= 0),   -- its orders in order; part 0 bears the fee
    payment_order_id      TEXT NOT NULL REFERENCES payment_orders(payment_order_id),
    checkout_id           TEXT NOT NULL REFERENCES payment_events(checkout_id),
    seller_id             TEXT NOT NULL,
    payment_intent_id     TEXT NOT NULL,
    amount_minor          INTEGER NOT NULL CHECK (amount_minor > 0),   -- this order's part
    fee_minor             INTEGER NOT NULL DEFAULT 0 CHECK (fee_minor >= 0),
    currency              TEXT NOT NULL,
    seller_liable         INTEGER NOT NULL CHECK (seller_liable IN (0, 1)),
    seller_part_minor     INTEGER NOT NULL CHECK (seller_part_minor >= 0 AND seller_part_minor <= amount_minor),
    commission_part_minor INTEGER NOT NULL CHECK (commission_part_minor >= 0),
    reason                TEXT NOT NULL,
    status                TEXT NOT NULL
        CHECK (status IN ('needs_response', 'under_review', 'won', 'lost', 'accepted')),
    evidence_due_by       TEXT,
    -- The shop's one answer: its evidence, or its acceptance (recorded
    -- once, before it is sent to the PSP; never both).
    response              TEXT CHECK (response IN ('evidence', 'accept')),
    evidence_text         TEXT,
    responded_at          TEXT,
    withdrawn_at          TEXT,
    reinstated_at         TEXT,
    closed_at             TEXT,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    UNIQUE (psp_dispute_id, payment_order_id),
    UNIQUE (psp_dispute_id, part),
    CHECK (reinstated_at IS NULL OR withdrawn_at IS NOT NULL),
    CHECK (seller_part_minor + commission_part_minor <= amount_minor)
) STRICT;
CREATE INDEX disputes_order ON disputes(payment_order_id);
CREATE INDEX disputes_list ON disputes(created_at, dispute_id);
CREATE INDEX disputes_open ON disputes(evidence_due_by) WHERE status IN ('needs_response', 'under_review');
CREATE INDEX disputes_seller ON disputes(seller_id, currency);

-- Reconciliation matches the PSP's `dispute` and `dispute_reversal` lines to
-- these disputes: reconciliation_items' record_type CHECK widens, so the
-- table is rebuilt (SQLite's recipe, foreign keys off: db::migrate_sqlite).
CREATE TABLE reconciliation_items_new (
    id                INTEGER PRIMARY KEY,
    run_id            INTEGER REFERENCES reconciliation_runs(id),
    row_id            INTEGER UNIQUE REFERENCES settlement_rows(id),
    class             TEXT NOT NULL CHECK (class IN ('matched', 'amount_mismatch', 'currency_mismatch',
                          'missing_in_till', 'missing_in_psp', 'duplicate_in_file', 'unclassified')),
    first_class       TEXT NOT NULL,           -- the first decision, before any automatic fix …
    first_rule        TEXT NOT NULL,           -- … and its rule
    rule              TEXT NOT NULL,           -- the rule that made the decision standing now
    record_type       TEXT CHECK (record_type IN ('checkout', 'payment_order', 'refund', 'payout',
                          'bank_payout', 'psp_fee', 'dispute', 'dispute_reversal')),
    record_id         TEXT,
    till_amount_minor INTEGER,
    till_currency     TEXT,
    till_status       TEXT,
    duplicate_of      INTEGER REFERENCES reconciliation_items(id),
    fix               TEXT,                    -- what the automatic fix did or why it could not
    status            TEXT NOT NULL CHECK (status IN ('none', 'open', 'resolved')),
    note              TEXT,
    resolved_by       TEXT,
    resolved_at       TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    CHECK ((row_id IS NULL) = (class = 'missing_in_psp')),
    CHECK ((status = 'none') = (class = 'matched')),
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL AND note IS NOT NULL))
) STRICT;
INSERT INTO reconciliation_items_new SELECT id, run_id, row_id, class, first_class, first_rule, rule, record_type,
    record_id, till_amount_minor, till_currency, till_status, duplicate_of, fix, status, note, resolved_by,
    resolved_at, created_at, updated_at FROM reconciliation_items;
DROP TABLE reconciliation_items;
ALTER TABLE reconciliation_items_new RENAME TO reconciliation_items;
-- Each till record is matched by at most one line of all files.
CREATE UNIQUE INDEX reconciliation_items_one_match ON reconciliation_items(record_type, record_id)
    WHERE record_id IS NOT NULL
      AND class IN ('matched', 'amount_mismatch', 'currency_mismatch', 'missing_in_till');
-- …and reported missing at most once while that is open.
CREATE UNIQUE INDEX reconciliation_items_one_missing ON reconciliation_items(record_type, record_id)
    WHERE class = 'missing_in_psp' AND status = 'open';
CREATE INDEX reconciliation_items_status ON reconciliation_items(status, id);
CREATE INDEX reconciliation_items_run ON reconciliation_items(run_id);
CREATE INDEX reconciliation_items_record ON reconciliation_items(record_type, record_id);
