//! The payment executor: queue jobs that charge token orders at the PSP and
//! that ask the PSP how hosted checkouts ended. An unknown outcome (timeout,
//! 5xx) is never guessed: the job retries with the same idempotency key, or
//! reads the status, until the PSP's answer is known.

use crate::context::Ctx;
use crate::db::Tx;
use crate::payments::book::{fail_order, succeed_order};
use crate::payments::capture;
use crate::payments::model::{CaptureMethod, Order, OrderStatus};
use crate::payments::store::{self, Charge};
use crate::payments::{Policy, notify};
use crate::psp::requests::{self, PspRequest};
use crate::psp::types::{IntentOutcome, PaymentIntent, failure_code};
use crate::psp::{PaymentIntentRequest, PspError};
use crate::queue::JobError;
use crate::queue::{self, Job};

/// Charges one token order: NOT_STARTED → EXECUTING, then the PSP, then the
/// outcome. Safe to run any number of times.
pub async fn charge_order(ctx: &Ctx, job: &Job) -> Result<bool, JobError> {
    let payment_order_id = job.subject_id.as_str();
    let id = payment_order_id.to_string();
    let suffix = ctx.psp.statement_descriptor_suffix();
    // The charge's request is fixed in the write that sends the order, so
    // every attempt sends the same one.
    let target = ctx
        .db
        .write(move |tx| -> anyhow::Result<Option<(store::ChargeTarget, PspRequest)>> {
            let Some(target) = store::load_charge_target(tx, &id)? else { return Ok(None) };
            if target.order.status == OrderStatus::NotStarted {
                store::transition_order(
                    tx,
                    &id,
                    OrderStatus::NotStarted,
                    OrderStatus::Executing,
                    None,
                    "sent to the PSP",
                )?;
            }
            let request = requests::fix(tx, charge_request(&target, suffix.clone()).build())?;
            Ok(Some((target, request)))
        })
        .await?;
    let Some((target, request)) = target else {
        return Err(JobError::Final(format!("payment order {payment_order_id} does not exist")));
    };
    if target.order.status.is_final() {
        return Ok(false);
    }
    let answer = match &target.order.psp_payment_intent_id {
        // We already know the intent: read it rather than create again.
        Some(pi) => ctx.psp.retrieve_payment_intent(pi, payment_order_id).await,
        None => ctx.psp.create_payment_intent(&request).await,
    };
    match answer {
        Ok(intent) => apply_intent_with(ctx, payment_order_id, intent, Some(job.clone())).await.map(|()| true),
        // Till's request itself was refused (its credentials, a conflicting
        // idempotency key): nothing is known of the charge, so the order
        // stays EXECUTING and the job dead-letters for a person.
        Err(rejected @ PspError::Rejected { .. }) => Err(JobError::Final(format!(
            "{rejected}; order {payment_order_id} stays EXECUTING until the PSP's answer is known"
        ))),
        Err(PspError::Refused { code, decline_code, .. }) => {
            refuse_order(ctx, payment_order_id, failure_code(Some(&code), decline_code.as_deref()))
                .await
                .map(|()| false)
        }
        Err(PspError::Unknown(reason)) => Err(JobError::Retry(reason)),
    }
}

/// What charges a token order at the PSP.
fn charge_request(target: &store::ChargeTarget, statement_descriptor_suffix: Option<String>) -> PaymentIntentRequest {
    PaymentIntentRequest {
        payment_order_id: target.order.payment_order_id.to_string(),
        checkout_id: target.order.checkout_id.to_string(),
        seller_id: target.order.seller_id.to_string(),
        amount_minor: target.order.amount.amount_minor(),
        currency: target.order.amount.currency().stripe_code(),
        payment_method: target.token.clone(),
        statement_descriptor_suffix,
        description: target.order.description.clone().or_else(|| target.checkout_description.clone()),
        metadata: target
            .checkout_metadata
            .merged(&target.order.metadata)
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        manual_capture: target.capture_method == CaptureMethod::Manual,
    }
}

/// Applies what a payment intent (just read from the PSP) says about its order.
pub async fn apply_intent(ctx: &Ctx, payment_order_id: &str, intent: PaymentIntent) -> Result<(), JobError> {
    apply_intent_with(ctx, payment_order_id, intent, None).await
}

/// `apply_intent`, also marking the charge job done in the same transaction.
async fn apply_intent_with(
    ctx: &Ctx,
    payment_order_id: &str,
    intent: PaymentIntent,
    job: Option<Job>,
) -> Result<(), JobError> {
    let id = payment_order_id.to_string();
    let policy = Policy::of(&ctx.settings);
    let outcome = intent.outcome();
    ctx.db
        .write(move |tx| -> Result<(), JobError> {
            let order = store::load_order(tx, &id)?.ok_or_else(|| JobError::Final(format!("order {id} vanished")))?;
            let charge = intent_charge(&order, &intent)?;
            store::set_payment_intent(tx, &id, &intent.id)?;
            let checkout_id = order.checkout_id.clone();
            if outcome == IntentOutcome::Pending {
                return Err(JobError::Retry(format!("payment intent {} is {}", intent.id, intent.status)));
            }
            // The PSP's copy says how it captures (as till created it): an
            // automatic intent's money is taken and booked at once, so the
            // checkout is read only for a manual one (its decision counts).
            if intent.capture_method.as_deref() == Some(CaptureMethod::Manual.as_str()) {
                let head = store::find_event_head(tx, checkout_id.as_str())?
                    .ok_or_else(|| JobError::Final(format!("the checkout of order {id} vanished")))?;
                // Authorized, captured or ended: the manual capture's one way of applying an intent.
                let order_id = order.payment_order_id.clone();
                capture::apply_to_group(tx, &head, &checkout_id, &[order], &intent, Some(&order_id), policy)
                    .map_err(|e| JobError::Final(format!("{e:#}")))?;
            } else {
                apply_automatic(tx, &order, &charge, outcome.clone(), policy)?;
            }
            notify::checkout_progress(tx, checkout_id.as_str(), policy)?;
            if let Some(job) = &job {
                queue::complete(tx, job)?;
            }
            Ok(())
        })
        .await
}

/// An automatically captured token order: the intent's success books it,
/// its decline fails it; an order already final stays as it is (a
/// replayed answer or a late webhook changes nothing).
fn apply_automatic(
    tx: &Tx,
    order: &Order,
    charge: &Charge,
    outcome: IntentOutcome,
    policy: Policy,
) -> anyhow::Result<()> {
    if order.status != OrderStatus::Executing {
        return Ok(());
    }
    match outcome {
        IntentOutcome::Succeeded => {
            succeed_order(tx, order, charge, policy)?;
        }
        IntentOutcome::Failed(code) => {
            let reason = format!("the PSP declined: {code}");
            fail_order(tx, order.payment_order_id.as_str(), OrderStatus::Executing, &code, &reason, policy)?;
        }
        IntentOutcome::Authorized => anyhow::bail!(
            "payment intent {} awaits capture, but order {} is captured automatically",
            charge.payment_intent_id,
            order.payment_order_id
        ),
        IntentOutcome::Pending => {}
    }
    Ok(())
}

/// A refusal that is not about the card (an unknown token, an amount the
/// PSP does not take): the order fails with the PSP's code.
async fn refuse_order(ctx: &Ctx, payment_order_id: &str, code: String) -> Result<(), JobError> {
    let id = payment_order_id.to_string();
    let policy = Policy::of(&ctx.settings);
    ctx.db
        .write(move |tx| -> anyhow::Result<()> {
            let Some(order) = store::load_order(tx, &id)? else { return Ok(()) };
            let reason = format!("the PSP refused the charge: {code}");
            fail_order(tx, &id, OrderStatus::Executing, &code, &reason, policy)?;
            notify::checkout_progress(tx, order.checkout_id.as_str(), policy)
        })
        .await?;
    Ok(())
}

/// The charge an intent (the PSP's own copy) made for this order: it must
/// name this order and its checkout, be the order's one intent, and be for
/// exactly its amount and currency. An intent that names no order (a hosted
/// checkout's, which pays through its session) or another one pays nothing here.
fn intent_charge(order: &Order, intent: &PaymentIntent) -> Result<Charge, JobError> {
    let meta = |k: &str| intent.metadata.get(k).map(String::as_str);
    let same_order = meta("payment_order_id") == Some(order.payment_order_id.as_str())
        && meta("checkout_id").is_none_or(|c| c == order.checkout_id.as_str());
    let same_money = intent.amount == order.amount.amount_minor()
        && intent.currency.eq_ignore_ascii_case(order.amount.currency().code());
    let same_intent = order.psp_payment_intent_id.as_deref().is_none_or(|known| known == intent.id);
    if !(same_order && same_money && same_intent) {
        return Err(JobError::Final(format!(
            "payment intent {} ({} {}, metadata {:?}) does not match order {} ({} {} of checkout {})",
            intent.id,
            intent.amount,
            intent.currency,
            intent.metadata,
            order.payment_order_id,
            order.amount.amount_minor(),
            order.amount.currency(),
            order.checkout_id
        )));
    }
    // The intent's amount and currency are the order's, checked above.
    Ok(Charge {
        payment_intent_id: intent.id.clone(),
        checkout_id: order.checkout_id.clone(),
        payment_order_id: Some(order.payment_order_id.clone()),
        amount: order.amount,
    })
}

/// Brings a token order's charge job forward (or enqueues one).
pub async fn charge_soon(ctx: &Ctx, payment_order_id: &str) -> anyhow::Result<()> {
    let (id, attempts) = (payment_order_id.to_string(), ctx.settings.queue.max_attempts);
    ctx.db.write(move |tx| queue::enqueue_now(tx, queue::JobKind::ChargeOrder, &id, attempts)).await?;
    ctx.queue_wake.notify_one();
    Ok(())
}
