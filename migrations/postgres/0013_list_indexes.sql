-- Lists walk an index in their own order (newest first, keyset pagination
-- on a total order), whatever they filter on, on both engines: no rowid.
DROP INDEX payment_orders_by_seller;
DROP INDEX payment_orders_by_buyer;
DROP INDEX payment_orders_by_status;
CREATE INDEX payment_orders_list ON payment_orders(created_at, checkout_id, position);
CREATE INDEX payment_orders_list_by_status ON payment_orders(payment_order_status, created_at, checkout_id, position);
CREATE INDEX payment_orders_list_by_seller ON payment_orders(seller_id, created_at, checkout_id, position);
CREATE INDEX payment_orders_list_by_buyer ON payment_orders(buyer_account, created_at, checkout_id, position);
CREATE INDEX refunds_list ON refunds(created_at, refund_id);

-- The buyer's email, lower-cased, as a column of its own: the dashboard
-- finds payments by it with SQL both engines run.
ALTER TABLE payment_events ADD COLUMN buyer_email TEXT;
UPDATE payment_events SET buyer_email = lower(buyer_info::jsonb ->> 'email');
DROP INDEX payment_events_buyer_email;
CREATE INDEX payment_events_buyer_email ON payment_events(buyer_email);
