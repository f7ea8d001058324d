//! Pay-out: sellers and their payout destinations, and payouts `PENDING →
//! IN_TRANSIT → PAID | FAILED`. Creating a payout moves its amount from the
//! seller's wallet to `liabilities:payouts_in_transit` in the transaction
//! that stores it; the queue sends it to the PSP as a transfer (idempotent
//! on the payout id); PAID books it out of `assets:psp_balance`; FAILED
//! reverses it exactly once and the wallet has the money again. This
//! module owns `sellers` and `payouts`.

pub mod store;

use std::fmt;

use serde::Serialize;

use crate::context::Ctx;
use crate::db::Tx;
use crate::events;
use crate::ledger::{self, Posting};
use crate::money::{Currency, Money, format_minor};
use crate::psp::requests::{self, PspRequest};
use crate::psp::types::{Transfer, TransferOutcome};
use crate::psp::{PspError, TransferRequest};
use crate::queue::JobError;
use crate::queue::{self, JobKind};
use crate::wallet;

pub use store::{PayoutView, SellerView};

/// Where a payout is: `PENDING → IN_TRANSIT → PAID | FAILED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PayoutStatus {
    Pending,
    InTransit,
    Paid,
    Failed,
}

impl PayoutStatus {
    pub const ALL: [PayoutStatus; 4] =
        [PayoutStatus::Pending, PayoutStatus::InTransit, PayoutStatus::Paid, PayoutStatus::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            PayoutStatus::Pending => "PENDING",
            PayoutStatus::InTransit => "IN_TRANSIT",
            PayoutStatus::Paid => "PAID",
            PayoutStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<PayoutStatus> {
        PayoutStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    // Written without a `_` arm so a new state must be placed on purpose.
    pub fn is_final(self) -> bool {
        match self {
            PayoutStatus::Paid | PayoutStatus::Failed => true,
            PayoutStatus::Pending | PayoutStatus::InTransit => false,
        }
    }

    /// The one transition function of a payout: the PSP's transfer puts a
    /// pending payout in transit; the transfer's end (or the PSP's refusal
    /// of it) makes it PAID or FAILED, once; a final payout never moves.
    pub fn can_move_to(self, to: PayoutStatus) -> bool {
        match (self, to) {
            (PayoutStatus::Pending, PayoutStatus::InTransit) => true,
            (PayoutStatus::Pending | PayoutStatus::InTransit, PayoutStatus::Paid | PayoutStatus::Failed) => true,
            (PayoutStatus::Pending, PayoutStatus::Pending)
            | (PayoutStatus::InTransit, PayoutStatus::Pending | PayoutStatus::InTransit)
            | (PayoutStatus::Paid | PayoutStatus::Failed, _) => false,
        }
    }
}

impl fmt::Display for PayoutStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

crate::sql_as_text!(PayoutStatus, |s: &PayoutStatus| s.as_str(), PayoutStatus::parse);

#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    #[error("no seller {0}; create it with PUT /v1/sellers/{0}")]
    SellerMissing(String),
    #[error("seller {0} has no payout_destination")]
    NoDestination(String),
    /// No currency was given and the seller holds none, or several.
    #[error("{0}")]
    CurrencyNeeded(String),
    #[error("{0}")]
    BadAmount(String),
    #[error("{asked} exceeds the {available} available (pending money is held for payouts.hold_days)")]
    TooMuch { asked: String, available: String },
    #[error("{asked} is below the minimum payout of {minimum}")]
    BelowMinimum { asked: String, minimum: String },
    /// The wallet is below zero (disputes took back money already paid out).
    #[error("the seller owes {owes} (its wallet is below zero after disputes): no payout until its pay-ins repay it")]
    InDebt { owes: String },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub struct NewPayout {
    pub seller_id: String,
    /// None: the one currency the seller's wallet holds (refused when it
    /// holds none or several).
    pub currency: Option<Currency>,
    /// A decimal string in the currency; None: all that is available.
    pub amount: Option<String>,
    pub created_by: String,
}

/// The optional `amount` of a payout request in its currency, parsed; the
/// error is the one the API and the dashboard show.
pub fn parse_amount(amount: Option<&str>, currency: Currency) -> Result<Option<Money>, PayoutError> {
    amount.map(|a| Money::parse(a, currency)).transpose().map_err(|e| PayoutError::BadAmount(format!("amount {e}")))
}

/// What the payout rules need from the settings.
#[derive(Clone)]
struct Rules {
    hold_days: i64,
    max_attempts: u32,
    /// `payouts.minimum_amount`: per currency code, a decimal string.
    minimums: std::collections::BTreeMap<String, String>,
}

/// Stores the payout and moves the money into transit; queues the transfer.
pub async fn create(ctx: &Ctx, new: NewPayout) -> Result<PayoutView, PayoutError> {
    let rules = Rules {
        hold_days: ctx.settings.payouts.hold_days,
        max_attempts: ctx.settings.queue.max_attempts,
        minimums: ctx.settings.payouts.minimum_amount.clone(),
    };
    let payout = ctx.db.write(move |tx| create_in_tx(tx, &new, &rules)).await?;
    ctx.queue_wake.notify_one();
    Ok(payout)
}

/// The smallest payout in `currency` (`payouts.minimum_amount`; else one minor unit).
fn minimum_in(minimums: &std::collections::BTreeMap<String, String>, currency: Currency) -> i64 {
    minimums.get(currency.code()).and_then(|a| Money::parse(a, currency).ok()).map_or(1, |m| m.amount_minor())
}

/// The payout's currency: the one asked for, else the one the seller holds.
fn payout_currency(tx: &Tx, new: &NewPayout) -> Result<Currency, PayoutError> {
    if let Some(currency) = new.currency {
        return Ok(currency);
    }
    match wallet::currencies_of(tx, &new.seller_id)?.as_slice() {
        [one] => Ok(*one),
        [] => Err(PayoutError::CurrencyNeeded(format!(
            "currency is required: seller {} holds no money in any currency yet",
            new.seller_id
        ))),
        several => Err(PayoutError::CurrencyNeeded(format!(
            "currency is required: seller {} holds {}",
            new.seller_id,
            several.iter().map(|c| c.code()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn create_in_tx(tx: &Tx, new: &NewPayout, rules: &Rules) -> Result<PayoutView, PayoutError> {
    let seller = store::seller(tx, &new.seller_id)?.ok_or_else(|| PayoutError::SellerMissing(new.seller_id.clone()))?;
    let destination = seller.payout_destination.ok_or_else(|| PayoutError::NoDestination(new.seller_id.clone()))?;
    let currency = payout_currency(tx, new)?;
    let minimum = minimum_in(&rules.minimums, currency);
    let available = wallet::balances(tx, &new.seller_id, currency, rules.hold_days)?.available;
    let amount = match parse_amount(new.amount.as_deref(), currency)? {
        None => available,
        Some(m) => m.amount_minor(),
    };
    let show = |m: i64| format_minor(m, currency);
    if available < 0 {
        return Err(PayoutError::InDebt { owes: show(-available) });
    }
    if amount > available || amount <= 0 {
        return Err(PayoutError::TooMuch { asked: show(amount), available: show(available.max(0)) });
    }
    if amount < minimum {
        return Err(PayoutError::BelowMinimum { asked: show(amount), minimum: show(minimum) });
    }
    let payout_id = uuid::Uuid::new_v4().to_string();
    store::insert(tx, &payout_id, &new.seller_id, amount, currency, &destination, &new.created_by)?;
    post(
        tx,
        "payout",
        &payout_id,
        currency,
        &ledger::seller_account(&new.seller_id),
        ledger::PAYOUTS_IN_TRANSIT,
        amount,
    )?;
    wallet::credit_wallet(tx, &new.seller_id, currency, -amount)?;
    wallet::assert_matches_ledger(tx, &new.seller_id, currency)?;
    queue::enqueue(tx, JobKind::SendPayout, &payout_id, 0, rules.max_attempts)?;
    Ok(store::load(tx, &payout_id)?.expect("just inserted"))
}

/// A two-entry posting: `debit` receives `amount`, `credit` gives it.
fn post(
    tx: &Tx,
    source_type: &str,
    payout_id: &str,
    currency: Currency,
    debit: &str,
    credit: &str,
    amount: i64,
) -> anyhow::Result<()> {
    let posting = Posting {
        source_type,
        source_id: payout_id,
        currency,
        description: format!("{source_type} {payout_id}"),
        entries: vec![(debit.to_string(), amount), (credit.to_string(), -amount)],
    };
    ledger::post_transaction(tx, &posting).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// The queue job: send the transfer (or read it, once sent) and apply it.
pub async fn send(ctx: &Ctx, payout_id: &str) -> Result<(), JobError> {
    let id = payout_id.to_string();
    // The transfer's request is fixed at the first attempt; every retry sends it again.
    let payout = ctx
        .db
        .write(move |tx| -> anyhow::Result<Option<(store::PayoutRow, Option<PspRequest>)>> {
            let Some(p) = store::load_row(tx, &id)? else { return Ok(None) };
            let request = match p.psp_transfer_id {
                None => Some(requests::fix(tx, transfer_request(&p).build())?),
                Some(_) => None,
            };
            Ok(Some((p, request)))
        })
        .await?;
    let Some((p, request)) = payout else {
        return Err(JobError::Final(format!("payout {payout_id} does not exist")));
    };
    if p.status.is_final() {
        return Ok(());
    }
    let answer = match (&p.psp_transfer_id, &request) {
        (Some(tr), _) => ctx.psp.retrieve_transfer(tr, payout_id).await,
        (None, Some(request)) => ctx.psp.create_transfer(request).await,
        (None, None) => return Err(JobError::Final(format!("payout {payout_id} has no transfer to send"))),
    };
    match answer {
        Ok(transfer) => apply(ctx, payout_id, &transfer).await,
        // Till's request was refused, not the transfer: the payout stays for a person.
        Err(rejected @ PspError::Rejected { .. }) => Err(JobError::Final(format!(
            "{rejected}; payout {payout_id} stays {} until the PSP's answer is known",
            p.status
        ))),
        Err(PspError::Refused { code, .. }) => finish_failed(ctx, payout_id, &code).await,
        Err(PspError::Unknown(reason)) => Err(JobError::Retry(reason)),
    }
}

fn transfer_request(p: &store::PayoutRow) -> TransferRequest {
    TransferRequest {
        payout_id: p.payout_id.clone(),
        seller_id: p.seller_id.clone(),
        amount_minor: p.amount_minor,
        currency: p.currency.to_ascii_lowercase(),
        destination: p.destination.clone(),
    }
}

/// Applies a transfer just read from the PSP to its payout.
pub async fn apply(ctx: &Ctx, payout_id: &str, transfer: &Transfer) -> Result<(), JobError> {
    let (id, transfer) = (payout_id.to_string(), transfer.clone());
    let attempts = ctx.settings.webhooks.max_attempts;
    let in_transit = ctx
        .db
        .write(move |tx| -> Result<bool, JobError> {
            let mut p = store::load_row(tx, &id)?.ok_or_else(|| JobError::Final(format!("payout {id} vanished")))?;
            if transfer.amount != p.amount_minor || !transfer.currency.eq_ignore_ascii_case(&p.currency) {
                return Err(JobError::Final(format!("transfer {} does not match payout {id}", transfer.id)));
            }
            store::set_transfer(tx, &mut p, &transfer.id)?;
            match transfer.outcome() {
                TransferOutcome::Paid => finish(tx, &p, PayoutStatus::Paid, None, attempts)?,
                TransferOutcome::Failed => finish(tx, &p, PayoutStatus::Failed, Some("transfer_failed"), attempts)?,
                // Committed as IN_TRANSIT with the transfer's id; asked again later.
                TransferOutcome::InTransit => return Ok(true),
            }
            Ok(false)
        })
        .await?;
    if in_transit {
        return Err(JobError::Retry(format!("transfer of payout {payout_id} is in transit")));
    }
    Ok(())
}

async fn finish_failed(ctx: &Ctx, payout_id: &str, code: &str) -> Result<(), JobError> {
    let (id, code) = (payout_id.to_string(), code.to_string());
    let attempts = ctx.settings.webhooks.max_attempts;
    ctx.db
        .write(move |tx| -> anyhow::Result<()> {
            if let Some(p) = store::load_row(tx, &id)? {
                finish(tx, &p, PayoutStatus::Failed, Some(&code), attempts)?;
            }
            Ok(())
        })
        .await?;
    Ok(())
}

/// The kind of alert a failed payout raises (its subject: the payout's id).
pub const PAYOUT_FAILED_ALERT: &str = "payout_failed";

/// PENDING | IN_TRANSIT → PAID (out of the PSP balance) or FAILED (back to
/// the wallet), each booked once and told to the shop. A payout already
/// final is left as it is: a replayed answer changes nothing.
fn finish(tx: &Tx, p: &store::PayoutRow, to: PayoutStatus, failure: Option<&str>, attempts: u32) -> anyhow::Result<()> {
    if !p.status.can_move_to(to) || !store::transition(tx, &p.payout_id, p.status, to, failure)? {
        return Ok(());
    }
    let currency = Currency::parse(&p.currency)?;
    let paid = to == PayoutStatus::Paid;
    if paid {
        post(
            tx,
            "payout_paid",
            &p.payout_id,
            currency,
            ledger::PAYOUTS_IN_TRANSIT,
            ledger::PSP_BALANCE,
            p.amount_minor,
        )?;
    } else {
        let seller = ledger::seller_account(&p.seller_id);
        post(tx, "payout_reversal", &p.payout_id, currency, ledger::PAYOUTS_IN_TRANSIT, &seller, p.amount_minor)?;
        wallet::credit_wallet(tx, &p.seller_id, currency, p.amount_minor)?;
        wallet::assert_matches_ledger(tx, &p.seller_id, currency)?;
        let message = format!(
            "payout {} of {} minor units {} to seller {} failed ({}); the money is back in the seller's \
             wallet: check the seller's destination, then pay out again",
            p.payout_id,
            p.amount_minor,
            p.currency,
            p.seller_id,
            failure.unwrap_or("no reason given")
        );
        crate::alerts::raise(tx, PAYOUT_FAILED_ALERT, &p.payout_id, &message)?;
    }
    let view = store::load(tx, &p.payout_id)?.ok_or_else(|| anyhow::anyhow!("payout vanished"))?;
    events::emit(tx, if paid { "payout.paid" } else { "payout.failed" }, &p.payout_id, &view, attempts)
}

/// The scheduled payouts: every seller with a destination is paid all that
/// is available in each currency, when it reaches the currency's minimum.
/// Returns how many payouts were created.
pub async fn pay_out_all(ctx: &Ctx) -> anyhow::Result<usize> {
    let hold_days = ctx.settings.payouts.hold_days;
    let candidates = ctx.db.run(move |tx| store::payable_wallets(tx, hold_days)).await?;
    let mut created = 0;
    for (seller_id, code, available) in candidates {
        let currency = Currency::parse(&code)?;
        if available < minimum_in(&ctx.settings.payouts.minimum_amount, currency) {
            continue;
        }
        let new = NewPayout {
            seller_id: seller_id.clone(),
            currency: Some(currency),
            amount: None,
            created_by: "schedule".into(),
        };
        match create(ctx, new).await {
            Ok(_) => created += 1,
            // Money moved since the scan (a refund, another payout): next run.
            Err(e @ (PayoutError::TooMuch { .. } | PayoutError::BelowMinimum { .. } | PayoutError::InDebt { .. })) => {
                tracing::info!(seller = %seller_id, error = %e, "scheduled payout skipped");
            }
            Err(e) => return Err(anyhow::anyhow!("scheduled payout of {seller_id}: {e}")),
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payout_moves_forward_only_and_a_final_one_never_moves() {
        use PayoutStatus::*;
        let legal = [(Pending, InTransit), (Pending, Paid), (Pending, Failed), (InTransit, Paid), (InTransit, Failed)];
        for from in PayoutStatus::ALL {
            assert_eq!(PayoutStatus::parse(from.as_str()), Some(from));
            for to in PayoutStatus::ALL {
                assert_eq!(from.can_move_to(to), legal.contains(&(from, to)), "{from} -> {to}");
                if from.is_final() {
                    assert!(!from.can_move_to(to));
                }
            }
        }
        assert_eq!(PayoutStatus::parse("paid"), None);
    }
}
