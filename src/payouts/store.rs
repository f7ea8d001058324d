//! SQL of sellers and payouts.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde::Serialize;

use crate::money::{Currency, format_minor};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SellerView {
    pub seller_id: String,
    pub name: String,
    pub payout_destination: Option<String>,
}

pub fn upsert_seller(tx: &Transaction, seller: &SellerView) -> anyhow::Result<bool> {
    let existed = seller_exists(tx, &seller.seller_id)?;
    tx.execute(
        "INSERT INTO sellers (seller_id, name, payout_destination, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (seller_id) DO UPDATE SET name = excluded.name,
             payout_destination = excluded.payout_destination, updated_at = excluded.updated_at",
        params![seller.seller_id, seller.name, seller.payout_destination, crate::db::now()],
    )?;
    Ok(!existed)
}

fn seller_exists(conn: &Connection, seller_id: &str) -> anyhow::Result<bool> {
    Ok(conn.query_row("SELECT EXISTS (SELECT 1 FROM sellers WHERE seller_id = ?1)", [seller_id], |r| r.get(0))?)
}

pub fn seller(conn: &Connection, seller_id: &str) -> anyhow::Result<Option<SellerView>> {
    Ok(conn
        .prepare_cached("SELECT seller_id, name, payout_destination FROM sellers WHERE seller_id = ?1")?
        .query_row([seller_id], |r| {
            Ok(SellerView { seller_id: r.get(0)?, name: r.get(1)?, payout_destination: r.get(2)? })
        })
        .optional()?)
}

pub fn insert(
    tx: &Transaction,
    payout_id: &str,
    seller_id: &str,
    amount_minor: i64,
    currency: Currency,
    destination: &str,
    created_by: &str,
) -> anyhow::Result<()> {
    tx.prepare_cached(
        "INSERT INTO payouts (payout_id, seller_id, amount_minor, currency, status, destination, created_by,
                              created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'PENDING', ?5, ?6, ?7, ?7)",
    )?
    .execute(params![
        payout_id,
        seller_id,
        amount_minor,
        currency.code(),
        destination,
        created_by,
        crate::db::now()
    ])?;
    Ok(())
}

/// Moves a payout forward, guarded: only from a state that may lead there.
pub fn transition(tx: &Transaction, payout_id: &str, to: &str, failure_code: Option<&str>) -> anyhow::Result<bool> {
    let n = tx
        .prepare_cached(
            "UPDATE payouts SET status = ?2, failure_code = ?3, updated_at = ?4
             WHERE payout_id = ?1 AND status IN ('PENDING', 'IN_TRANSIT') AND status <> ?2",
        )?
        .execute(params![payout_id, to, failure_code, crate::db::now()])?;
    Ok(n == 1)
}

/// Records the PSP's transfer; the payout is then IN_TRANSIT.
pub fn set_transfer(tx: &Transaction, payout_id: &str, transfer_id: &str) -> anyhow::Result<()> {
    tx.prepare_cached(
        "UPDATE payouts SET psp_transfer_id = ?2,
                status = CASE status WHEN 'PENDING' THEN 'IN_TRANSIT' ELSE status END, updated_at = ?3
         WHERE payout_id = ?1 AND (psp_transfer_id IS NOT ?2 OR status = 'PENDING')",
    )?
    .execute(params![payout_id, transfer_id, crate::db::now()])?;
    Ok(())
}

pub struct PayoutRow {
    pub payout_id: String,
    pub seller_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub status: String,
    pub destination: String,
    pub psp_transfer_id: Option<String>,
}

pub fn load_row(conn: &Connection, payout_id: &str) -> anyhow::Result<Option<PayoutRow>> {
    Ok(conn
        .prepare_cached(
            "SELECT payout_id, seller_id, amount_minor, currency, status, destination, psp_transfer_id
             FROM payouts WHERE payout_id = ?1",
        )?
        .query_row([payout_id], |r| {
            Ok(PayoutRow {
                payout_id: r.get(0)?,
                seller_id: r.get(1)?,
                amount_minor: r.get(2)?,
                currency: r.get(3)?,
                status: r.get(4)?,
                destination: r.get(5)?,
                psp_transfer_id: r.get(6)?,
            })
        })
        .optional()?)
}

pub fn by_transfer(conn: &Connection, transfer_id: &str) -> anyhow::Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT payout_id FROM payouts WHERE psp_transfer_id = ?1")?
        .query_row([transfer_id], |r| r.get(0))
        .optional()?)
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PayoutView {
    pub payout_id: String,
    pub seller_id: String,
    pub amount: String,
    pub currency: String,
    pub status: String,
    pub destination: String,
    pub failure_code: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str =
    "payout_id, seller_id, amount_minor, currency, status, destination, failure_code, created_at, updated_at";

fn from_row(r: &Row) -> rusqlite::Result<PayoutView> {
    let code: String = r.get(3)?;
    let currency = Currency::parse(&code)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into()))?;
    Ok(PayoutView {
        payout_id: r.get(0)?,
        seller_id: r.get(1)?,
        amount: format_minor(r.get(2)?, currency),
        currency: code,
        status: r.get(4)?,
        destination: r.get(5)?,
        failure_code: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

pub fn load(conn: &Connection, payout_id: &str) -> anyhow::Result<Option<PayoutView>> {
    let sql = format!("SELECT {COLUMNS} FROM payouts WHERE payout_id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([payout_id], from_row).optional()?)
}

pub struct PayoutFilter {
    pub seller_id: Option<String>,
    pub status: Option<String>,
    pub starting_after: Option<String>,
    pub limit: u32,
}

/// Newest first, in insertion order (rowid) so the cursor is stable.
pub fn list(conn: &Connection, f: &PayoutFilter) -> anyhow::Result<(Vec<PayoutView>, bool)> {
    let cursor: Option<i64> = match &f.starting_after {
        None => None,
        Some(id) => Some(
            conn.prepare_cached("SELECT rowid FROM payouts WHERE payout_id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?
                .unwrap_or(0),
        ),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM payouts WHERE (?1 IS NULL OR seller_id = ?1) AND (?2 IS NULL OR status = ?2)
         AND (?3 IS NULL OR rowid < ?3) ORDER BY rowid DESC LIMIT ?4"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let mut data = st
        .query_map(params![f.seller_id, f.status, cursor, i64::from(f.limit) + 1], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let has_more = data.len() > f.limit as usize;
    data.truncate(f.limit as usize);
    Ok((data, has_more))
}

/// (seller, currency, available) of every seller with a destination and a
/// positive balance.
pub fn payable_wallets(conn: &Connection, hold_days: i64) -> anyhow::Result<Vec<(String, String, i64)>> {
    let mut st = conn.prepare(
        "SELECT w.seller_id, w.currency FROM wallets w JOIN sellers s ON s.seller_id = w.seller_id
         WHERE s.payout_destination IS NOT NULL AND w.balance_minor > 0 ORDER BY w.seller_id, w.currency",
    )?;
    let rows =
        st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?.collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    for (seller, code) in rows {
        let currency = Currency::parse(&code)?;
        // seam: transitional
        let available = crate::wallet::balances(&crate::db::Tx::sqlite(conn), &seller, currency, hold_days)?.available;
        if available > 0 {
            out.push((seller, code, available));
        }
    }
    Ok(out)
}
