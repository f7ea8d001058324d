//! Refunds: `PENDING → SUCCEEDED | FAILED`. Creating one moves the money
//! out of the seller's wallet (and the commission back from revenue) in the
//! same transaction that stores it, guarded so the refunds of an order never
//! exceed its amount, also under concurrent requests. The PSP is called
//! afterwards through the queue (idempotent on the refund id); a refund the
//! PSP fails is reversed exactly once and the seller has the money again.

pub mod store;

use rusqlite::Transaction;

use crate::context::Ctx;
use crate::events;
use crate::ledger::{self, Posting};
use crate::money::{Currency, Money, format_minor};
use crate::payments::Policy;
use crate::payments::model::OrderStatus;
use crate::psp::requests::{self, PspRequest};
use crate::psp::{PspError, RefundRequest};
use crate::queue::JobError;
use crate::queue::{self, JobKind};
use crate::wallet;

pub use store::RefundView;

pub const MAX_REASON_LEN: usize = 500;

/// A refund request that passed the checks that need no database.
pub struct NewRefund {
    pub payment_order_id: String,
    /// None: the rest of the order.
    pub amount: Option<String>,
    pub reason: Option<String>,
    pub created_by: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    #[error("no payment order {0}")]
    OrderMissing(String),
    #[error("order {0} is {1}; only SUCCESS orders can be refunded")]
    NotRefundable(String, String),
    #[error("amount {0}")]
    BadAmount(String),
    #[error("a refund of {asked} exceeds the {left} still refundable on this order")]
    TooMuch { asked: String, left: String },
    #[error(
        "the seller's available balance is {available}; a refund taking {needed} from it is refused (refunds.allow_seller_debt = false)"
    )]
    SellerBalance { available: String, needed: String },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<RefundError> for JobError {
    fn from(e: RefundError) -> JobError {
        JobError::Retry(e.to_string())
    }
}

/// Stores the refund, moves the money, queues the PSP call. One transaction.
pub async fn create(ctx: &Ctx, new: NewRefund) -> Result<RefundView, RefundError> {
    let hold_days = ctx.settings.payouts.hold_days;
    let allow_debt = ctx.settings.refunds.allow_seller_debt;
    let attempts = ctx.settings.queue.max_attempts;
    let refund = ctx
        .db
        .write_raw(move |tx| -> Result<RefundView, RefundError> {
            let order = store::order_for_refund(tx, &new.payment_order_id)?
                .ok_or_else(|| RefundError::OrderMissing(new.payment_order_id.clone()))?;
            if order.status != OrderStatus::Success.as_str() {
                return Err(RefundError::NotRefundable(order.payment_order_id, order.status));
            }
            let currency = Currency::parse(&order.currency).map_err(anyhow::Error::from)?;
            let left = order.amount_minor - order.refunded_minor;
            let amount = match &new.amount {
                None if left == 0 => {
                    return Err(RefundError::TooMuch { asked: "the rest".into(), left: format_minor(0, currency) });
                }
                None => left,
                Some(a) => Money::parse(a, currency).map_err(|e| RefundError::BadAmount(e.to_string()))?.amount_minor(),
            };
            if amount > left {
                return Err(RefundError::TooMuch {
                    asked: format_minor(amount, currency),
                    left: format_minor(left, currency),
                });
            }
            let (seller_part, commission_part) = split(&order, amount);
            if !allow_debt {
                // seam: transitional
                let available =
                    wallet::balances(&crate::db::Tx::sqlite(tx), &order.seller_id, currency, hold_days)?.available;
                // seam: transitional
                let held = wallet::pending_of_order(&crate::db::Tx::sqlite(tx), &order.payment_order_id, hold_days)?;
                if seller_part > available + held {
                    return Err(RefundError::SellerBalance {
                        available: format_minor(available, currency),
                        needed: format_minor(seller_part, currency),
                    });
                }
            }
            let refund_id = uuid::Uuid::new_v4().to_string();
            store::insert(tx, &refund_id, &order, amount, (seller_part, commission_part), &new)?;
            if !store::reserve(tx, &order.payment_order_id, amount)? {
                // The guard in SQL: a concurrent refund took the rest first.
                return Err(RefundError::TooMuch { asked: format_minor(amount, currency), left: "less".into() });
            }
            book(tx, &refund_id, &order.seller_id, currency, seller_part, commission_part, false)?;
            queue::enqueue(tx, JobKind::SubmitRefund, &refund_id, 0, attempts)?;
            Ok(store::load(tx, &refund_id)?.expect("just inserted"))
        })
        .await?;
    ctx.queue_wake.notify_one();
    Ok(refund)
}

/// How a refund splits between the seller and the platform's commission.
/// The commission given back is computed on the running total (rounded
/// half-up), so that refunding an order in full returns exactly the
/// commission that was taken, however it was split into refunds.
fn split(order: &store::RefundableOrder, amount: i64) -> (i64, i64) {
    let commission = i128::from(order.amount_minor - order.seller_amount_minor);
    let total = i128::from(order.amount_minor);
    let share = |refunded: i64| (2 * commission * i128::from(refunded) + total) / (2 * total);
    let commission_part = (share(order.refunded_minor + amount) - share(order.refunded_minor)) as i64;
    (amount - commission_part, commission_part)
}

/// The refund's posting, or (reversal) its exact opposite, with the wallet.
fn book(
    tx: &Transaction,
    refund_id: &str,
    seller_id: &str,
    currency: Currency,
    seller_part: i64,
    commission_part: i64,
    reversal: bool,
) -> anyhow::Result<()> {
    let sign = if reversal { -1 } else { 1 };
    let mut entries = vec![(ledger::PSP_BALANCE.to_string(), -sign * (seller_part + commission_part))];
    if seller_part > 0 {
        entries.push((ledger::seller_account(seller_id), sign * seller_part));
    }
    if commission_part > 0 {
        entries.push((ledger::COMMISSION.to_string(), sign * commission_part));
    }
    let (source_type, what) =
        if reversal { ("refund_reversal", "reversal of failed refund") } else { ("refund", "refund") };
    ledger::post_transaction(
        &crate::db::Tx::sqlite(tx), // seam: transitional
        &Posting { source_type, source_id: refund_id, currency, description: format!("{what} {refund_id}"), entries },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    wallet::credit_wallet(&crate::db::Tx::sqlite(tx), seller_id, currency, -sign * seller_part)?; // seam: transitional
    wallet::assert_matches_ledger(&crate::db::Tx::sqlite(tx), seller_id, currency) // seam: transitional
}

/// The queue job: send the refund to the PSP (or read it, once sent) and
/// apply the answer. An unknown outcome is asked again, never guessed.
pub async fn submit(ctx: &Ctx, refund_id: &str) -> Result<(), JobError> {
    let id = refund_id.to_string();
    // The PSP request is fixed at the first attempt; every retry sends it again.
    let target = ctx
        .db
        .write_raw(move |tx| -> anyhow::Result<Option<(store::Submission, Option<PspRequest>)>> {
            let Some(target) = store::submission(tx, &id)? else { return Ok(None) };
            let request = match (&target.psp_refund_id, &target.payment_intent) {
                (None, Some(intent)) => Some(requests::fix(tx, refund_request(&id, &target, intent).build())?),
                _ => None,
            };
            Ok(Some((target, request)))
        })
        .await?;
    let Some((target, request)) = target else {
        return Err(JobError::Final(format!("refund {refund_id} does not exist")));
    };
    if target.status != "PENDING" {
        return Ok(());
    }
    let answer = match (&target.psp_refund_id, &request) {
        (Some(psp_id), _) => ctx.psp.retrieve_refund(psp_id, refund_id).await,
        (None, Some(request)) => ctx.psp.create_refund(request).await,
        (None, None) => return Err(JobError::Final(format!("order of refund {refund_id} has no PSP payment"))),
    };
    match answer {
        Ok(psp) => apply(ctx, refund_id, &psp.id, &psp.status, psp.failure_reason.as_deref()).await,
        // Till's request was refused, not the refund: it stays PENDING for a person.
        Err(rejected @ PspError::Rejected { .. }) => Err(JobError::Final(format!(
            "{rejected}; refund {refund_id} stays PENDING until the PSP's answer is known"
        ))),
        Err(PspError::Refused { code, .. }) => apply(ctx, refund_id, "", "failed", Some(&code)).await,
        Err(PspError::Unknown(reason)) => Err(JobError::Retry(reason)),
    }
}

fn refund_request(refund_id: &str, target: &store::Submission, payment_intent: &str) -> RefundRequest {
    RefundRequest {
        refund_id: refund_id.to_string(),
        payment_order_id: target.payment_order_id.clone(),
        payment_intent: payment_intent.to_string(),
        amount_minor: target.amount_minor,
    }
}

/// Applies the PSP's word on a refund (from the job or a `refund.updated`
/// event, re-read from the PSP). Final states are applied once.
pub async fn apply(
    ctx: &Ctx,
    refund_id: &str,
    psp_refund_id: &str,
    psp_status: &str,
    failure: Option<&str>,
) -> Result<(), JobError> {
    let (id, psp_id, status) = (refund_id.to_string(), psp_refund_id.to_string(), psp_status.to_string());
    let failure = failure.unwrap_or("refund_failed").to_string();
    let policy = Policy::of(&ctx.settings);
    let pending = ctx
        .db
        .write_raw(move |tx| -> anyhow::Result<Option<String>> {
            if !psp_id.is_empty() {
                store::set_psp_id(tx, &id, &psp_id)?;
            }
            match status.as_str() {
                "succeeded" => finish(tx, &id, true, None, policy)?,
                "failed" | "canceled" => finish(tx, &id, false, Some(&failure), policy)?,
                // Committed with the PSP's id, so the next attempt reads rather than creates.
                other => return Ok(Some(format!("refund {id} is {other} at the PSP"))),
            }
            Ok(None)
        })
        .await?;
    match pending {
        Some(reason) => Err(JobError::Retry(reason)),
        None => Ok(()),
    }
}

fn finish(
    tx: &Transaction,
    refund_id: &str,
    succeeded: bool,
    failure: Option<&str>,
    policy: Policy,
) -> anyhow::Result<()> {
    let to = if succeeded { "SUCCEEDED" } else { "FAILED" };
    if !store::transition(tx, refund_id, to, failure)? {
        return Ok(()); // already final: a replayed answer changes nothing
    }
    let refund = store::load(tx, refund_id)?.ok_or_else(|| anyhow::anyhow!("refund {refund_id} vanished"))?;
    if !succeeded {
        let parts = store::parts(tx, refund_id)?;
        let currency = Currency::parse(&refund.currency)?;
        book(tx, refund_id, &parts.seller_id, currency, parts.seller_part, parts.commission_part, true)?;
        store::release(tx, &refund.payment_order_id, parts.seller_part + parts.commission_part)?;
    }
    let event = if succeeded { "refund.succeeded" } else { "refund.failed" };
    events::emit(tx, event, refund_id, &refund, policy.webhook_attempts)
}

pub async fn get(ctx: &Ctx, refund_id: &str) -> anyhow::Result<Option<RefundView>> {
    let id = refund_id.to_string();
    ctx.db.run_raw(move |conn| store::load(conn, &id)).await
}

pub async fn list_for_order(ctx: &Ctx, payment_order_id: &str) -> anyhow::Result<Vec<RefundView>> {
    let id = payment_order_id.to_string();
    ctx.db.run_raw(move |conn| store::for_order(conn, &id)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(amount: i64, seller: i64, refunded: i64) -> store::RefundableOrder {
        store::RefundableOrder {
            payment_order_id: "o".into(),
            seller_id: "s".into(),
            status: "SUCCESS".into(),
            amount_minor: amount,
            currency: "USD".into(),
            seller_amount_minor: seller,
            refunded_minor: refunded,
        }
    }

    #[test]
    fn partial_refunds_give_back_exactly_the_commission_taken() {
        // 10.05 with 10 % commission (1.01 taken): refunds of 3.35 three times.
        let mut refunded = 0;
        let mut commission_back = 0;
        for _ in 0..3 {
            let (seller, commission) = split(&order(1005, 904, refunded), 335);
            assert_eq!(seller + commission, 335);
            refunded += 335;
            commission_back += commission;
        }
        assert_eq!(commission_back, 101);
    }

    #[test]
    fn without_commission_the_seller_pays_it_all() {
        assert_eq!(split(&order(2500, 2500, 0), 1000), (1000, 0));
    }
}
