//! till's integration tests: one binary, one file per capability. Every
//! TestApp checks the ledger invariants (`till check`) when it is dropped.

mod helpers;

mod cli;
mod create_payment;
mod hosted_flow;
mod psp_webhooks;
