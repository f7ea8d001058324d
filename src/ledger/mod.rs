//! The double-entry ledger: accounts per currency, balanced transactions
//! tied uniquely to their source, append-only entries (the database refuses
//! UPDATE and DELETE), and the invariant checks behind `till check`.
//!
//! Sign convention: debits are positive, credits negative; every
//! transaction's entries sum to zero. Asset and expense accounts therefore
//! carry positive balances, liability and revenue accounts negative ones.

pub mod check;

use anyhow::Context;
use rusqlite::{OptionalExtension, Transaction, params};

use crate::money::Currency;

pub const PSP_BALANCE: &str = "assets:psp_balance";
pub const COMMISSION: &str = "revenue:commission";
pub const PAYOUTS_IN_TRANSIT: &str = "liabilities:payouts_in_transit";
/// Our bank account: the PSP's payouts land here.
pub const BANK: &str = "assets:bank";
/// What the PSP charges (booked from its settlement files).
pub const PSP_FEES: &str = "expenses:psp_fees";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    Asset,
    Liability,
    Revenue,
    Expense,
}

impl AccountKind {
    fn as_str(self) -> &'static str {
        match self {
            AccountKind::Asset => "asset",
            AccountKind::Liability => "liability",
            AccountKind::Revenue => "revenue",
            AccountKind::Expense => "expense",
        }
    }

    /// The kind follows from the name's first segment of the chart of accounts.
    pub fn of(name: &str) -> Option<AccountKind> {
        match name.split(':').next()? {
            "assets" => Some(AccountKind::Asset),
            "liabilities" => Some(AccountKind::Liability),
            "revenue" => Some(AccountKind::Revenue),
            "expenses" => Some(AccountKind::Expense),
            _ => None,
        }
    }
}

/// `liabilities:seller:{seller_id}`: what till owes one seller (the wallet).
pub fn seller_account(seller_id: &str) -> String {
    format!("liabilities:seller:{seller_id}")
}

/// What a ledger transaction books, and why.
pub struct Posting<'a> {
    pub source_type: &'a str,
    pub source_id: &'a str,
    pub currency: Currency,
    pub description: String,
    /// (account name, signed amount in minor units: debit +, credit −)
    pub entries: Vec<(String, i64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum PostingError {
    #[error("{source_type} {source_id} is already booked")]
    AlreadyBooked { source_type: String, source_id: String },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Books one balanced transaction inside the caller's write transaction and
/// keeps every touched account's balance current. Refuses an unbalanced or
/// empty posting before writing anything.
pub fn post_transaction(tx: &Transaction, posting: &Posting) -> Result<i64, PostingError> {
    let sum: i128 = posting.entries.iter().map(|(_, a)| i128::from(*a)).sum();
    if posting.entries.len() < 2 || sum != 0 || posting.entries.iter().any(|(_, a)| *a == 0) {
        return Err(anyhow::anyhow!(
            "refusing an unbalanced posting for {} {}: {:?}",
            posting.source_type,
            posting.source_id,
            posting.entries
        )
        .into());
    }
    let inserted = tx
        .prepare_cached(
            "INSERT INTO ledger_transactions (source_type, source_id, currency, description, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (source_type, source_id) DO NOTHING RETURNING id",
        )
        .and_then(|mut st| {
            st.query_row(
                params![
                    posting.source_type,
                    posting.source_id,
                    posting.currency.code(),
                    posting.description,
                    crate::db::now()
                ],
                |r| r.get::<_, i64>(0),
            )
            .optional()
        })
        .context("inserting a ledger transaction")?;
    let Some(transaction_id) = inserted else {
        return Err(PostingError::AlreadyBooked {
            source_type: posting.source_type.to_string(),
            source_id: posting.source_id.to_string(),
        });
    };
    for (account, amount) in &posting.entries {
        let account_id = ensure_account(tx, account, posting.currency)?;
        tx.prepare_cached("INSERT INTO ledger_entries (transaction_id, account_id, amount_minor) VALUES (?1, ?2, ?3)")
            .and_then(|mut st| st.execute(params![transaction_id, account_id, amount]))
            .context("inserting a ledger entry")?;
        tx.prepare_cached("UPDATE ledger_accounts SET balance_minor = balance_minor + ?2 WHERE id = ?1")
            .and_then(|mut st| st.execute(params![account_id, amount]))
            .context("updating an account balance")?;
    }
    Ok(transaction_id)
}

fn ensure_account(tx: &Transaction, name: &str, currency: Currency) -> anyhow::Result<i64> {
    let kind = AccountKind::of(name).with_context(|| format!("'{name}' is not in the chart of accounts"))?;
    let existing = tx
        .prepare_cached("SELECT id FROM ledger_accounts WHERE name = ?1 AND currency = ?2")?
        .query_row(params![name, currency.code()], |r| r.get(0))
        .optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    tx.prepare_cached("INSERT INTO ledger_accounts (name, currency, kind) VALUES (?1, ?2, ?3) RETURNING id")?
        .query_row(params![name, currency.code(), kind.as_str()], |r| r.get(0))
        .with_context(|| format!("creating ledger account {name} {currency}"))
}

/// An account's balance in minor units (0 for an account never used).
pub fn account_balance(conn: &rusqlite::Connection, name: &str, currency: Currency) -> anyhow::Result<i64> {
    Ok(conn
        .prepare_cached("SELECT balance_minor FROM ledger_accounts WHERE name = ?1 AND currency = ?2")?
        .query_row(params![name, currency.code()], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}
