//! Refunds: `PENDING → SUCCEEDED | FAILED`. Creating one moves the money
//! out of the seller's wallet (and the commission back from revenue) in the
//! same transaction that stores it, guarded so the refunds of an order never
//! exceed its amount, also under concurrent requests. The PSP is called
//! afterwards through the queue (idempotent on the refund id); a refund the
//! PSP fails is reversed exactly once and the seller has the money again.
//! This module owns `refunds`.

pub mod store;

use std::fmt;

use serde::Serialize;

use crate::context::Ctx;
use crate::db::Tx;
use crate::events;
use crate::ledger::{self, Posting};
use crate::money::{Currency, Money, MoneyError, format_minor};
use crate::payments::Policy;
use crate::payments::model::OrderStatus;
use crate::psp::requests::{self, PspRequest};
use crate::psp::{PspError, RefundRequest};
use crate::queue::JobError;
use crate::queue::{self, JobKind};
use crate::wallet;

pub use store::RefundView;

pub const MAX_REASON_LEN: usize = 500;

/// Where a refund is: `PENDING → SUCCEEDED | FAILED`, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
}

impl RefundStatus {
    pub const ALL: [RefundStatus; 3] = [RefundStatus::Pending, RefundStatus::Succeeded, RefundStatus::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "PENDING",
            RefundStatus::Succeeded => "SUCCEEDED",
            RefundStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<RefundStatus> {
        RefundStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    // Written without a `_` arm so a new state must be placed on purpose.
    pub fn is_final(self) -> bool {
        match self {
            RefundStatus::Succeeded | RefundStatus::Failed => true,
            RefundStatus::Pending => false,
        }
    }

    /// The one transition function of a refund: the PSP's answer ends a
    /// pending refund, once; a final refund never moves again.
    pub fn can_move_to(self, to: RefundStatus) -> bool {
        match (self, to) {
            (RefundStatus::Pending, RefundStatus::Succeeded | RefundStatus::Failed) => true,
            (RefundStatus::Pending, RefundStatus::Pending) | (RefundStatus::Succeeded | RefundStatus::Failed, _) => {
                false
            }
        }
    }
}

impl fmt::Display for RefundStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

crate::sql_as_text!(RefundStatus, |s: &RefundStatus| s.as_str(), RefundStatus::parse);

/// A refund's amount as the shop wrote it: a positive decimal string
/// (digits, optionally a point and more digits) in major units. Its
/// currency is the order's, known only once the order is read; then
/// [`RefundAmount::in_currency`] makes it `Money` (or says why it cannot be:
/// too many decimals for the currency, too large).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundAmount(String);

impl RefundAmount {
    /// Refuses anything that is not a positive decimal, with the words
    /// [`Money::parse`] uses for the same mistake.
    pub fn parse(amount: &str) -> Result<RefundAmount, MoneyError> {
        let is_decimal = |s: &str| {
            let (int_part, frac_part) = s.split_once('.').map_or((s, None), |(i, f)| (i, Some(f)));
            let digits_only = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
            digits_only(int_part) && frac_part.is_none_or(digits_only)
        };
        if !is_decimal(amount) {
            // "-5.00" is a decimal, just not one we take: say so.
            if amount.strip_prefix('-').is_some_and(is_decimal) {
                return Err(MoneyError::NotPositive);
            }
            return Err(MoneyError::NotADecimal(amount.chars().take(40).collect()));
        }
        if amount.bytes().all(|b| b == b'0' || b == b'.') {
            return Err(MoneyError::NotPositive);
        }
        Ok(RefundAmount(amount.to_string()))
    }

    /// This amount in the order's currency.
    pub fn in_currency(&self, currency: Currency) -> Result<Money, MoneyError> {
        Money::parse(&self.0, currency)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The optional `amount` of a refund request, parsed; the error is the one
/// the API and the dashboard show.
pub fn parse_amount(amount: Option<&str>) -> Result<Option<RefundAmount>, RefundError> {
    amount.map(RefundAmount::parse).transpose().map_err(|e| RefundError::BadAmount(e.to_string()))
}

/// A refund request that passed the checks that need no database.
pub struct NewRefund {
    pub payment_order_id: String,
    /// None: the rest of the order.
    pub amount: Option<RefundAmount>,
    pub reason: Option<String>,
    pub created_by: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    #[error("no payment order {0}")]
    OrderMissing(String),
    #[error("order {0} is {1}; only SUCCESS orders can be refunded")]
    NotRefundable(String, String),
    #[error(
        "the order's charge is disputed (dispute {dispute_id} is {status}): it is not refunded while a dispute is \
         open or lost"
    )]
    Disputed { dispute_id: String, status: String },
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

/// What the refund rules need from the settings.
#[derive(Clone, Copy)]
struct Rules {
    hold_days: i64,
    allow_debt: bool,
    max_attempts: u32,
}

/// Stores the refund, moves the money, queues the PSP call. One transaction.
pub async fn create(ctx: &Ctx, new: NewRefund) -> Result<RefundView, RefundError> {
    let rules = Rules {
        hold_days: ctx.settings.payouts.hold_days,
        allow_debt: ctx.settings.refunds.allow_seller_debt,
        max_attempts: ctx.settings.queue.max_attempts,
    };
    let refund = ctx.db.write(move |tx| create_in_tx(tx, &new, rules)).await?;
    ctx.queue_wake.notify_one();
    Ok(refund)
}

fn create_in_tx(tx: &Tx, new: &NewRefund, rules: Rules) -> Result<RefundView, RefundError> {
    let order = store::order_for_refund(tx, &new.payment_order_id)?
        .ok_or_else(|| RefundError::OrderMissing(new.payment_order_id.clone()))?;
    if order.status != OrderStatus::Success.as_str() {
        return Err(RefundError::NotRefundable(order.payment_order_id, order.status));
    }
    // As the PSP does: a disputed charge is not refunded while its dispute is
    // open, nor once it is lost (the cardholder has the money back already).
    if let Some((dispute_id, status)) = crate::disputes::blocking_refund(tx, &order.payment_order_id)? {
        return Err(RefundError::Disputed { dispute_id, status: status.to_string() });
    }
    let currency = Currency::parse(&order.currency).map_err(anyhow::Error::from)?;
    let left = order.amount_minor - order.refunded_minor;
    let amount = match &new.amount {
        None if left == 0 => {
            return Err(RefundError::TooMuch { asked: "the rest".into(), left: format_minor(0, currency) });
        }
        None => left,
        Some(a) => a.in_currency(currency).map_err(|e| RefundError::BadAmount(e.to_string()))?.amount_minor(),
    };
    if amount > left {
        return Err(RefundError::TooMuch { asked: format_minor(amount, currency), left: format_minor(left, currency) });
    }
    let (seller_part, commission_part) = split(&order, amount);
    if !rules.allow_debt {
        let available = wallet::balances(tx, &order.seller_id, currency, rules.hold_days)?.available;
        let held = wallet::pending_of_order(tx, &order.payment_order_id, rules.hold_days)?;
        if seller_part > available + held {
            return Err(RefundError::SellerBalance {
                available: format_minor(available, currency),
                needed: format_minor(seller_part, currency),
            });
        }
    }
    let refund_id = uuid::Uuid::new_v4().to_string();
    store::insert(tx, &refund_id, &order, amount, (seller_part, commission_part), new)?;
    if !crate::payments::store::add_refunded(tx, &order.payment_order_id, amount, seller_part)? {
        // The guard in SQL: a concurrent refund took the rest first.
        return Err(RefundError::TooMuch { asked: format_minor(amount, currency), left: "less".into() });
    }
    book(tx, &refund_id, &order.seller_id, currency, seller_part, commission_part, false)?;
    queue::enqueue(tx, JobKind::SubmitRefund, &refund_id, 0, rules.max_attempts)?;
    Ok(store::load(tx, &refund_id)?.expect("just inserted"))
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
    tx: &Tx,
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
        tx,
        &Posting { source_type, source_id: refund_id, currency, description: format!("{what} {refund_id}"), entries },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    wallet::credit_wallet(tx, seller_id, currency, -sign * seller_part)?;
    wallet::assert_matches_ledger(tx, seller_id, currency)
}

/// The queue job: send the refund to the PSP (or read it, once sent) and
/// apply the answer. An unknown outcome is asked again, never guessed.
pub async fn submit(ctx: &Ctx, refund_id: &str) -> Result<(), JobError> {
    let id = refund_id.to_string();
    // The PSP request is fixed at the first attempt; every retry sends it again.
    let target = ctx
        .db
        .write(move |tx| -> anyhow::Result<Option<(Submission, Option<PspRequest>)>> {
            let Some(target) = submission(tx, &id)? else { return Ok(None) };
            let request = match (&target.refund.psp_refund_id, &target.payment_intent) {
                (None, Some(intent)) => Some(requests::fix(tx, refund_request(&id, &target, intent).build())?),
                _ => None,
            };
            Ok(Some((target, request)))
        })
        .await?;
    let Some((target, request)) = target else {
        return Err(JobError::Final(format!("refund {refund_id} does not exist")));
    };
    if target.refund.status.is_final() {
        return Ok(());
    }
    let answer = match (&target.refund.psp_refund_id, &request) {
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

/// A refund as the job sends it: the refund's row and the payment intent
/// of its order (the payments module's to read).
struct Submission {
    refund: store::RefundRow,
    payment_intent: Option<String>,
}

fn submission(tx: &Tx, refund_id: &str) -> anyhow::Result<Option<Submission>> {
    let Some(refund) = store::load_row(tx, refund_id)? else { return Ok(None) };
    let order = order_of(tx, &refund)?;
    Ok(Some(Submission { refund, payment_intent: order.psp_payment_intent_id }))
}

/// The payment order a refund takes back, through the payments module.
fn order_of(tx: &Tx, refund: &store::RefundRow) -> anyhow::Result<crate::payments::model::Order> {
    crate::payments::store::load_order(tx, &refund.payment_order_id)?
        .ok_or_else(|| anyhow::anyhow!("order {} of refund {} is missing", refund.payment_order_id, refund.refund_id))
}

fn refund_request(refund_id: &str, target: &Submission, payment_intent: &str) -> RefundRequest {
    RefundRequest {
        refund_id: refund_id.to_string(),
        payment_order_id: target.refund.payment_order_id.clone(),
        payment_intent: payment_intent.to_string(),
        amount_minor: target.refund.amount_minor,
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
        .write(move |tx| -> anyhow::Result<Option<String>> {
            if !psp_id.is_empty() {
                store::set_psp_id(tx, &id, &psp_id)?;
            }
            match status.as_str() {
                "succeeded" => finish(tx, &id, RefundStatus::Succeeded, None, policy)?,
                "failed" | "canceled" => finish(tx, &id, RefundStatus::Failed, Some(&failure), policy)?,
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

/// The kind of alert a failed refund raises (its subject: the refund's id).
pub const REFUND_FAILED_ALERT: &str = "refund_failed";

/// PENDING → `to` (SUCCEEDED, or FAILED: reversed, and the amount
/// refundable again), told to the shop. Applied once.
fn finish(tx: &Tx, refund_id: &str, to: RefundStatus, failure: Option<&str>, policy: Policy) -> anyhow::Result<()> {
    if !store::transition(tx, refund_id, RefundStatus::Pending, to, failure)? {
        return Ok(()); // already final: a replayed answer changes nothing
    }
    let refund = store::load(tx, refund_id)?.ok_or_else(|| anyhow::anyhow!("refund {refund_id} vanished"))?;
    let succeeded = to == RefundStatus::Succeeded;
    if !succeeded {
        let row = store::load_row(tx, refund_id)?.ok_or_else(|| anyhow::anyhow!("refund {refund_id} vanished"))?;
        let seller_id = order_of(tx, &row)?.seller_id.to_string();
        let currency = Currency::parse(&refund.currency)?;
        book(tx, refund_id, &seller_id, currency, row.seller_part_minor, row.commission_part_minor, true)?;
        crate::payments::store::release_refunded(
            tx,
            &refund.payment_order_id,
            row.amount_minor,
            row.seller_part_minor,
        )?;
        let message = format!(
            "refund {refund_id} of {} minor units {} on payment {} failed at the PSP ({}); the amount is \
             refundable again: refund the buyer another way or try again",
            row.amount_minor,
            refund.currency,
            refund.payment_order_id,
            failure.unwrap_or("no reason given")
        );
        crate::alerts::raise(tx, REFUND_FAILED_ALERT, refund_id, &message)?;
    }
    let event = if succeeded { "refund.succeeded" } else { "refund.failed" };
    events::emit(tx, event, refund_id, &refund, policy.webhook_attempts)
}

pub async fn get(ctx: &Ctx, refund_id: &str) -> anyhow::Result<Option<RefundView>> {
    let id = refund_id.to_string();
    ctx.db.run(move |tx| store::load(tx, &id)).await
}

pub async fn list_for_order(ctx: &Ctx, payment_order_id: &str) -> anyhow::Result<Vec<RefundView>> {
    let id = payment_order_id.to_string();
    ctx.db.run(move |tx| store::for_order(tx, &id)).await
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

    #[test]
    fn a_pending_refund_ends_once_and_a_final_one_never_moves() {
        use RefundStatus::*;
        for from in RefundStatus::ALL {
            assert_eq!(RefundStatus::parse(from.as_str()), Some(from));
            for to in RefundStatus::ALL {
                assert_eq!(from.can_move_to(to), from == Pending && to.is_final(), "{from} -> {to}");
            }
        }
        assert_eq!(RefundStatus::parse("pending"), None);
    }

    #[test]
    fn a_refund_amount_is_a_positive_decimal_until_its_currency_is_known() {
        let usd = Currency::parse("USD").unwrap();
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(RefundAmount::parse("10.05").unwrap().in_currency(usd).unwrap().amount_minor(), 1005);
        assert_eq!(RefundAmount::parse("400").unwrap().in_currency(jpy).unwrap().amount_minor(), 400);
        assert!(RefundAmount::parse("1.5").unwrap().in_currency(jpy).is_err(), "JPY has no decimals");
        assert!(RefundAmount::parse("1.001").unwrap().in_currency(usd).is_err());
        for (bad, error) in [
            ("-1.00", MoneyError::NotPositive),
            ("0.00", MoneyError::NotPositive),
            ("0", MoneyError::NotPositive),
            ("", MoneyError::NotADecimal(String::new())),
            ("1.", MoneyError::NotADecimal("1.".into())),
            (".5", MoneyError::NotADecimal(".5".into())),
            ("1e3", MoneyError::NotADecimal("1e3".into())),
            (" 1", MoneyError::NotADecimal(" 1".into())),
        ] {
            assert_eq!(RefundAmount::parse(bad), Err(error), "{bad:?}");
        }
        // The same words as Money::parse gives for the same mistake.
        for bad in ["-1.00", "0.00", "abc", "1.2.3"] {
            assert_eq!(RefundAmount::parse(bad).unwrap_err(), Money::parse(bad, usd).unwrap_err(), "{bad:?}");
        }
    }
}
