-- What the live refunds of an order (all but FAILED ones) took of the
-- seller's share, beside refunded_minor (what they took of its amount).
-- The money a wallet still holds of its payments is then read from
-- payment_orders alone. Kept by the same writes as refunded_minor.
ALTER TABLE payment_orders ADD COLUMN seller_refunded_minor BIGINT NOT NULL DEFAULT 0
    CHECK (seller_refunded_minor >= 0);
UPDATE payment_orders SET seller_refunded_minor = (
    SELECT COALESCE(SUM(r.seller_part_minor), 0) FROM refunds r
    WHERE r.payment_order_id = payment_orders.payment_order_id AND r.status <> 'FAILED')
WHERE payment_order_id IN (SELECT payment_order_id FROM refunds);
