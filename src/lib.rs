//! till: a self-hosted payment system in one binary.

pub mod admin;
pub mod alerts;
pub mod api_keys;
pub mod cli;
pub mod config;
pub mod context;
pub mod db;
pub mod disputes;
pub mod events;
pub mod http;
pub mod idempotency;
pub mod jobs;
pub mod ledger;
pub mod metrics;
pub mod money;
pub mod payments;
pub mod payouts;
pub mod psp;
pub mod queue;
pub mod reconciliation;
pub mod refunds;
pub mod sandbox;
pub mod startup;
pub mod telemetry;
pub mod wallet;
pub mod webhooks;
