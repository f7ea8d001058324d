-- The Stripe-Version header each PSP call carried (psp.api_version when it
-- was made). NULL: a call recorded before till sent the header.
ALTER TABLE psp_calls ADD COLUMN api_version TEXT;
