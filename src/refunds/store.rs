//! SQL of refunds: the only code that writes `refunds`.

use serde::Serialize;

use crate::db::{Row, Tx, params};
use crate::money::{Currency, format_minor};
use crate::refunds::{NewRefund, RefundStatus};

/// What a refund needs to know of its payment order.
pub struct RefundableOrder {
    pub payment_order_id: String,
    pub seller_id: String,
    pub status: String,
    pub amount_minor: i64,
    pub currency: String,
    pub seller_amount_minor: i64,
    pub refunded_minor: i64,
}

/// The order a refund is asked for, read through the payments module (its
/// seller's share and refunded total: the split and the guard need them).
pub fn order_for_refund(tx: &Tx, payment_order_id: &str) -> anyhow::Result<Option<RefundableOrder>> {
    let Some(found) = crate::payments::store::refundable_order(tx, payment_order_id)? else { return Ok(None) };
    let order = found.order;
    Ok(Some(RefundableOrder {
        payment_order_id: order.payment_order_id.to_string(),
        seller_id: order.seller_id.to_string(),
        status: order.status.as_str().to_string(),
        // Refunds come out of what was charged (less than the amount when a manual capture took less).
        amount_minor: order.charged_minor(),
        currency: order.amount.currency().code().to_string(),
        seller_amount_minor: found.seller_amount_minor,
        refunded_minor: order.refunded_minor,
    }))
}

/// Stores a new refund, PENDING.
pub fn insert(
    tx: &Tx,
    refund_id: &str,
    order: &RefundableOrder,
    amount_minor: i64,
    (seller_part, commission_part): (i64, i64),
    new: &NewRefund,
) -> anyhow::Result<()> {
    tx.execute(
        "INSERT INTO refunds (refund_id, payment_order_id, amount_minor, currency, status, seller_part_minor,
                              commission_part_minor, reason, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        params![
            refund_id,
            order.payment_order_id,
            amount_minor,
            order.currency,
            RefundStatus::Pending,
            seller_part,
            commission_part,
            new.reason,
            new.created_by,
            crate::db::now()
        ],
    )?;
    Ok(())
}

/// `from` → `to`, guarded in SQL so that two racing answers cannot both
/// move it. Returns false if the refund was not in `from`.
pub fn transition(
    tx: &Tx,
    refund_id: &str,
    from: RefundStatus,
    to: RefundStatus,
    failure_code: Option<&str>,
) -> anyhow::Result<bool> {
    anyhow::ensure!(from.can_move_to(to), "illegal refund transition {from} -> {to}");
    let n = tx.execute(
        "UPDATE refunds SET status = $3, failure_code = $4, updated_at = $5 WHERE refund_id = $1 AND status = $2",
        params![refund_id, from, to, failure_code, crate::db::now()],
    )?;
    Ok(n == 1)
}

/// Records the PSP's id of the refund (once it is known, it stays).
pub fn set_psp_id(tx: &Tx, refund_id: &str, psp_refund_id: &str) -> anyhow::Result<()> {
    tx.execute(
        "UPDATE refunds SET psp_refund_id = $2 WHERE refund_id = $1 AND psp_refund_id IS DISTINCT FROM $2",
        params![refund_id, psp_refund_id],
    )?;
    Ok(())
}

/// A refund as the core works with it.
pub struct RefundRow {
    pub refund_id: String,
    pub payment_order_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub status: RefundStatus,
    pub seller_part_minor: i64,
    pub commission_part_minor: i64,
    pub psp_refund_id: Option<String>,
    pub updated_at: String,
}

fn refund_row(r: &Row) -> anyhow::Result<RefundRow> {
    Ok(RefundRow {
        refund_id: r.get(0)?,
        payment_order_id: r.get(1)?,
        amount_minor: r.get(2)?,
        currency: r.get(3)?,
        status: r.get(4)?,
        seller_part_minor: r.get(5)?,
        commission_part_minor: r.get(6)?,
        psp_refund_id: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

pub fn load_row(tx: &Tx, refund_id: &str) -> anyhow::Result<Option<RefundRow>> {
    tx.query_opt(
        "SELECT refund_id, payment_order_id, amount_minor, currency, status, seller_part_minor, commission_part_minor,
                psp_refund_id, updated_at
         FROM refunds WHERE refund_id = $1",
        params![refund_id],
        refund_row,
    )
}

/// The refund the PSP knows by `psp_refund_id`.
pub fn row_by_psp_id(tx: &Tx, psp_refund_id: &str) -> anyhow::Result<Option<RefundRow>> {
    tx.query_opt(
        "SELECT refund_id, payment_order_id, amount_minor, currency, status, seller_part_minor, commission_part_minor,
                psp_refund_id, updated_at
         FROM refunds WHERE psp_refund_id = $1",
        params![psp_refund_id],
        refund_row,
    )
}

/// Refunds that succeeded (were last changed) at or after `from` and before `before`.
pub fn succeeded_between(tx: &Tx, from: &str, before: &str) -> anyhow::Result<Vec<RefundRow>> {
    tx.query_map(
        "SELECT refund_id, payment_order_id, amount_minor, currency, status, seller_part_minor, commission_part_minor,
                psp_refund_id, updated_at
         FROM refunds WHERE status = $1 AND updated_at >= $2 AND updated_at < $3",
        params![RefundStatus::Succeeded, from, before],
        refund_row,
    )
}

/// The status of a refund; None if there is no such refund.
pub fn status(tx: &Tx, refund_id: &str) -> anyhow::Result<Option<RefundStatus>> {
    tx.query_opt("SELECT status FROM refunds WHERE refund_id = $1", params![refund_id], |r| r.get(0))
}

/// Up to `limit` refunds still PENDING and unchanged since `before`: the
/// PSP is asked about them again.
pub fn pending_since(tx: &Tx, before: &str, limit: i64) -> anyhow::Result<Vec<String>> {
    tx.query_map(
        "SELECT refund_id FROM refunds WHERE status = $1 AND updated_at < $2 LIMIT $3",
        params![RefundStatus::Pending, before, limit],
        |r| r.get(0),
    )
}

/// A refund as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RefundView {
    pub refund_id: String,
    pub payment_order_id: String,
    pub amount: String,
    pub currency: String,
    pub status: RefundStatus,
    pub reason: Option<String>,
    pub failure_code: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

fn from_row(r: &Row) -> anyhow::Result<RefundView> {
    let code: String = r.get(3)?;
    let currency = Currency::parse(&code)?;
    Ok(RefundView {
        refund_id: r.get(0)?,
        payment_order_id: r.get(1)?,
        amount: format_minor(r.get(2)?, currency),
        currency: code,
        status: r.get(4)?,
        reason: r.get(5)?,
        failure_code: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

pub fn load(tx: &Tx, refund_id: &str) -> anyhow::Result<Option<RefundView>> {
    tx.query_opt(
        "SELECT refund_id, payment_order_id, amount_minor, currency, status, reason, failure_code, created_at,
                updated_at
         FROM refunds WHERE refund_id = $1",
        params![refund_id],
        from_row,
    )
}

pub fn by_psp_id(tx: &Tx, psp_refund_id: &str) -> anyhow::Result<Option<String>> {
    tx.query_opt("SELECT refund_id FROM refunds WHERE psp_refund_id = $1", params![psp_refund_id], |r| r.get(0))
}

pub fn for_order(tx: &Tx, payment_order_id: &str) -> anyhow::Result<Vec<RefundView>> {
    tx.query_map(
        "SELECT refund_id, payment_order_id, amount_minor, currency, status, reason, failure_code, created_at,
                updated_at
         FROM refunds WHERE payment_order_id = $1 ORDER BY created_at, refund_id",
        params![payment_order_id],
        from_row,
    )
}
