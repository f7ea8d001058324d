//! SQL of refunds.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde::Serialize;

use crate::money::{Currency, format_minor};
use crate::refunds::NewRefund;

pub struct RefundableOrder {
    pub payment_order_id: String,
    pub seller_id: String,
    pub status: String,
    pub amount_minor: i64,
    pub currency: String,
    pub seller_amount_minor: i64,
    pub refunded_minor: i64,
}

pub fn order_for_refund(conn: &Connection, payment_order_id: &str) -> anyhow::Result<Option<RefundableOrder>> {
    Ok(conn
        .prepare_cached(
            "SELECT payment_order_id, seller_id, payment_order_status, amount_minor, currency,
                    COALESCE(seller_amount_minor, amount_minor), refunded_minor
             FROM payment_orders WHERE payment_order_id = ?1",
        )?
        .query_row([payment_order_id], |r| {
            Ok(RefundableOrder {
                payment_order_id: r.get(0)?,
                seller_id: r.get(1)?,
                status: r.get(2)?,
                amount_minor: r.get(3)?,
                currency: r.get(4)?,
                seller_amount_minor: r.get(5)?,
                refunded_minor: r.get(6)?,
            })
        })
        .optional()?)
}

pub fn insert(
    tx: &Transaction,
    refund_id: &str,
    order: &RefundableOrder,
    amount_minor: i64,
    (seller_part, commission_part): (i64, i64),
    new: &NewRefund,
) -> anyhow::Result<()> {
    tx.prepare_cached(
        "INSERT INTO refunds (refund_id, payment_order_id, amount_minor, currency, status, seller_part_minor,
                              commission_part_minor, reason, created_by, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'PENDING', ?5, ?6, ?7, ?8, ?9, ?9)",
    )?
    .execute(params![
        refund_id,
        order.payment_order_id,
        amount_minor,
        order.currency,
        seller_part,
        commission_part,
        new.reason,
        new.created_by,
        crate::db::now()
    ])?;
    Ok(())
}

/// Adds to the order's refunded total, never past its amount (the guard
/// that holds under concurrent refunds). Returns false if it would.
pub fn reserve(tx: &Transaction, payment_order_id: &str, amount_minor: i64) -> anyhow::Result<bool> {
    let n = tx
        .prepare_cached(
            "UPDATE payment_orders SET refunded_minor = refunded_minor + ?2, updated_at = ?3
             WHERE payment_order_id = ?1 AND refunded_minor + ?2 <= amount_minor",
        )?
        .execute(params![payment_order_id, amount_minor, crate::db::now()])?;
    Ok(n == 1)
}

/// Gives a failed refund's amount back to the order's refundable rest.
pub fn release(tx: &Transaction, payment_order_id: &str, amount_minor: i64) -> anyhow::Result<()> {
    let n = tx
        .prepare_cached(
            "UPDATE payment_orders SET refunded_minor = refunded_minor - ?2, updated_at = ?3
             WHERE payment_order_id = ?1 AND refunded_minor >= ?2",
        )?
        .execute(params![payment_order_id, amount_minor, crate::db::now()])?;
    anyhow::ensure!(n == 1, "order {payment_order_id} has less refunded than the failed refund's {amount_minor}");
    Ok(())
}

/// PENDING → SUCCEEDED | FAILED, guarded. Returns false if not PENDING.
pub fn transition(tx: &Transaction, refund_id: &str, to: &str, failure_code: Option<&str>) -> anyhow::Result<bool> {
    let n = tx
        .prepare_cached(
            "UPDATE refunds SET status = ?2, failure_code = ?3, updated_at = ?4 WHERE refund_id = ?1 AND status = 'PENDING'",
        )?
        .execute(params![refund_id, to, failure_code, crate::db::now()])?;
    Ok(n == 1)
}

pub fn set_psp_id(tx: &Transaction, refund_id: &str, psp_refund_id: &str) -> anyhow::Result<()> {
    tx.prepare_cached("UPDATE refunds SET psp_refund_id = ?2 WHERE refund_id = ?1 AND psp_refund_id IS NOT ?2")?
        .execute(params![refund_id, psp_refund_id])?;
    Ok(())
}

pub struct Parts {
    pub seller_id: String,
    pub seller_part: i64,
    pub commission_part: i64,
}

pub fn parts(conn: &Connection, refund_id: &str) -> anyhow::Result<Parts> {
    Ok(conn
        .prepare_cached(
            "SELECT o.seller_id, r.seller_part_minor, r.commission_part_minor
             FROM refunds r JOIN payment_orders o ON o.payment_order_id = r.payment_order_id WHERE r.refund_id = ?1",
        )?
        .query_row([refund_id], |r| {
            Ok(Parts { seller_id: r.get(0)?, seller_part: r.get(1)?, commission_part: r.get(2)? })
        })?)
}

pub struct Submission {
    pub status: String,
    pub payment_order_id: String,
    pub amount_minor: i64,
    pub psp_refund_id: Option<String>,
    pub payment_intent: Option<String>,
}

pub fn submission(conn: &Connection, refund_id: &str) -> anyhow::Result<Option<Submission>> {
    Ok(conn
        .prepare_cached(
            "SELECT r.status, r.payment_order_id, r.amount_minor, r.psp_refund_id, o.psp_payment_intent_id
             FROM refunds r JOIN payment_orders o ON o.payment_order_id = r.payment_order_id WHERE r.refund_id = ?1",
        )?
        .query_row([refund_id], |r| {
            Ok(Submission {
                status: r.get(0)?,
                payment_order_id: r.get(1)?,
                amount_minor: r.get(2)?,
                psp_refund_id: r.get(3)?,
                payment_intent: r.get(4)?,
            })
        })
        .optional()?)
}

/// A refund as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RefundView {
    pub refund_id: String,
    pub payment_order_id: String,
    pub amount: String,
    pub currency: String,
    pub status: String,
    pub reason: Option<String>,
    pub failure_code: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str =
    "refund_id, payment_order_id, amount_minor, currency, status, reason, failure_code, created_at, updated_at";

fn from_row(r: &Row) -> rusqlite::Result<RefundView> {
    let code: String = r.get(3)?;
    let currency = Currency::parse(&code)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into()))?;
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

pub fn load(conn: &Connection, refund_id: &str) -> anyhow::Result<Option<RefundView>> {
    let sql = format!("SELECT {COLUMNS} FROM refunds WHERE refund_id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([refund_id], from_row).optional()?)
}

pub fn by_psp_id(conn: &Connection, psp_refund_id: &str) -> anyhow::Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT refund_id FROM refunds WHERE psp_refund_id = ?1")?
        .query_row([psp_refund_id], |r| r.get(0))
        .optional()?)
}

pub fn for_order(conn: &Connection, payment_order_id: &str) -> anyhow::Result<Vec<RefundView>> {
    let sql = format!("SELECT {COLUMNS} FROM refunds WHERE payment_order_id = ?1 ORDER BY created_at, refund_id");
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map([payment_order_id], from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
