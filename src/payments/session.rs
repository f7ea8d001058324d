//! The checkout's hosted session at the PSP: registering it (the stored
//! request, sent as often as needed: the PSP answers with the same session)
//! and the plan of when an open session is asked about.

use crate::alerts;
use crate::config::Settings;
use crate::context::Ctx;
use crate::payments::model::OrderStatus;
use crate::payments::store;
use crate::psp::PspError;
use crate::psp::requests::PspRequest;
use crate::queue::{self, JobKind};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The PSP refused to create the session (an alert is raised).
    #[error("{0}")]
    Refused(String),
    /// The PSP did not answer: the same request resumes it.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// When an open hosted checkout's session is asked about: every
/// `payments.sync_every_seconds` from its creation (at most 15 minutes, so
/// a lost webhook is found within them), and once just after it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPlan {
    every_ms: i64,
    /// A minute after the session's expiry: by then the PSP has closed it.
    last_ms: i64,
}

impl SyncPlan {
    pub fn of(settings: &Settings, expires_at_s: i64) -> SyncPlan {
        SyncPlan { every_ms: settings.payments.sync_every_seconds * 1000, last_ms: (expires_at_s + 60) * 1000 }
    }

    /// The first sync's delay from now.
    pub fn first_delay_ms(&self) -> i64 {
        self.next_at_ms(crate::db::now_ms()).map_or(0, |at| at - crate::db::now_ms())
    }

    /// When to ask next about a session still open at `now_ms`; None once
    /// its expiry is past (an open session then is the PSP's delay, and
    /// the queue's backoff takes over).
    pub fn next_at_ms(&self, now_ms: i64) -> Option<i64> {
        (now_ms < self.last_ms).then(|| (now_ms + self.every_ms).min(self.last_ms))
    }
}

/// Sends the checkout's stored session request to the PSP (idempotent on
/// the checkout id, so a retry after a timeout or a crash gets the same
/// session) and records the session. Nothing the PSP answers here fails an
/// order: no buyer has tried to pay yet.
pub async fn register(
    ctx: &Ctx,
    checkout_id: &str,
    order_ids: &[String],
    request: &PspRequest,
) -> Result<(), SessionError> {
    let (checkout_id, order_ids) = (checkout_id.to_string(), order_ids.to_vec());
    let expires_at: i64 = request
        .param("expires_at")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("the stored session request of {checkout_id} has no expires_at"))?;
    let syncs = SyncPlan::of(&ctx.settings, expires_at);
    let max_attempts = ctx.settings.queue.max_attempts;
    match ctx.psp.create_checkout_session(request).await {
        Ok(session) => {
            let url = session.url.clone().unwrap_or_default();
            ctx.db
                .write(move |tx| -> Result<(), SessionError> {
                    store::set_session(tx, &checkout_id, &session.id, &url)?;
                    for id in &order_ids {
                        store::transition_order(
                            tx,
                            id,
                            OrderStatus::NotStarted,
                            OrderStatus::Executing,
                            None,
                            "hosted checkout session registered at the PSP",
                        )?;
                    }
                    queue::enqueue(tx, JobKind::SyncCheckout, &checkout_id, syncs.first_delay_ms(), max_attempts)?;
                    Ok(())
                })
                .await
        }
        // The PSP refused the request, not a payment: the orders stay
        // NOT_STARTED (the same request resumes them once the cause is
        // fixed, or the shop cancels the checkout), and a person is told.
        Err(e @ (PspError::Refused { .. } | PspError::Rejected { .. })) => {
            let message = e.to_string();
            let alert = format!(
                "the PSP refused to create the hosted session of checkout {checkout_id}: {message}; \
                 nothing was charged, its orders stay NOT_STARTED"
            );
            ctx.db.write(move |tx| alerts::raise(tx, "psp_request_refused", &checkout_id, &alert)).await?;
            Err(SessionError::Refused(message))
        }
        // Never guessed FAILED: the orders stay NOT_STARTED and the same
        // request (same idempotency key at the PSP) resumes it.
        Err(PspError::Unknown(reason)) => Err(SessionError::Unavailable(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_session_is_asked_about_at_a_steady_pace_then_once_after_its_expiry() {
        let plan = SyncPlan { every_ms: 600_000, last_ms: 3_660_000 };
        assert_eq!(plan.next_at_ms(0), Some(600_000), "within the first minutes");
        assert_eq!(plan.next_at_ms(3_000_000), Some(3_600_000));
        assert_eq!(plan.next_at_ms(3_500_000), Some(3_660_000), "never past a minute after its expiry");
        assert_eq!(plan.next_at_ms(3_660_000), None);
    }
}
