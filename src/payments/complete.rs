//! Applying the PSP's word on a hosted checkout session (its orders
//! entering SUCCESS or FAILED with their books through `book`; a manual
//! checkout's through its PaymentIntent, `capture`). Applying the same
//! session twice changes nothing the second time.

use crate::context::Ctx;
use crate::db::Tx;
use crate::money::Money;
use crate::payments::book::{fail_order, succeed_orders};
use crate::payments::capture;
use crate::payments::model::{CaptureMethod, CheckoutId, Order, OrderStatus};
use crate::payments::store::{self, Charge};
use crate::payments::{Policy, notify};
use crate::psp::PspError;
use crate::psp::types::{CheckoutSession, PaymentIntent, SessionOutcome};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub succeeded: usize,
    pub failed: usize,
    /// A manual checkout's session is complete, and its payment intent
    /// (not given) says whether the money is held, captured or released.
    pub needs_intent: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("session {0} belongs to no checkout of ours")]
    UnknownSession(String),
    #[error("session {session} says {psp}, but checkout {checkout_id} holds {ours}")]
    Mismatch { session: String, checkout_id: String, psp: String, ours: String },
    /// The PSP could not be asked for the session's payment intent: ask again.
    #[error("the PSP did not answer: {0}")]
    PspUnavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Applies a session just read from the PSP (never a webhook's copy of it).
/// A manual checkout's complete session is applied with its payment
/// intent, read from the PSP too (between two writes, outside any).
pub async fn apply_checkout_session(ctx: &Ctx, session: CheckoutSession) -> Result<Applied, ApplyError> {
    let policy = Policy::of(&ctx.settings);
    let first = {
        let session = session.clone();
        ctx.db.write(move |tx| apply_in_tx(tx, &session, None, policy)).await?
    };
    let Some(intent_id) = session.payment_intent.clone().filter(|_| first.needs_intent) else { return Ok(first) };
    let intent = match ctx.psp.retrieve_payment_intent(&intent_id, &session.id).await {
        Ok(intent) => intent,
        Err(PspError::Unknown(why)) => return Err(ApplyError::PspUnavailable(why)),
        Err(refused) => return Err(ApplyError::Internal(anyhow::anyhow!("payment intent {intent_id}: {refused}"))),
    };
    ctx.db.write(move |tx| apply_in_tx(tx, &session, Some(&intent), policy)).await
}

fn apply_in_tx(
    tx: &Tx,
    session: &CheckoutSession,
    intent: Option<&PaymentIntent>,
    policy: Policy,
) -> Result<Applied, ApplyError> {
    let checkout_id = match store::checkout_of_session(tx, &session.id)? {
        Some(id) => id,
        None => adopt_session(tx, session)?,
    };
    let head = store::find_event_head(tx, checkout_id.as_str())?
        .ok_or_else(|| anyhow::anyhow!("checkout {checkout_id} vanished"))?;
    let orders = store::load_orders_of(tx, checkout_id.as_str())?;
    let executing = orders.iter().filter(|o| o.status == OrderStatus::Executing);
    let mut applied = Applied::default();
    match session.outcome() {
        SessionOutcome::Open => {}
        // Manual capture: the session says the buyer finished; its intent
        // says what the PSP holds or took.
        SessionOutcome::Paid | SessionOutcome::Completed if head.capture_method == CaptureMethod::Manual => {
            match intent {
                Some(intent) if session.payment_intent.as_deref() == Some(intent.id.as_str()) => {
                    capture::apply_to_group(tx, &head, &checkout_id, &orders, intent, None, policy)?;
                }
                Some(intent) => {
                    return Err(ApplyError::Mismatch {
                        session: session.id.clone(),
                        checkout_id: checkout_id.to_string(),
                        psp: format!("payment intent {:?}", session.payment_intent),
                        ours: format!("payment intent {}", intent.id),
                    });
                }
                None => applied.needs_intent = session.payment_intent.is_some(),
            }
        }
        // An automatic checkout's payment still on its way: its session completes paid later.
        SessionOutcome::Completed => {}
        SessionOutcome::Paid => {
            let charge = session_charge(session, &checkout_id, &orders)?;
            applied.succeeded += succeed_orders(tx, &executing.collect::<Vec<_>>(), Some(&charge), policy)?;
        }
        SessionOutcome::Expired => {
            let (code, reason) = match head.canceled {
                true => ("canceled", "hosted checkout canceled by the shop"),
                false => ("expired", "hosted checkout session expired"),
            };
            for order in executing {
                let id = order.payment_order_id.as_str();
                applied.failed += usize::from(fail_order(tx, id, OrderStatus::Executing, code, reason, policy)?);
            }
        }
    }
    notify::checkout_progress(tx, checkout_id.as_str(), policy)?;
    Ok(applied)
}

/// A session we created but whose id we never stored (till stopped between
/// the PSP's answer and the write): recognise it by the checkout id we put in
/// its metadata, and record it now.
fn adopt_session(tx: &Tx, session: &CheckoutSession) -> Result<CheckoutId, ApplyError> {
    let unknown = || ApplyError::UnknownSession(session.id.clone());
    let named = session.checkout_id().ok_or_else(unknown)?;
    let head = store::find_event_head(tx, named)?.ok_or_else(unknown)?;
    if head.psp_session_id.is_some() || head.payment_method != "hosted_page" {
        return Err(unknown());
    }
    // A stored checkout id: canonical, so it parses to itself.
    let checkout_id = CheckoutId::parse(named).ok_or_else(unknown)?;
    store::set_session(tx, checkout_id.as_str(), &session.id, session.url.as_deref().unwrap_or_default())?;
    for order in store::load_orders_of(tx, checkout_id.as_str())? {
        store::transition_order(
            tx,
            order.payment_order_id.as_str(),
            OrderStatus::NotStarted,
            OrderStatus::Executing,
            None,
            "hosted checkout session recovered from the PSP",
        )?;
    }
    Ok(checkout_id)
}

/// The charge a paid session made: the PSP must have taken exactly what the
/// orders add up to, in their currency, through a payment intent.
fn session_charge(session: &CheckoutSession, checkout_id: &CheckoutId, orders: &[Order]) -> Result<Charge, ApplyError> {
    let ours: i64 = orders.iter().map(|o| o.amount.amount_minor()).sum();
    let currency = orders.first().map(|o| o.amount.currency());
    let code = currency.map(|c| c.stripe_code()).unwrap_or_default();
    let theirs_currency = session.currency.clone().unwrap_or_default().to_ascii_lowercase();
    let mismatch = |psp: String| ApplyError::Mismatch {
        session: session.id.clone(),
        checkout_id: checkout_id.to_string(),
        psp,
        ours: format!("{ours} {code}"),
    };
    if session.amount_total != Some(ours) || theirs_currency != code {
        return Err(mismatch(format!("{:?} {theirs_currency}", session.amount_total)));
    }
    let intent = session.payment_intent.clone().ok_or_else(|| mismatch("paid with no payment intent".into()))?;
    let currency = currency.ok_or_else(|| anyhow::anyhow!("checkout {checkout_id} has no orders"))?;
    Ok(Charge {
        payment_intent_id: intent,
        checkout_id: checkout_id.clone(),
        payment_order_id: None,
        amount: Money::from_minor(ours, currency).map_err(anyhow::Error::from)?,
    })
}
