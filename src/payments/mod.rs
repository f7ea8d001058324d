//! Pay-in: payment events (checkouts) and their orders, from the create call
//! through the PSP to a final state, with the wallet and ledger moved in the
//! same transaction as the order's success.

pub mod book;
pub mod capture;
pub mod complete;
pub mod create;
pub mod execute;
pub mod model;
pub mod notify;
pub mod session;
pub mod store;
pub mod sync;

use rust_decimal::Decimal;

use crate::config::Settings;

/// The settings the payment state machine applies, copied out of `Settings`
/// so they can move into a database closure.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub commission_percent: Decimal,
    pub webhook_attempts: u32,
    /// `payments.authorization_days` in milliseconds: how long an
    /// authorization waits for the shop's capture.
    pub authorization_ms: i64,
    /// `queue.max_attempts`, for the jobs a transition enqueues.
    pub job_attempts: u32,
}

impl Policy {
    pub fn of(settings: &Settings) -> Policy {
        Policy {
            commission_percent: settings.fees.commission_percent,
            webhook_attempts: settings.webhooks.max_attempts,
            authorization_ms: settings.payments.authorization_ms(),
            job_attempts: settings.queue.max_attempts,
        }
    }
}
