-- What a shop says about a checkout and each order (issue 18): a
-- description (at most 500 characters) and metadata (Stripe's limits), as
-- given, echoed on every object and event. NULL: none given.
ALTER TABLE payment_events ADD COLUMN description TEXT;
ALTER TABLE payment_events ADD COLUMN metadata TEXT;        -- JSON object of strings
ALTER TABLE payment_orders ADD COLUMN description TEXT;
ALTER TABLE payment_orders ADD COLUMN metadata TEXT;        -- JSON object of strings

-- Each order's metadata, its checkout's merged with its own (the order's
-- value wins), one row per key: GET /v1/payments?metadata[k]=v and the
-- dashboard's search find orders by it on both engines.
CREATE TABLE payment_order_metadata (
    payment_order_id  TEXT NOT NULL REFERENCES payment_orders(payment_order_id),
    key               TEXT NOT NULL,
    value             TEXT NOT NULL,
    PRIMARY KEY (payment_order_id, key)
);
CREATE INDEX payment_order_metadata_key_value ON payment_order_metadata(key, value);
CREATE INDEX payment_order_metadata_value ON payment_order_metadata(value);

-- A seller is created by its first payment, before anyone names it: the
-- name is optional.
ALTER TABLE sellers ALTER COLUMN name DROP NOT NULL;
-- Every seller that holds a wallet has a record.
INSERT INTO sellers (seller_id, name, payout_destination, created_at, updated_at)
    SELECT seller_id, NULL, NULL, MIN(updated_at), MIN(updated_at) FROM wallets
    WHERE seller_id NOT IN (SELECT seller_id FROM sellers) GROUP BY seller_id;
