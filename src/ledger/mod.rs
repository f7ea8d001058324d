//! The double-entry ledger: accounts per currency, balanced transactions
//! tied uniquely to their source, append-only entries (the database refuses
//! UPDATE and DELETE), and the invariant checks behind `till check`.
//!
//! Sign convention: debits are positive, credits negative; every
//! transaction's entries sum to zero. Asset and expense accounts therefore
//! carry positive balances, liability and revenue accounts negative ones.

pub mod check;

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};

use anyhow::Context;

use crate::db::{ToSql, Tx, params};
use crate::money::Currency;

pub const PSP_BALANCE: &str = "assets:psp_balance";
pub const COMMISSION: &str = "revenue:commission";
pub const PAYOUTS_IN_TRANSIT: &str = "liabilities:payouts_in_transit";
/// Our bank account: the PSP's payouts land here.
pub const BANK: &str = "assets:bank";
/// What the PSP charges (booked from its settlement files).
pub const PSP_FEES: &str = "expenses:psp_fees";
/// Disputed amounts the platform bears (`disputes.seller_liable = false`).
pub const DISPUTES: &str = "expenses:disputes";
/// The PSP's fees on disputes.
pub const DISPUTE_FEES: &str = "expenses:dispute_fees";

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
    format!("{SELLER_PREFIX}{seller_id}")
}

const SELLER_PREFIX: &str = "liabilities:seller:";

/// Parts a platform account's balance is kept in (`ledger_balance_shards`):
/// on PostgreSQL, a write adds to the part of its pooled connection, so
/// that concurrent pay-ins do not all conflict on one row. More than a
/// pool holds connections (64 at most), and few enough that a balance is
/// the sum of a handful of rows.
pub const BALANCE_PARTS: u32 = 64;

/// What a ledger transaction books, and why.
#[derive(Debug, Clone)]
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
pub fn post_transaction(tx: &Tx, posting: &Posting) -> Result<i64, PostingError> {
    match post_transactions(tx, std::slice::from_ref(posting))?.first().copied().flatten() {
        Some(id) => Ok(id),
        None => Err(PostingError::AlreadyBooked {
            source_type: posting.source_type.to_string(),
            source_id: posting.source_id.to_string(),
        }),
    }
}

/// Books many balanced transactions inside the caller's write transaction:
/// one row per transaction and per entry, each account looked up once and
/// its balance moved once for the whole call. Every posting is checked
/// before anything is written; an unbalanced one refuses them all.
///
/// Returns each posting's transaction id, in order, or `None` for one whose
/// source was booked before (by an earlier call or earlier in this one):
/// nothing of that posting is written.
pub fn post_transactions<'p, P: Borrow<Posting<'p>>>(
    tx: &Tx,
    postings: &[P],
) -> Result<Vec<Option<i64>>, PostingError> {
    for posting in postings {
        check_balanced(posting.borrow())?;
    }
    let now = crate::db::now();
    let mut accounts: HashMap<(&str, Currency), i64> = HashMap::new();
    // In account order: two bookings on PostgreSQL then lock the accounts
    // they share in the same order, and never deadlock on them.
    let mut deltas: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    // The platform's own accounts, which every pay-in moves, take this
    // write's part of their balance; a seller's account, moved only by its
    // own seller's bookings, keeps one.
    let hot_part = tx.hot_row_part(BALANCE_PARTS);
    let mut ids = Vec::with_capacity(postings.len());
    let mut entry_values: Vec<i64> = Vec::new();
    for posting in postings.iter().map(Borrow::borrow) {
        // No row back: the source was booked before.
        let Some(transaction_id) = tx
            .query_opt(
                "INSERT INTO ledger_transactions (source_type, source_id, currency, description, created_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (source_type, source_id) DO NOTHING RETURNING id",
                params![posting.source_type, posting.source_id, posting.currency, posting.description, now],
                |r| r.get::<i64>(0),
            )
            .context("inserting a ledger transaction")?
        else {
            ids.push(None);
            continue;
        };
        ids.push(Some(transaction_id));
        entry_values.clear();
        for (account, amount) in &posting.entries {
            let account_id = match accounts.get(&(account.as_str(), posting.currency)) {
                Some(id) => *id,
                None => {
                    let id = ensure_account(tx, account, posting.currency)?;
                    accounts.insert((account.as_str(), posting.currency), id);
                    id
                }
            };
            entry_values.extend([transaction_id, account_id, *amount]);
            let part = if account.starts_with(SELLER_PREFIX) { 0 } else { hot_part };
            *deltas.entry((account_id, part)).or_default() += amount;
        }
        // A posting's entries in one statement.
        let values: Vec<&dyn ToSql> = entry_values.iter().map(|v| v as &dyn ToSql).collect();
        tx.execute(&entries_insert(posting.entries.len()), &values).context("inserting ledger entries")?;
    }
    for ((account_id, part), delta) in deltas.into_iter().filter(|(_, d)| *d != 0) {
        tx.execute(
            "INSERT INTO ledger_balance_shards (account_id, shard, balance_minor) VALUES ($1, $2, $3)
             ON CONFLICT (account_id, shard)
             DO UPDATE SET balance_minor = ledger_balance_shards.balance_minor + excluded.balance_minor",
            params![account_id, part, delta],
        )
        .context("updating an account balance")?;
    }
    Ok(ids)
}

/// `INSERT INTO ledger_entries` of `rows` rows: `($1, $2, $3), ($4, $5, $6), …`.
fn entries_insert(rows: usize) -> String {
    use std::fmt::Write;
    let mut sql = String::from("INSERT INTO ledger_entries (transaction_id, account_id, amount_minor) VALUES ");
    for row in 0..rows {
        let (sep, first) = (if row == 0 { "" } else { ", " }, 3 * row + 1);
        let _ = write!(sql, "{sep}(${first}, ${}, ${})", first + 1, first + 2);
    }
    sql
}

fn check_balanced(posting: &Posting) -> Result<(), PostingError> {
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
    for (account, _) in &posting.entries {
        if AccountKind::of(account).is_none() {
            return Err(anyhow::anyhow!("'{account}' is not in the chart of accounts").into());
        }
    }
    Ok(())
}

fn ensure_account(tx: &Tx, name: &str, currency: Currency) -> anyhow::Result<i64> {
    let kind = AccountKind::of(name).with_context(|| format!("'{name}' is not in the chart of accounts"))?;
    let existing = tx.query_opt(
        "SELECT id FROM ledger_accounts WHERE name = $1 AND currency = $2",
        params![name, currency],
        |r| r.get(0),
    )?;
    if let Some(id) = existing {
        return Ok(id);
    }
    tx.query_value(
        "INSERT INTO ledger_accounts (name, currency, kind) VALUES ($1, $2, $3) RETURNING id",
        params![name, currency, kind.as_str()],
    )
    .with_context(|| format!("creating ledger account {name} {currency}"))
}

/// An account's balance in minor units (0 for an account never used).
pub fn account_balance(tx: &Tx, name: &str, currency: Currency) -> anyhow::Result<i64> {
    Ok(tx
        .query_opt(
            "SELECT SUM(s.balance_minor) FROM ledger_accounts a JOIN ledger_balance_shards s ON s.account_id = a.id
             WHERE a.name = $1 AND a.currency = $2",
            params![name, currency],
            |r| r.get::<Option<i64>>(0),
        )?
        .flatten()
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("l.db"), 2, 1000, &crate::db::till_migrations()).unwrap();
        (dir, db)
    }

    fn payin<'a>(id: &'a str, seller: &str, amount: i64, commission: i64) -> Posting<'a> {
        Posting {
            source_type: "payment_order",
            source_id: id,
            currency: Currency::parse("EUR").unwrap(),
            description: format!("pay-in {id}"),
            entries: [(PSP_BALANCE.to_string(), amount), (seller_account(seller), commission - amount)]
                .into_iter()
                .chain((commission > 0).then(|| (COMMISSION.to_string(), -commission)))
                .collect(),
        }
    }

    fn balance(db: &Db, account: &str) -> i64 {
        db.read_now(|tx| account_balance(tx, account, Currency::parse("EUR").unwrap())).unwrap()
    }

    #[tokio::test]
    async fn a_batch_books_every_posting_once_and_moves_each_balance_by_the_sum() {
        let (_dir, db) = db();
        let ids: Vec<String> = (0..300).map(|i| format!("o{i}")).collect();
        let booked = {
            let ids = ids.clone();
            db.write(move |tx| -> anyhow::Result<Vec<Option<i64>>> {
                let postings: Vec<Posting> =
                    ids.iter().enumerate().map(|(i, id)| payin(id, &format!("s{}", i % 3), 1000, 100)).collect();
                Ok(post_transactions(tx, &postings)?)
            })
            .await
            .unwrap()
        };
        assert_eq!(booked.iter().flatten().count(), 300);
        assert_eq!(balance(&db, PSP_BALANCE), 300_000);
        assert_eq!(balance(&db, COMMISSION), -30_000);
        assert_eq!(balance(&db, &seller_account("s0")), -90_000);
        // Each balance moved once for the batch must still equal its entries.
        let (entries, off): (i64, i64) = db
            .read_now(|tx| {
                tx.query_row(
                    "SELECT (SELECT COUNT(*) FROM ledger_entries),
                            (SELECT COUNT(*) FROM ledger_accounts a WHERE
                               (SELECT COALESCE(SUM(s.balance_minor), 0) FROM ledger_balance_shards s WHERE s.account_id = a.id) <>
                               (SELECT COALESCE(SUM(e.amount_minor), 0) FROM ledger_entries e WHERE e.account_id = a.id))",
                    params![],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .unwrap();
        assert_eq!((entries, off), (900, 0));
    }

    #[tokio::test]
    async fn a_source_booked_before_or_twice_in_a_batch_is_skipped_with_nothing_written() {
        let (_dir, db) = db();
        db.write(|tx| -> anyhow::Result<i64> { Ok(post_transaction(tx, &payin("a", "s", 500, 0))?) }).await.unwrap();
        let booked = db
            .write(|tx| -> anyhow::Result<Vec<Option<i64>>> {
                Ok(post_transactions(tx, &[payin("a", "s", 500, 0), payin("b", "s", 700, 0), payin("b", "s", 900, 0)])?)
            })
            .await
            .unwrap();
        assert!(booked[0].is_none() && booked[1].is_some() && booked[2].is_none(), "{booked:?}");
        assert_eq!(balance(&db, PSP_BALANCE), 1200);
        assert_eq!(balance(&db, &seller_account("s")), -1200);
        let again = db.write(|tx| -> Result<i64, PostingError> { post_transaction(tx, &payin("b", "s", 1, 0)) }).await;
        assert!(matches!(again, Err(PostingError::AlreadyBooked { .. })));
    }

    #[tokio::test]
    async fn one_unbalanced_posting_refuses_the_whole_batch_before_writing() {
        let (_dir, db) = db();
        let mut bad = payin("c", "s", 500, 0);
        bad.entries[0].1 += 1;
        let refused = db
            .write(move |tx| -> Result<Vec<Option<i64>>, PostingError> {
                let result = post_transactions(tx, &[payin("a", "s", 500, 0), bad.clone()]);
                let rows: i64 = tx.query_value("SELECT COUNT(*) FROM ledger_entries", params![]).unwrap();
                assert_eq!(rows, 0, "nothing may be written before the check");
                result
            })
            .await;
        assert!(refused.unwrap_err().to_string().contains("unbalanced"));
        let mut unknown = payin("d", "s", 500, 0);
        unknown.entries[1].0 = "equity:owner".into();
        let refused = db.write(move |tx| post_transactions(tx, std::slice::from_ref(&unknown))).await;
        assert!(refused.unwrap_err().to_string().contains("chart of accounts"));
    }
}
