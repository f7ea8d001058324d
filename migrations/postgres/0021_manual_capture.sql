-- Authorize now, capture later (SPEC §3.6a); in step with
-- migrations/till/0021_manual_capture.sql, which says why.
ALTER TABLE payment_events ADD COLUMN capture_method TEXT NOT NULL DEFAULT 'automatic'
    CHECK (capture_method IN ('automatic', 'manual'));
ALTER TABLE payment_events ADD COLUMN capture_decision TEXT
    CHECK (capture_decision IN ('capture', 'void', 'expire'));
ALTER TABLE payment_events ADD COLUMN capture_decided_at TEXT;
-- When every order of a manual checkout was authorized or had failed (the
-- shop is told once: checkout.authorized).
ALTER TABLE payment_events ADD COLUMN authorized_at TEXT;

ALTER TABLE payment_orders DROP CONSTRAINT payment_orders_payment_order_status_check;
ALTER TABLE payment_orders ADD CONSTRAINT payment_orders_payment_order_status_check
    CHECK (payment_order_status IN ('NOT_STARTED', 'EXECUTING', 'AUTHORIZED', 'SUCCESS', 'FAILED'));
ALTER TABLE payment_orders ADD COLUMN authorized_at TEXT;
ALTER TABLE payment_orders ADD COLUMN capture_before TEXT;
ALTER TABLE payment_orders ADD COLUMN capture_minor BIGINT
    CHECK (capture_minor IS NULL OR (capture_minor >= 0 AND capture_minor <= amount_minor));
ALTER TABLE payment_orders ADD COLUMN captured_minor BIGINT
    CHECK (captured_minor IS NULL OR (captured_minor > 0 AND captured_minor <= amount_minor));
UPDATE payment_orders SET captured_minor = amount_minor WHERE payment_order_status = 'SUCCESS';
ALTER TABLE payment_orders DROP CONSTRAINT payment_orders_check;
ALTER TABLE payment_orders ADD CONSTRAINT payment_orders_check
    CHECK (refunded_minor >= 0 AND refunded_minor <= COALESCE(captured_minor, amount_minor));
ALTER TABLE payment_orders ADD CONSTRAINT payment_orders_captured_when_success
    CHECK ((payment_order_status = 'SUCCESS') = (captured_minor IS NOT NULL));

DROP INDEX payment_orders_succeeded;
CREATE INDEX payment_orders_succeeded ON payment_orders(succeeded_at, currency, captured_minor)
    WHERE payment_order_status = 'SUCCESS';
CREATE INDEX payment_orders_authorized ON payment_orders(seller_id, currency, amount_minor)
    WHERE payment_order_status = 'AUTHORIZED';
