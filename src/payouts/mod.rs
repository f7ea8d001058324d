//! Pay-out: sellers and their payout destinations, and payouts `PENDING →
//! IN_TRANSIT → PAID | FAILED`. Creating a payout moves its amount from the
//! seller's wallet to `liabilities:payouts_in_transit` in the transaction
//! that stores it; the queue sends it to the PSP as a transfer (idempotent
//! on the payout id); PAID books it out of `assets:psp_balance`; FAILED
//! reverses it exactly once and the wallet has the money again.

pub mod store;

use rusqlite::Transaction;

use crate::context::Ctx;
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

#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    #[error("no seller {0}; create it with PUT /v1/sellers/{0}")]
    SellerMissing(String),
    #[error("seller {0} has no payout_destination")]
    NoDestination(String),
    #[error("{0}")]
    BadAmount(String),
    #[error("{asked} exceeds the {available} available (pending money is held for payouts.hold_days)")]
    TooMuch { asked: String, available: String },
    #[error("{asked} is below the minimum payout of {minimum}")]
    BelowMinimum { asked: String, minimum: String },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub struct NewPayout {
    pub seller_id: String,
    pub currency: Currency,
    /// None: all that is available.
    pub amount: Option<String>,
    pub created_by: String,
}

/// What the payout rules need from the settings.
#[derive(Clone, Copy)]
struct Rules {
    hold_days: i64,
    max_attempts: u32,
}

/// Stores the payout and moves the money into transit; queues the transfer.
pub async fn create(ctx: &Ctx, new: NewPayout) -> Result<PayoutView, PayoutError> {
    let rules = Rules { hold_days: ctx.settings.payouts.hold_days, max_attempts: ctx.settings.queue.max_attempts };
    let minimum = minimum_of(ctx, new.currency);
    let payout = ctx.db.write_raw(move |tx| create_in_tx(tx, &new, minimum, rules)).await?;
    ctx.queue_wake.notify_one();
    Ok(payout)
}

fn minimum_of(ctx: &Ctx, currency: Currency) -> i64 {
    ctx.settings
        .payouts
        .minimum_amount
        .get(currency.code())
        .and_then(|a| Money::parse(a, currency).ok())
        .map_or(1, |m| m.amount_minor())
}

fn create_in_tx(tx: &Transaction, new: &NewPayout, minimum: i64, rules: Rules) -> Result<PayoutView, PayoutError> {
    let seller = store::seller(tx, &new.seller_id)?.ok_or_else(|| PayoutError::SellerMissing(new.seller_id.clone()))?;
    let destination = seller.payout_destination.ok_or_else(|| PayoutError::NoDestination(new.seller_id.clone()))?;
    let currency = new.currency;
    // seam: transitional
    let available = wallet::balances(&crate::db::Tx::sqlite(tx), &new.seller_id, currency, rules.hold_days)?.available;
    let amount = match &new.amount {
        None => available,
        Some(a) => Money::parse(a, currency).map_err(|e| PayoutError::BadAmount(format!("amount {e}")))?.amount_minor(),
    };
    let show = |m: i64| format_minor(m, currency);
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
    wallet::credit_wallet(&crate::db::Tx::sqlite(tx), &new.seller_id, currency, -amount)?; // seam: transitional
    wallet::assert_matches_ledger(&crate::db::Tx::sqlite(tx), &new.seller_id, currency)?; // seam: transitional
    queue::enqueue(tx, JobKind::SendPayout, &payout_id, 0, rules.max_attempts)?;
    Ok(store::load(tx, &payout_id)?.expect("just inserted"))
}

/// A two-entry posting: `debit` receives `amount`, `credit` gives it.
fn post(
    tx: &Transaction,
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
    // seam: transitional
    ledger::post_transaction(&crate::db::Tx::sqlite(tx), &posting).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// The queue job: send the transfer (or read it, once sent) and apply it.
pub async fn send(ctx: &Ctx, payout_id: &str) -> Result<(), JobError> {
    let id = payout_id.to_string();
    // The transfer's request is fixed at the first attempt; every retry sends it again.
    let payout = ctx
        .db
        .write_raw(move |tx| -> anyhow::Result<Option<(store::PayoutRow, Option<PspRequest>)>> {
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
    if p.status == "PAID" || p.status == "FAILED" {
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
        .write_raw(move |tx| -> Result<bool, JobError> {
            let p = store::load_row(tx, &id)?.ok_or_else(|| JobError::Final(format!("payout {id} vanished")))?;
            if transfer.amount != p.amount_minor || !transfer.currency.eq_ignore_ascii_case(&p.currency) {
                return Err(JobError::Final(format!("transfer {} does not match payout {id}", transfer.id)));
            }
            store::set_transfer(tx, &id, &transfer.id)?;
            match transfer.outcome() {
                TransferOutcome::Paid => finish(tx, &p, true, None, attempts)?,
                TransferOutcome::Failed => finish(tx, &p, false, Some("transfer_failed"), attempts)?,
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
        .write_raw(move |tx| -> anyhow::Result<()> {
            if let Some(p) = store::load_row(tx, &id)? {
                finish(tx, &p, false, Some(&code), attempts)?;
            }
            Ok(())
        })
        .await?;
    Ok(())
}

/// PENDING | IN_TRANSIT → PAID (out of the PSP balance) or FAILED (back to
/// the wallet), each booked once and told to the shop.
fn finish(
    tx: &Transaction,
    p: &store::PayoutRow,
    paid: bool,
    failure: Option<&str>,
    attempts: u32,
) -> anyhow::Result<()> {
    let to = if paid { "PAID" } else { "FAILED" };
    if !store::transition(tx, &p.payout_id, to, failure)? {
        return Ok(());
    }
    let currency = Currency::parse(&p.currency)?;
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
        // seam: transitional
        wallet::credit_wallet(&crate::db::Tx::sqlite(tx), &p.seller_id, currency, p.amount_minor)?;
        wallet::assert_matches_ledger(&crate::db::Tx::sqlite(tx), &p.seller_id, currency)?; // seam: transitional
    }
    let view = store::load(tx, &p.payout_id)?.ok_or_else(|| anyhow::anyhow!("payout vanished"))?;
    events::emit(tx, if paid { "payout.paid" } else { "payout.failed" }, &p.payout_id, &view, attempts)
}

/// The scheduled payouts: every seller with a destination is paid all that
/// is available in each currency, when it reaches the currency's minimum.
/// Returns how many payouts were created.
pub async fn pay_out_all(ctx: &Ctx) -> anyhow::Result<usize> {
    let hold_days = ctx.settings.payouts.hold_days;
    let candidates = ctx.db.run_raw(move |conn| store::payable_wallets(conn, hold_days)).await?;
    let mut created = 0;
    for (seller_id, code, available) in candidates {
        let currency = Currency::parse(&code)?;
        if available < minimum_of(ctx, currency) {
            continue;
        }
        let new = NewPayout { seller_id: seller_id.clone(), currency, amount: None, created_by: "schedule".into() };
        match create(ctx, new).await {
            Ok(_) => created += 1,
            // Money moved since the scan (a refund, another payout): next run.
            Err(e @ (PayoutError::TooMuch { .. } | PayoutError::BelowMinimum { .. })) => {
                tracing::info!(seller = %seller_id, error = %e, "scheduled payout skipped");
            }
            Err(e) => return Err(anyhow::anyhow!("scheduled payout of {seller_id}: {e}")),
        }
    }
    Ok(created)
}
