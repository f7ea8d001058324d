//! Sellers' wallets: what till owes each seller per currency. A wallet moves
//! only in the same transaction as the ledger posting that explains it, so
//! it always equals `-balance(liabilities:seller:{id})` (invariant 2).

use anyhow::Context;
use rusqlite::{Connection, Transaction, params};
use serde::Serialize;

use crate::money::{Currency, format_minor};

/// Adds `amount_minor` (negative to debit) to a seller's wallet.
pub fn credit_wallet(tx: &Transaction, seller_id: &str, currency: Currency, amount_minor: i64) -> anyhow::Result<()> {
    tx.prepare_cached(
        "INSERT INTO wallets (seller_id, currency, balance_minor, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (seller_id, currency)
         DO UPDATE SET balance_minor = balance_minor + excluded.balance_minor, updated_at = excluded.updated_at",
    )?
    .execute(params![seller_id, currency.code(), amount_minor, crate::db::now()])
    .with_context(|| format!("crediting the wallet of {seller_id}"))?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WalletBalance {
    pub currency: String,
    pub balance: String,
    pub available: String,
    pub pending: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WalletView {
    pub seller_id: String,
    pub balances: Vec<WalletBalance>,
}

/// The seller's balances, one per currency it has ever been paid in.
/// Without a hold period (`payouts.hold_days`, not configured yet) all of a
/// balance is available at once.
pub fn read_wallet(conn: &Connection, seller_id: &str) -> anyhow::Result<Option<WalletView>> {
    let mut st =
        conn.prepare_cached("SELECT currency, balance_minor FROM wallets WHERE seller_id = ?1 ORDER BY currency")?;
    let rows = st
        .query_map([seller_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    if rows.is_empty() {
        return Ok(None);
    }
    let balances = rows
        .into_iter()
        .map(|(code, balance)| {
            let currency = Currency::parse(&code).with_context(|| format!("stored currency {code}"))?;
            Ok(WalletBalance {
                currency: code,
                balance: format_minor(balance, currency),
                available: format_minor(balance, currency),
                pending: format_minor(0, currency),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(WalletView { seller_id: seller_id.to_string(), balances }))
}
