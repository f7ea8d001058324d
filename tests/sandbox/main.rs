//! The sandbox PSP's integration tests: one binary, one file per capability,
//! every test against a real sandbox on port 0 with its own database and a
//! webhook receiver capturing what it is sent.

mod helpers;

mod api_errors;
mod checkout_sessions;
mod disputes;
mod faults;
mod hosted_page;
mod idempotency;
mod manual_capture;
mod migrations;
mod payment_intents;
mod refunds_transfers;
mod reporting;
mod stripe_python;
mod versions;
mod webhooks;
