-- Every index on payment_orders is paid for on each order's writes. These
-- three are covered by later ones: (seller_id) by payment_orders_by_seller,
-- (payment_order_status) by payment_orders_by_status, (created_at) by
-- payment_orders_created_status.
DROP INDEX payment_orders_seller;
DROP INDEX payment_orders_status;
DROP INDEX payment_orders_created;
