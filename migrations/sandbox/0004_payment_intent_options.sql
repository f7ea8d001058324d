-- What a PaymentIntent was created with that decides how it may be confirmed
-- and what the buyer's statement says.

-- Stripe's `automatic_payment_methods` object as the intent shows it
-- ({"enabled": true, "allow_redirects": "always"|"never"}); NULL: not enabled,
-- the intent takes the payment method types it names (card).
ALTER TABLE payment_intents ADD COLUMN automatic_payment_methods TEXT;
ALTER TABLE payment_intents ADD COLUMN statement_descriptor_suffix TEXT;

-- `payment_intent_data[statement_descriptor_suffix]`, copied onto the
-- PaymentIntent when the session is paid.
ALTER TABLE checkout_sessions ADD COLUMN statement_descriptor_suffix TEXT;
