-- What the PSP itself says it charged (its own copy of the payment intent
-- or checkout session, never a webhook's body), and how much of it backs
-- orders that till booked as paid. A charge backs orders of its own
-- checkout only (a token charge: its one order), never more than its
-- amount; the database refuses the rest, and `till check` audits it.
CREATE TABLE psp_charges (
    payment_intent_id TEXT PRIMARY KEY,
    checkout_id       TEXT NOT NULL REFERENCES payment_events(checkout_id),
    payment_order_id  TEXT REFERENCES payment_orders(payment_order_id),
    amount_minor      BIGINT NOT NULL CHECK (amount_minor > 0),
    currency          TEXT NOT NULL,
    backed_minor      BIGINT NOT NULL DEFAULT 0 CHECK (backed_minor >= 0 AND backed_minor <= amount_minor),
    recorded_at       TEXT NOT NULL
);

-- Charges booked before this table existed: what their orders add up to.
INSERT INTO psp_charges (payment_intent_id, checkout_id, payment_order_id, amount_minor, currency, backed_minor,
                         recorded_at)
SELECT o.psp_payment_intent_id, MIN(o.checkout_id),
       CASE WHEN MIN(e.payment_method) = 'token' THEN MIN(o.payment_order_id) END,
       SUM(o.amount_minor), MIN(o.currency), SUM(o.amount_minor), COALESCE(MIN(o.succeeded_at), MIN(o.updated_at))
FROM payment_orders o JOIN payment_events e ON e.checkout_id = o.checkout_id
WHERE o.payment_order_status = 'SUCCESS' AND o.psp_payment_intent_id IS NOT NULL
GROUP BY o.psp_payment_intent_id;
