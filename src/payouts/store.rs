//! SQL of sellers and payouts: the only code that writes `sellers` and `payouts`.

use serde::Serialize;

use crate::db::{Row, Tx, params};
use crate::money::{Currency, format_minor};
use crate::payouts::PayoutStatus;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SellerView {
    pub seller_id: String,
    /// Null for a seller created by its first payment and not named since.
    pub name: Option<String>,
    pub payout_destination: Option<String>,
    pub created_at: String,
}

/// Creates or updates a seller; a name not given keeps the one it has.
/// Returns whether it is new.
pub fn upsert_seller(
    tx: &Tx,
    seller_id: &str,
    name: Option<&str>,
    payout_destination: Option<&str>,
) -> anyhow::Result<bool> {
    let existed = seller_exists(tx, seller_id)?;
    tx.execute(
        "INSERT INTO sellers (seller_id, name, payout_destination, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (seller_id) DO UPDATE SET name = COALESCE(excluded.name, sellers.name),
             payout_destination = excluded.payout_destination, updated_at = excluded.updated_at",
        params![seller_id, name, payout_destination, crate::db::now()],
    )?;
    Ok(!existed)
}

/// The seller's record, made now if it has none (a payment to a seller
/// nobody named yet): every seller with a wallet has one.
pub fn ensure_seller(tx: &Tx, seller_id: &str) -> anyhow::Result<()> {
    tx.execute(
        "INSERT INTO sellers (seller_id, name, payout_destination, created_at, updated_at)
         VALUES ($1, NULL, NULL, $2, $2) ON CONFLICT (seller_id) DO NOTHING",
        params![seller_id, crate::db::now()],
    )?;
    Ok(())
}

/// Sellers in id order after `starting_after`: up to `limit`, and whether more follow.
pub fn list_sellers(tx: &Tx, starting_after: Option<&str>, limit: u32) -> anyhow::Result<(Vec<SellerView>, bool)> {
    let mut rows = tx.query_map(
        "SELECT seller_id, name, payout_destination, created_at FROM sellers
         WHERE (CAST($1 AS TEXT) IS NULL OR seller_id > $1) ORDER BY seller_id LIMIT $2",
        params![starting_after, i64::from(limit) + 1],
        seller_from_row,
    )?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok((rows, more))
}

fn seller_from_row(r: &Row) -> anyhow::Result<SellerView> {
    Ok(SellerView { seller_id: r.get(0)?, name: r.get(1)?, payout_destination: r.get(2)?, created_at: r.get(3)? })
}

fn seller_exists(tx: &Tx, seller_id: &str) -> anyhow::Result<bool> {
    let n: i64 = tx.query_value("SELECT COUNT(*) FROM sellers WHERE seller_id = $1", params![seller_id])?;
    Ok(n > 0)
}

pub fn seller(tx: &Tx, seller_id: &str) -> anyhow::Result<Option<SellerView>> {
    tx.query_opt(
        "SELECT seller_id, name, payout_destination, created_at FROM sellers WHERE seller_id = $1",
        params![seller_id],
        seller_from_row,
    )
}

/// Stores a new payout, PENDING.
pub fn insert(
    tx: &Tx,
    payout_id: &str,
    seller_id: &str,
    amount_minor: i64,
    currency: Currency,
    destination: &str,
    created_by: &str,
) -> anyhow::Result<()> {
    tx.execute(
        "INSERT INTO payouts (payout_id, seller_id, amount_minor, currency, status, destination, created_by,
                              created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        params![
            payout_id,
            seller_id,
            amount_minor,
            currency.code(),
            PayoutStatus::Pending,
            destination,
            created_by,
            crate::db::now()
        ],
    )?;
    Ok(())
}

/// `from` → `to`, guarded in SQL so that two racing answers cannot both
/// move it. Returns false if the payout was not in `from`.
pub fn transition(
    tx: &Tx,
    payout_id: &str,
    from: PayoutStatus,
    to: PayoutStatus,
    failure_code: Option<&str>,
) -> anyhow::Result<bool> {
    anyhow::ensure!(from.can_move_to(to), "illegal payout transition {from} -> {to}");
    let n = tx.execute(
        "UPDATE payouts SET status = $3, failure_code = $4, updated_at = $5 WHERE payout_id = $1 AND status = $2",
        params![payout_id, from, to, failure_code, crate::db::now()],
    )?;
    Ok(n == 1)
}

/// Records the PSP's transfer of a payout; a PENDING payout is then
/// IN_TRANSIT. `p` is kept as the database now has it.
pub fn set_transfer(tx: &Tx, p: &mut PayoutRow, transfer_id: &str) -> anyhow::Result<()> {
    let (from, to) = (PayoutStatus::Pending, PayoutStatus::InTransit);
    debug_assert!(from.can_move_to(to));
    let now: Option<PayoutStatus> = tx.query_opt(
        "UPDATE payouts SET psp_transfer_id = $2,
                status = CASE WHEN status = $3 THEN $4 ELSE status END, updated_at = $5
         WHERE payout_id = $1 AND (psp_transfer_id IS DISTINCT FROM $2 OR status = $3)
         RETURNING status",
        params![p.payout_id, transfer_id, from, to, crate::db::now()],
        |r| r.get(0),
    )?;
    if let Some(status) = now {
        p.status = status;
        p.psp_transfer_id = Some(transfer_id.to_string());
    }
    Ok(())
}

/// A payout as the core works with it.
pub struct PayoutRow {
    pub payout_id: String,
    pub seller_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub status: PayoutStatus,
    pub destination: String,
    pub psp_transfer_id: Option<String>,
    pub updated_at: String,
}

fn payout_row(r: &Row) -> anyhow::Result<PayoutRow> {
    Ok(PayoutRow {
        payout_id: r.get(0)?,
        seller_id: r.get(1)?,
        amount_minor: r.get(2)?,
        currency: r.get(3)?,
        status: r.get(4)?,
        destination: r.get(5)?,
        psp_transfer_id: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

pub fn load_row(tx: &Tx, payout_id: &str) -> anyhow::Result<Option<PayoutRow>> {
    tx.query_opt(
        "SELECT payout_id, seller_id, amount_minor, currency, status, destination, psp_transfer_id, updated_at
         FROM payouts WHERE payout_id = $1",
        params![payout_id],
        payout_row,
    )
}

/// The payout the PSP's transfer `transfer_id` pays.
pub fn row_by_transfer(tx: &Tx, transfer_id: &str) -> anyhow::Result<Option<PayoutRow>> {
    tx.query_opt(
        "SELECT payout_id, seller_id, amount_minor, currency, status, destination, psp_transfer_id, updated_at
         FROM payouts WHERE psp_transfer_id = $1",
        params![transfer_id],
        payout_row,
    )
}

/// Payouts paid (last changed) at or after `from` and before `before`.
pub fn paid_between(tx: &Tx, from: &str, before: &str) -> anyhow::Result<Vec<PayoutRow>> {
    tx.query_map(
        "SELECT payout_id, seller_id, amount_minor, currency, status, destination, psp_transfer_id, updated_at
         FROM payouts WHERE status = $1 AND updated_at >= $2 AND updated_at < $3",
        params![PayoutStatus::Paid, from, before],
        payout_row,
    )
}

pub fn by_transfer(tx: &Tx, transfer_id: &str) -> anyhow::Result<Option<String>> {
    tx.query_opt("SELECT payout_id FROM payouts WHERE psp_transfer_id = $1", params![transfer_id], |r| r.get(0))
}

/// The status of a payout; None if there is no such payout.
pub fn status(tx: &Tx, payout_id: &str) -> anyhow::Result<Option<PayoutStatus>> {
    tx.query_opt("SELECT status FROM payouts WHERE payout_id = $1", params![payout_id], |r| r.get(0))
}

/// Up to `limit` payouts not final and unchanged since `before`: their
/// transfers are asked about again.
pub fn unfinished_since(tx: &Tx, before: &str, limit: i64) -> anyhow::Result<Vec<String>> {
    tx.query_map(
        "SELECT payout_id FROM payouts WHERE status IN ($1, $2) AND updated_at < $3 LIMIT $4",
        params![PayoutStatus::Pending, PayoutStatus::InTransit, before, limit],
        |r| r.get(0),
    )
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PayoutView {
    pub payout_id: String,
    pub seller_id: String,
    pub amount: String,
    pub currency: String,
    pub status: PayoutStatus,
    pub destination: String,
    pub failure_code: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

fn from_row(r: &Row) -> anyhow::Result<PayoutView> {
    let code: String = r.get(3)?;
    let currency = Currency::parse(&code)?;
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

pub fn load(tx: &Tx, payout_id: &str) -> anyhow::Result<Option<PayoutView>> {
    tx.query_opt(
        "SELECT payout_id, seller_id, amount_minor, currency, status, destination, failure_code, created_at,
                updated_at
         FROM payouts WHERE payout_id = $1",
        params![payout_id],
        from_row,
    )
}

pub struct PayoutFilter {
    pub seller_id: Option<String>,
    pub status: Option<PayoutStatus>,
    pub starting_after: Option<String>,
    pub limit: u32,
}

/// Newest first, by (created_at, payout_id), so the cursor is stable. A
/// cursor that names no payout gives an empty page.
pub fn list(tx: &Tx, f: &PayoutFilter) -> anyhow::Result<(Vec<PayoutView>, bool)> {
    let cursor: Option<(String, String)> = match &f.starting_after {
        None => None,
        Some(id) => {
            let at =
                tx.query_opt("SELECT created_at, payout_id FROM payouts WHERE payout_id = $1", params![id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            let Some(at) = at else { return Ok((Vec::new(), false)) };
            Some(at)
        }
    };
    let (after_at, after_id) = cursor.unzip();
    let mut data = tx.query_map(
        "SELECT payout_id, seller_id, amount_minor, currency, status, destination, failure_code, created_at,
                updated_at
         FROM payouts
         WHERE (CAST($1 AS TEXT) IS NULL OR seller_id = $1) AND (CAST($2 AS TEXT) IS NULL OR status = $2)
           AND (CAST($3 AS TEXT) IS NULL OR created_at < $3 OR (created_at = $3 AND payout_id < $4))
         ORDER BY created_at DESC, payout_id DESC LIMIT $5",
        params![f.seller_id, f.status, after_at, after_id, i64::from(f.limit) + 1],
        from_row,
    )?;
    let has_more = data.len() > f.limit as usize;
    data.truncate(f.limit as usize);
    Ok((data, has_more))
}

/// (seller, currency, available) of every seller with a destination and a
/// positive available balance, the wallets read through the wallet module.
pub fn payable_wallets(tx: &Tx, hold_days: i64) -> anyhow::Result<Vec<(String, String, i64)>> {
    let mut out = Vec::new();
    for (seller, currency) in crate::wallet::positive_wallets(tx)? {
        if !has_destination(tx, &seller)? {
            continue;
        }
        let available = crate::wallet::balances(tx, &seller, currency, hold_days)?.available;
        if available > 0 {
            out.push((seller, currency.code().to_string(), available));
        }
    }
    Ok(out)
}

/// Whether the seller exists and has somewhere to be paid.
fn has_destination(tx: &Tx, seller_id: &str) -> anyhow::Result<bool> {
    let found = tx.query_opt(
        "SELECT 1 FROM sellers WHERE seller_id = $1 AND payout_destination IS NOT NULL",
        params![seller_id],
        |r| r.get::<i64>(0),
    )?;
    Ok(found.is_some())
}
