//! Sellers' wallets: what till owes each seller per currency. A wallet moves
//! only in the same transaction as the ledger posting that explains it, so
//! it always equals `-balance(liabilities:seller:{id})` (invariant 2).
//!
//! Holds: money from a payment is *pending* until `payouts.hold_days` after
//! the payment succeeded, then *available*. Pending is what the seller
//! still holds of payments inside the hold window (their share, less what
//! was refunded of them); available = balance − pending.

use anyhow::Context;
use serde::Serialize;

use crate::db::{Tx, params};
use crate::money::{Currency, format_minor};

/// Adds `amount_minor` (negative to debit) to a seller's wallet.
pub fn credit_wallet(tx: &Tx, seller_id: &str, currency: Currency, amount_minor: i64) -> anyhow::Result<()> {
    tx.execute(
        "INSERT INTO wallets (seller_id, currency, balance_minor, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (seller_id, currency)
         DO UPDATE SET balance_minor = wallets.balance_minor + excluded.balance_minor, updated_at = excluded.updated_at",
        params![seller_id, currency, amount_minor, crate::db::now()],
    )
    .with_context(|| format!("crediting the wallet of {seller_id}"))?;
    Ok(())
}

/// Invariant 2 for a wallet just moved, read back inside the same
/// transaction: a mismatch fails the write, which rolls everything back.
pub fn assert_matches_ledger(tx: &Tx, seller_id: &str, currency: Currency) -> anyhow::Result<()> {
    let wallet: i64 = tx.query_value(
        "SELECT balance_minor FROM wallets WHERE seller_id = $1 AND currency = $2",
        params![seller_id, currency],
    )?;
    let account = crate::ledger::account_balance(tx, &crate::ledger::seller_account(seller_id), currency)?;
    anyhow::ensure!(wallet == -account, "wallet {seller_id} {currency} = {wallet} but its ledger account = {account}");
    Ok(())
}

/// One wallet's numbers, in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balances {
    pub balance: i64,
    pub pending: i64,
    pub available: i64,
}

/// The start of the hold window: payments that succeeded after it are pending.
fn hold_cutoff(hold_days: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(hold_days)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn balances(tx: &Tx, seller_id: &str, currency: Currency, hold_days: i64) -> anyhow::Result<Balances> {
    let balance: i64 = tx
        .query_opt(
            "SELECT balance_minor FROM wallets WHERE seller_id = $1 AND currency = $2",
            params![seller_id, currency],
            |r| r.get(0),
        )?
        .unwrap_or(0);
    let pending: i64 = if hold_days == 0 {
        0
    } else {
        crate::payments::store::held_seller_share(tx, seller_id, currency, &hold_cutoff(hold_days))?
    };
    // Refunds beyond what is held come out of available money first.
    let pending = pending.clamp(0, balance.max(0));
    Ok(Balances { balance, pending, available: balance - pending })
}

/// The part of one payment's seller share still inside the hold window.
pub fn pending_of_order(tx: &Tx, payment_order_id: &str, hold_days: i64) -> anyhow::Result<i64> {
    if hold_days == 0 {
        return Ok(0);
    }
    crate::payments::store::held_share_of_order(tx, payment_order_id, &hold_cutoff(hold_days))
}

/// (seller, currency) of every wallet with a positive balance, by seller then currency.
pub fn positive_wallets(tx: &Tx) -> anyhow::Result<Vec<(String, Currency)>> {
    tx.query_map(
        "SELECT seller_id, currency FROM wallets WHERE balance_minor > 0 ORDER BY seller_id, currency",
        params![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WalletBalance {
    pub currency: String,
    /// What till owes the seller: below zero when disputes took back more
    /// than it held (then `debt` says how much it owes).
    pub balance: String,
    /// What may be paid out: the balance less what is pending (no payout below zero).
    pub available: String,
    /// Paid within `payouts.hold_days`: held, not yet available.
    pub pending: String,
    /// What the seller owes (its balance below zero, from disputes of money
    /// already paid out), repaid by its later pay-ins; "0.00" otherwise.
    pub debt: String,
    /// Manual capture: what buyers authorized for the seller and the shop
    /// has not captured yet (not in the balance: nothing is booked until captured).
    pub authorized: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WalletView {
    pub seller_id: String,
    pub balances: Vec<WalletBalance>,
}

/// The currencies the seller has a wallet in (has ever been paid in), in code order.
pub fn currencies_of(tx: &Tx, seller_id: &str) -> anyhow::Result<Vec<Currency>> {
    tx.query_map("SELECT currency FROM wallets WHERE seller_id = $1 ORDER BY currency", params![seller_id], |r| {
        r.get(0)
    })
}

/// The seller's balances, one per currency it has ever been paid in (or
/// has payments authorized in, awaiting capture).
pub fn read_wallet(tx: &Tx, seller_id: &str, hold_days: i64) -> anyhow::Result<Option<WalletView>> {
    let authorized = crate::payments::store::authorized_of_seller(tx, seller_id)?;
    let mut currencies = currencies_of(tx, seller_id)?;
    currencies.extend(authorized.iter().map(|(c, _)| *c).filter(|c| !currencies.contains(c)).collect::<Vec<_>>());
    currencies.sort_by_key(|c| c.code());
    if currencies.is_empty() {
        return Ok(None);
    }
    let balances = currencies
        .into_iter()
        .map(|currency| {
            let b = balances(tx, seller_id, currency, hold_days)?;
            let held = authorized.iter().find(|(c, _)| *c == currency).map_or(0, |(_, minor)| *minor);
            Ok(WalletBalance {
                currency: currency.code().to_string(),
                balance: format_minor(b.balance, currency),
                available: format_minor(b.available, currency),
                pending: format_minor(b.pending, currency),
                debt: format_minor((-b.balance).max(0), currency),
                authorized: format_minor(held, currency),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(WalletView { seller_id: seller_id.to_string(), balances }))
}
