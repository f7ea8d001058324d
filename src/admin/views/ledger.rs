//! `/admin/ledger`: the accounts with their balances, the trial balance per
//! currency (debit balances against credit balances: they must be equal),
//! the journal newest first, and one account's entries.

use crate::admin::format;
use crate::admin::views::{self, JournalRow};
use crate::db::{Tx, params};

pub const JOURNAL_PAGE: u32 = 25;
pub const ENTRIES_PAGE: u32 = 50;
/// Accounts listed at most (one per seller and currency, so it can grow).
const MAX_ACCOUNTS: u32 = 1_000;

#[derive(Debug, Clone)]
pub struct AccountRow {
    pub id: i64,
    pub name: String,
    pub currency: String,
    pub kind: String,
    pub debit: String,
    pub credit: String,
}

#[derive(Debug, Clone)]
pub struct TrialBalance {
    pub currency: String,
    pub debits: String,
    pub credits: String,
    pub balanced: bool,
}

#[derive(Debug, Clone)]
pub struct LedgerPage {
    pub accounts: Vec<AccountRow>,
    pub accounts_capped: bool,
    pub trial: Vec<TrialBalance>,
    pub journal: Vec<JournalRow>,
    pub next_before: Option<i64>,
}

pub fn page(tx: &Tx, before: Option<i64>) -> anyhow::Result<LedgerPage> {
    let mut accounts = tx.query_map(
        "SELECT a.id, a.name, a.currency, a.kind, COALESCE(b.balance, 0) FROM ledger_accounts a
         LEFT JOIN (SELECT account_id, SUM(balance_minor) AS balance FROM ledger_balance_shards GROUP BY account_id) b
           ON b.account_id = a.id
         ORDER BY a.currency, a.name LIMIT $1",
        params![MAX_ACCOUNTS + 1],
        |r| {
            let balance: i64 = r.get(4)?;
            let code: String = r.get(2)?;
            let entry = views::EntryRow::new(r.get(0)?, r.get(1)?, balance, &code);
            Ok(AccountRow {
                id: entry.account_id,
                name: entry.account,
                kind: r.get(3)?,
                debit: entry.debit,
                credit: entry.credit,
                currency: code,
            })
        },
    )?;
    let accounts_capped = accounts.len() > MAX_ACCOUNTS as usize;
    accounts.truncate(MAX_ACCOUNTS as usize);
    let trial = tx.query_map(
        "SELECT a.currency, COALESCE(SUM(CASE WHEN b.balance > 0 THEN b.balance ELSE 0 END), 0),
                -COALESCE(SUM(CASE WHEN b.balance < 0 THEN b.balance ELSE 0 END), 0)
         FROM ledger_accounts a
         LEFT JOIN (SELECT account_id, SUM(balance_minor) AS balance FROM ledger_balance_shards GROUP BY account_id) b
           ON b.account_id = a.id
         GROUP BY a.currency ORDER BY a.currency",
        params![],
        |r| {
            let code: String = r.get(0)?;
            let (debits, credits): (i64, i64) = (r.get(1)?, r.get(2)?);
            Ok(TrialBalance {
                debits: format::money(debits, &code),
                credits: format::money(credits, &code),
                balanced: debits == credits,
                currency: code,
            })
        },
    )?;
    let mut ids: Vec<i64> = tx.query_map(
        "SELECT id FROM ledger_transactions WHERE CAST($1 AS BIGINT) IS NULL OR id < $1 ORDER BY id DESC LIMIT $2",
        params![before, JOURNAL_PAGE + 1],
        |r| r.get(0),
    )?;
    let next_before =
        if ids.len() > JOURNAL_PAGE as usize { ids.get(JOURNAL_PAGE as usize - 1).copied() } else { None };
    ids.truncate(JOURNAL_PAGE as usize);
    let mut journal = Vec::with_capacity(ids.len());
    for id in ids {
        journal.extend(views::journal_row(tx, id)?);
    }
    Ok(LedgerPage { accounts, accounts_capped, trial, journal, next_before })
}

#[derive(Debug, Clone)]
pub struct StatementRow {
    pub entry_id: i64,
    pub transaction_id: i64,
    pub description: String,
    pub source_link: Option<String>,
    pub created_at: String,
    pub debit: String,
    pub credit: String,
}

#[derive(Debug, Clone)]
pub struct AccountPage {
    pub account: AccountRow,
    pub balance: String,
    pub entries: Vec<StatementRow>,
    pub next_before: Option<i64>,
}

/// One account's entries, newest first (keyset on the entry id).
pub fn account(tx: &Tx, id: i64, before: Option<i64>) -> anyhow::Result<Option<AccountPage>> {
    let head: Option<(i64, String, String, String, i64)> = tx.query_opt(
        "SELECT a.id, a.name, a.currency, a.kind, COALESCE(b.balance, 0) FROM ledger_accounts a
         LEFT JOIN (SELECT account_id, SUM(balance_minor) AS balance FROM ledger_balance_shards GROUP BY account_id) b
           ON b.account_id = a.id
         WHERE a.id = $1",
        params![id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    let Some((id, name, code, kind, balance)) = head else { return Ok(None) };
    let entry = views::EntryRow::new(id, name, balance, &code);
    let mut entries = tx.query_map(
        "SELECT e.id, e.transaction_id, e.amount_minor, t.description, t.created_at FROM ledger_entries e
         JOIN ledger_transactions t ON t.id = e.transaction_id
         WHERE e.account_id = $1 AND (CAST($2 AS BIGINT) IS NULL OR e.id < $2) ORDER BY e.id DESC LIMIT $3",
        params![id, before, ENTRIES_PAGE + 1],
        |r| {
            let row = views::EntryRow::new(id, String::new(), r.get(2)?, &code);
            Ok(StatementRow {
                entry_id: r.get(0)?,
                transaction_id: r.get(1)?,
                description: r.get(3)?,
                source_link: None,
                created_at: format::time(&r.get::<String>(4)?),
                debit: row.debit,
                credit: row.credit,
            })
        },
    )?;
    let has_more = entries.len() > ENTRIES_PAGE as usize;
    entries.truncate(ENTRIES_PAGE as usize);
    let next_before = if has_more { entries.last().map(|e| e.entry_id) } else { None };
    Ok(Some(AccountPage {
        balance: format::money(balance, &code),
        account: AccountRow { id, name: entry.account, currency: code, kind, debit: entry.debit, credit: entry.credit },
        entries,
        next_before,
    }))
}
