//! `till db copy --to postgres://…`: a shop's SQLite database moved into an
//! empty PostgreSQL database, table by table (parents before children, as
//! the foreign keys order them), rows in batches, identity sequences moved
//! past the copied keys, then verified: the same rows per table, the same
//! balance per ledger account, and `till check` clean on the copy.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;

use crate::db::{Db, FromSql, ToSql, Tx, Value, ValueRef, params};

/// Rows written per transaction.
const BATCH: usize = 1_000;

/// What was copied, and what the verification found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Copied {
    /// Rows per table, equal on both sides.
    pub tables: BTreeMap<String, i64>,
    /// Ledger accounts whose balances were compared.
    pub accounts: usize,
}

impl FromSql for Value {
    fn from_sql(value: ValueRef<'_>) -> anyhow::Result<Self> {
        Ok(match value {
            ValueRef::Null => Value::Null,
            ValueRef::Int(i) => Value::Int(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(s) => Value::Text(s.to_string()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        })
    }
}

/// Copies `from` (SQLite) into `to` (a PostgreSQL database that holds no
/// rows of till's yet), then verifies the copy.
pub async fn copy(from: &Db, to_url: &str, pool_size: u32, timeout: Duration) -> anyhow::Result<Copied> {
    anyhow::ensure!(!from.is_postgres(), "till db copy moves a SQLite database; the configured one is PostgreSQL");
    let to = Db::open_postgres(to_url, pool_size, timeout).context("opening the target database")?;
    let tables = from.run(tables_in_order).await?;
    for table in &tables {
        let name = table.clone();
        let rows: i64 = to.run(move |tx| tx.query_value(&format!("SELECT COUNT(*) FROM {name}"), params![])).await?;
        anyhow::ensure!(
            rows == 0,
            "the target database is not empty: {table} holds {rows} row(s); copy into a new database"
        );
    }
    let mut copied = BTreeMap::new();
    for table in &tables {
        copied.insert(table.clone(), copy_table(from, &to, table).await?);
    }
    let accounts = verify(from, &to, &copied).await?;
    Ok(Copied { tables: copied, accounts })
}

/// till's tables, each after the tables its foreign keys name.
fn tables_in_order(tx: &Tx) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = tx.query_map(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        params![],
        |r| r.get(0),
    )?;
    let mut parents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in &names {
        let refs: Vec<String> =
            tx.query_map(&format!("SELECT \"table\" FROM pragma_foreign_key_list('{name}')"), params![], |r| r.get(0))?;
        parents.insert(name.clone(), refs.into_iter().filter(|p| p != name).collect());
    }
    let mut ordered = Vec::new();
    while ordered.len() < names.len() {
        let ready: Vec<String> = names
            .iter()
            .filter(|n| !ordered.contains(*n) && parents[*n].iter().all(|p| ordered.contains(p)))
            .cloned()
            .collect();
        anyhow::ensure!(!ready.is_empty(), "the tables' foreign keys go round in a circle");
        ordered.extend(ready);
    }
    Ok(ordered)
}

async fn copy_table(from: &Db, to: &Db, table: &str) -> anyhow::Result<i64> {
    let name = table.to_string();
    let columns: Vec<String> = from
        .run(move |tx| {
            tx.query_map(&format!("SELECT name FROM pragma_table_info('{name}') ORDER BY cid"), params![], |r| r.get(0))
        })
        .await?;
    let list = columns.join(", ");
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    let insert = format!("INSERT INTO {table} ({list}) VALUES ({})", placeholders.join(", "));
    let name = table.to_string();
    let rowid: bool = from
        .run(move |tx| {
            let sql: String = tx.query_value("SELECT sql FROM sqlite_master WHERE name = $1", params![name])?;
            Ok::<_, anyhow::Error>(!sql.to_uppercase().contains("WITHOUT ROWID"))
        })
        .await?;
    // In SQLite's own row order, a batch after the last one's rowid; a
    // table without rowids (all small: sessions, keys of a day) by offset.
    let select = match rowid {
        true => format!("SELECT rowid, {list} FROM {table} WHERE rowid > $1 ORDER BY rowid LIMIT $2"),
        false => format!("SELECT 0, {list} FROM {table} ORDER BY 2, 3 LIMIT $2 OFFSET $1"),
    };
    let n = columns.len();
    let (mut after, mut total) = (if rowid { i64::MIN } else { 0 }, 0i64);
    loop {
        let select = select.clone();
        let rows: Vec<(i64, Vec<Value>)> = from
            .run(move |tx| {
                tx.query_map(&select, params![after, BATCH as i64], |r| {
                    let values = (1..=n).map(|i| r.get::<Value>(i)).collect::<anyhow::Result<_>>()?;
                    Ok((r.get(0)?, values))
                })
            })
            .await?;
        let Some((last, _)) = rows.last() else { break };
        after = if rowid { *last } else { after + rows.len() as i64 };
        total += rows.len() as i64;
        let insert = insert.clone();
        to.write(move |tx| -> anyhow::Result<()> {
            for (_, values) in &rows {
                let bound: Vec<&dyn ToSql> = values.iter().map(|v| v as &dyn ToSql).collect();
                tx.execute(&insert, &bound)?;
            }
            Ok(())
        })
        .await
        .with_context(|| format!("copying {table}"))?;
    }
    reset_identity(to, table, &columns).await?;
    Ok(total)
}

/// Moves a table's identity sequence past the keys copied into it (a table
/// without an identity column has nothing to move).
async fn reset_identity(to: &Db, table: &str, columns: &[String]) -> anyhow::Result<()> {
    if !columns.iter().any(|c| c == "id") {
        return Ok(());
    }
    let table = table.to_string();
    to.write(move |tx| -> anyhow::Result<()> {
        let sequence: Option<String> =
            tx.query_value("SELECT pg_get_serial_sequence($1, 'id')", params![table.as_str()])?;
        if let Some(sequence) = sequence {
            let next = format!(
                "SELECT setval(CAST(CAST($1 AS TEXT) AS REGCLASS), COALESCE(MAX(id), 0) + 1, false) FROM {table}"
            );
            tx.query_map(&next, params![sequence], |_| Ok(()))?;
        }
        Ok(())
    })
    .await
}

/// The same rows per table, the same balance per ledger account, and the
/// ledger invariants holding on the copy. Returns how many accounts matched.
async fn verify(from: &Db, to: &Db, copied: &BTreeMap<String, i64>) -> anyhow::Result<usize> {
    for (table, expected) in copied {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let (a, b): (i64, i64) = (
            from.run({
                let sql = sql.clone();
                move |tx| tx.query_value(&sql, params![])
            })
            .await?,
            to.run(move |tx| tx.query_value(&sql, params![])).await?,
        );
        anyhow::ensure!(
            a == *expected && b == *expected,
            "{table}: {a} row(s) in SQLite, {b} in PostgreSQL after copying {expected}"
        );
    }
    let balances = |tx: &Tx| -> anyhow::Result<BTreeMap<(String, String), i64>> {
        let rows: Vec<(String, String, i64)> = tx.query_map(
            "SELECT a.name, a.currency, COALESCE(SUM(e.amount_minor), 0)
             FROM ledger_accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id
             GROUP BY a.id, a.name, a.currency",
            params![],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(rows.into_iter().map(|(name, currency, sum)| ((name, currency), sum)).collect())
    };
    let (ours, theirs) = (from.read_snapshot(balances)?, to.read_snapshot(balances)?);
    anyhow::ensure!(ours == theirs, "the ledger's balances differ between SQLite and the copy");
    let report = to.read_snapshot(crate::ledger::check::run)?;
    anyhow::ensure!(report.ok, "till check on the copy: {}", report.summary());
    Ok(ours.len())
}
