//! Asking the PSP about a checkout instead of waiting for its webhook, and
//! canceling a checkout. A lost webhook must be noticed in minutes: the
//! sync job asks about each open hosted checkout soon after it is created,
//! again at a steady pace, and once more just after its session must have
//! ended; the shop can ask at once (`POST /v1/checkouts/{id}/sync`, from
//! its success page, as Stripe advises). Everything applied is the PSP's
//! own copy of the object, through the same state machine as its webhooks.

use crate::context::Ctx;
use crate::db::Tx;
use crate::payments::book::fail_order;
use crate::payments::capture::{self, CaptureError};
use crate::payments::complete::{self, ApplyError};
use crate::payments::execute;
use crate::payments::model::{Checkout, Order, OrderStatus};
use crate::payments::session::{self, SyncPlan};
use crate::payments::store::{self, CheckoutView, EventHead};
use crate::payments::{Policy, notify};
use crate::psp::types::SessionOutcome;
use crate::psp::{PspError, requests, session_key};
use crate::queue::JobError;

/// The sync job of a hosted checkout.
pub async fn sync_checkout(ctx: &Ctx, checkout_id: &str) -> Result<(), JobError> {
    let Some(head) = head(ctx, checkout_id).await? else {
        return Err(JobError::Final(format!("checkout {checkout_id} does not exist")));
    };
    let Some(session_id) = head.psp_session_id.filter(|_| !head.is_payment_done) else { return Ok(()) };
    let session = match ctx.psp.retrieve_checkout_session(&session_id, checkout_id).await {
        Ok(s) => s,
        Err(PspError::Unknown(reason)) => return Err(JobError::Retry(reason)),
        Err(refused) => return Err(JobError::Final(refused.to_string())),
    };
    let plan = session.expires_at.map(|at| SyncPlan::of(&ctx.settings, at));
    let still_open = session.outcome() == SessionOutcome::Open;
    match complete::apply_checkout_session(ctx, session).await {
        Ok(_) if still_open => match plan.and_then(|p| p.next_at_ms(crate::db::now_ms())) {
            Some(at_ms) => Err(JobError::Later { at_ms, why: format!("session {session_id} is open") }),
            None => Err(JobError::Retry(format!("session {session_id} is still open after its expiry"))),
        },
        Ok(_) => Ok(()),
        Err(ApplyError::Internal(e)) => Err(e.into()),
        Err(ApplyError::PspUnavailable(why)) => Err(JobError::Retry(why)),
        Err(other) => Err(JobError::Final(other.to_string())),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("no checkout {0}")]
    NotFound(String),
    #[error("{0}")]
    NotCancelable(String),
    #[error("the PSP did not answer: {0}")]
    PspUnavailable(String),
    #[error("the PSP's answer could not be applied: {0}")]
    Psp(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<session::SessionError> for SyncError {
    fn from(e: session::SessionError) -> SyncError {
        match e {
            session::SessionError::Unavailable(why) => SyncError::PspUnavailable(why),
            session::SessionError::Internal(e) => SyncError::Internal(e),
            session::SessionError::Refused(why) => SyncError::Psp(why),
        }
    }
}

impl From<CaptureError> for SyncError {
    fn from(e: CaptureError) -> SyncError {
        match e {
            CaptureError::NotFound(id) => SyncError::NotFound(id),
            CaptureError::Refused(why) | CaptureError::NotVoidable(why) => SyncError::NotCancelable(why),
            CaptureError::BadOrder { .. } => SyncError::Internal(anyhow::anyhow!("a void names no order: {e}")),
            CaptureError::PspUnavailable(why) => SyncError::PspUnavailable(why),
            CaptureError::Psp(why) => SyncError::Psp(why),
            CaptureError::Internal(e) => SyncError::Internal(e),
        }
    }
}

impl From<JobError> for SyncError {
    fn from(e: JobError) -> SyncError {
        match e {
            JobError::Retry(why) => SyncError::PspUnavailable(why),
            JobError::Final(why) => SyncError::Psp(why),
            // Open at the PSP: nothing more to apply now.
            JobError::Later { .. } => SyncError::Internal(anyhow::anyhow!("unreachable: no plan when syncing now")),
        }
    }
}

/// `POST /v1/checkouts/{id}/sync`: asks the PSP now about every order of
/// the checkout that is not final and applies its answer; a no-op on a
/// final checkout. A hosted checkout whose session was never registered
/// (the PSP did not answer) is registered now, with its stored request.
pub async fn sync_now(ctx: &Ctx, checkout_id: &str) -> Result<CheckoutView, SyncError> {
    let head = head(ctx, checkout_id).await?.ok_or_else(|| SyncError::NotFound(checkout_id.to_string()))?;
    if !head.is_payment_done {
        match (head.payment_method.as_str(), &head.psp_session_id) {
            ("hosted_page", Some(session_id)) => apply_session(ctx, checkout_id, session_id).await?,
            ("hosted_page", None) if !head.canceled => register(ctx, checkout_id).await?,
            ("token", _) => sync_token_orders(ctx, checkout_id).await?,
            _ => {}
        }
    }
    Ok(CheckoutView::from(&load(ctx, checkout_id).await?))
}

async fn apply_session(ctx: &Ctx, checkout_id: &str, session_id: &str) -> Result<(), SyncError> {
    let session = match ctx.psp.retrieve_checkout_session(session_id, checkout_id).await {
        Ok(s) => s,
        Err(PspError::Unknown(why)) => return Err(SyncError::PspUnavailable(why)),
        Err(refused) => return Err(SyncError::Psp(refused.to_string())),
    };
    match complete::apply_checkout_session(ctx, session).await {
        Ok(_) => Ok(()),
        Err(ApplyError::Internal(e)) => Err(SyncError::Internal(e)),
        Err(ApplyError::PspUnavailable(why)) => Err(SyncError::PspUnavailable(why)),
        Err(other) => Err(SyncError::Psp(other.to_string())),
    }
}

/// Sends the checkout's stored session request again (same idempotency
/// key: the PSP answers with the session if it made one).
async fn register(ctx: &Ctx, checkout_id: &str) -> Result<(), SyncError> {
    let key = session_key(checkout_id);
    let request = ctx.db.run(move |tx| requests::load(tx, &key)).await?;
    let Some(request) = request else { return Ok(()) };
    let orders = order_ids(ctx, checkout_id).await?;
    session::register(ctx, checkout_id, &orders, &request).await?;
    Ok(())
}

/// Each token order that is not final: its intent read again if it has one,
/// or its charge job brought forward.
async fn sync_token_orders(ctx: &Ctx, checkout_id: &str) -> Result<(), SyncError> {
    let id = checkout_id.to_string();
    let orders = ctx.db.run(move |tx| store::load_orders_of(tx, &id)).await?;
    for order in orders.iter().filter(|o| !o.status.is_final()) {
        let order_id = order.payment_order_id.as_str();
        let Some(intent_id) = &order.psp_payment_intent_id else {
            execute::charge_soon(ctx, order_id).await?;
            continue;
        };
        let intent = match ctx.psp.retrieve_payment_intent(intent_id, order_id).await {
            Ok(intent) => intent,
            Err(PspError::Unknown(why)) => return Err(SyncError::PspUnavailable(why)),
            Err(refused) => return Err(SyncError::Psp(refused.to_string())),
        };
        match execute::apply_intent(ctx, order_id, intent).await {
            Ok(()) | Err(JobError::Retry(_) | JobError::Later { .. }) => {}
            Err(JobError::Final(why)) => return Err(SyncError::Psp(why)),
        }
    }
    Ok(())
}

/// `POST /v1/checkouts/{id}/cancel`: no order of it will be paid. The
/// cancel is recorded first, then the hosted session is expired at the PSP
/// (a session made by a request whose answer was lost is fetched first, so
/// it is expired too), then its orders fail as `canceled`. Refused (409)
/// once an order succeeded, also when the buyer paid while it was being
/// canceled; a token order whose charge is under way cannot be canceled.
pub async fn cancel(ctx: &Ctx, checkout_id: &str) -> Result<CheckoutView, SyncError> {
    let checkout = cancel_unauthorized(ctx, checkout_id).await?;
    // A manual checkout the buyer authorized (before, or while it was being
    // canceled): canceled means nothing will be captured, so it is voided.
    if checkout.orders.iter().any(|o| o.status == OrderStatus::Authorized) {
        return capture::void(ctx, checkout_id).await.map_err(SyncError::from);
    }
    Ok(CheckoutView::from(&checkout))
}

async fn cancel_unauthorized(ctx: &Ctx, checkout_id: &str) -> Result<Checkout, SyncError> {
    let id = checkout_id.to_string();
    let policy = Policy::of(&ctx.settings);
    let (head, authorized) = ctx
        .db
        .write(move |tx| -> Result<(EventHead, bool), SyncError> {
            let head = store::find_event_head(tx, &id)?.ok_or_else(|| SyncError::NotFound(id.clone()))?;
            let orders = store::load_orders_of(tx, &id)?;
            let authorized = orders.iter().any(|o| o.status == OrderStatus::Authorized);
            refuse_if_paid(&orders)?;
            if head.payment_method == "token"
                && let Some(o) = orders.iter().find(|o| o.status == OrderStatus::Executing)
            {
                let why = format!("order {} is being charged at the PSP; it cannot be canceled", o.payment_order_id);
                return Err(SyncError::NotCancelable(why));
            }
            store::mark_canceled(tx, &id)?;
            if head.payment_method == "token" {
                fail_not_started(tx, &id, &orders, policy)?;
            }
            Ok((head, authorized))
        })
        .await?;
    // An authorized session is complete: there is nothing to expire, only to void.
    if head.payment_method == "hosted_page" && !head.is_payment_done && !authorized {
        expire_session(ctx, checkout_id, head.psp_session_id).await?;
    }
    let checkout = load(ctx, checkout_id).await?;
    refuse_if_paid(&checkout.orders)?;
    Ok(checkout)
}

fn refuse_if_paid(orders: &[Order]) -> Result<(), SyncError> {
    match orders.iter().find(|o| o.status == OrderStatus::Success) {
        Some(o) => Err(SyncError::NotCancelable(format!(
            "order {} succeeded; a paid checkout is not canceled (refund it instead)",
            o.payment_order_id
        ))),
        None => Ok(()),
    }
}

fn fail_not_started(tx: &Tx, checkout_id: &str, orders: &[Order], policy: Policy) -> anyhow::Result<()> {
    for order in orders.iter().filter(|o| o.status == OrderStatus::NotStarted) {
        let reason = "checkout canceled by the shop";
        fail_order(tx, order.payment_order_id.as_str(), OrderStatus::NotStarted, "canceled", reason, policy)?;
    }
    notify::checkout_progress(tx, checkout_id, policy)
}

async fn expire_session(ctx: &Ctx, checkout_id: &str, known: Option<String>) -> Result<(), SyncError> {
    let session_id = match known {
        Some(id) => Some(id),
        // Its creation's answer may have been lost: ask again (same key).
        None => {
            register(ctx, checkout_id).await.or_else(|e| match e {
                SyncError::Psp(_) => Ok(()),
                other => Err(other),
            })?;
            head(ctx, checkout_id).await?.and_then(|h| h.psp_session_id)
        }
    };
    let Some(session_id) = session_id else {
        // No session exists: nobody can pay, the orders fail here.
        let (id, policy) = (checkout_id.to_string(), Policy::of(&ctx.settings));
        return Ok(ctx
            .db
            .write(move |tx| -> anyhow::Result<()> {
                fail_not_started(tx, &id, &store::load_orders_of(tx, &id)?, policy)
            })
            .await?);
    };
    let session = match ctx.psp.expire_checkout_session(&session_id, checkout_id).await {
        Ok(session) => session,
        Err(PspError::Unknown(why)) => return Err(SyncError::PspUnavailable(why)),
        // Not open any more (paid, or expired already): its own state decides.
        Err(_) => return apply_session(ctx, checkout_id, &session_id).await,
    };
    match complete::apply_checkout_session(ctx, session).await {
        Ok(_) => Ok(()),
        Err(ApplyError::Internal(e)) => Err(SyncError::Internal(e)),
        Err(ApplyError::PspUnavailable(why)) => Err(SyncError::PspUnavailable(why)),
        Err(other) => Err(SyncError::Psp(other.to_string())),
    }
}

async fn head(ctx: &Ctx, checkout_id: &str) -> anyhow::Result<Option<EventHead>> {
    let id = checkout_id.to_string();
    ctx.db.run(move |tx| store::find_event_head(tx, &id)).await
}

async fn order_ids(ctx: &Ctx, checkout_id: &str) -> anyhow::Result<Vec<String>> {
    let id = checkout_id.to_string();
    let orders = ctx.db.run(move |tx| store::load_orders_of(tx, &id)).await?;
    Ok(orders.into_iter().map(|o| o.payment_order_id.to_string()).collect())
}

async fn load(ctx: &Ctx, checkout_id: &str) -> Result<Checkout, SyncError> {
    let id = checkout_id.to_string();
    ctx.db
        .run(move |tx| store::load_checkout(tx, &id))
        .await?
        .ok_or_else(|| SyncError::NotFound(checkout_id.to_string()))
}
