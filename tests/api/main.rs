//! till's integration tests: one binary, one file per capability. Every
//! TestApp checks the ledger invariants (`till check`) when it is dropped.

mod helpers;

mod admin;
mod admin_browser;
mod admin_capture;
mod admin_disputes;
mod admin_login;
mod admin_perf;
mod admin_phone;
mod admin_reconciliation;

mod alerts_and_jobs;
mod bench_smoke;
mod cli;
mod concurrency;
mod crash_recovery;
mod create_payment;
mod db_copy;
mod disputes;
mod failover;
mod fault_tolerance;
mod hosted_flow;
mod hostile_input;
mod idempotency_header;
mod integration_api;
mod manual_capture;
mod merchant_webhooks;
mod openapi;
mod ops_alerts;
mod ops_cli;
mod ops_metrics;
mod ops_openapi;
mod ops_storage;
mod payouts;
mod properties;
mod psp_retries;
mod psp_webhooks;
mod reconciliation;
mod refunds;
mod scale_out;
mod schema;
mod stripe_wire;
mod token_payments;
