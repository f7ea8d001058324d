-- Disputes (chargebacks, SPEC §3.6a); in step with migrations/till/0022_disputes.sql. The PSP disputes a charge; till
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
    part                  BIGINT NOT NULL CHECK (part >= 0),   -- its orders in order; part 0 bears the fee
    payment_order_id      TEXT NOT NULL REFERENCES payment_orders(payment_order_id),
    checkout_id           TEXT NOT NULL REFERENCES payment_events(checkout_id),
    seller_id             TEXT NOT NULL,
    payment_intent_id     TEXT NOT NULL,
    amount_minor          BIGINT NOT NULL CHECK (amount_minor > 0),   -- this order's part
    fee_minor             BIGINT NOT NULL DEFAULT 0 CHECK (fee_minor >= 0),
    currency              TEXT NOT NULL,
    seller_liable         BIGINT NOT NULL CHECK (seller_liable IN (0, 1)),
    seller_part_minor     BIGINT NOT NULL CHECK (seller_part_minor >= 0 AND seller_part_minor <= amount_minor),
    commission_part_minor BIGINT NOT NULL CHECK (commission_part_minor >= 0),
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
);
CREATE INDEX disputes_order ON disputes(payment_order_id);
CREATE INDEX disputes_list ON disputes(created_at, dispute_id);
CREATE INDEX disputes_open ON disputes(evidence_due_by) WHERE status IN ('needs_response', 'under_review');
CREATE INDEX disputes_seller ON disputes(seller_id, currency);

-- Reconciliation matches the PSP's `dispute` and `dispute_reversal` lines to these disputes.
ALTER TABLE reconciliation_items DROP CONSTRAINT reconciliation_items_record_type_check;
ALTER TABLE reconciliation_items ADD CONSTRAINT reconciliation_items_record_type_check
    CHECK (record_type IN ('checkout', 'payment_order', 'refund', 'payout', 'bank_payout', 'psp_fee', 'dispute',
                           'dispute_reversal'));
