//! `/admin/refunds` and `/admin/payouts`: every refund and payout, newest
//! first, filtered by status, with keyset pagination.

use rusqlite::{Connection, params};

use crate::admin::format;
use crate::admin::views::sellers::{self, PayoutRow};
use crate::payouts::store::PayoutFilter;

pub const PAGE_SIZE: u32 = 50;
pub const REFUND_STATUSES: [&str; 3] = ["PENDING", "SUCCEEDED", "FAILED"];
pub const PAYOUT_STATUSES: [&str; 4] = ["PENDING", "IN_TRANSIT", "PAID", "FAILED"];

#[derive(Debug, Clone)]
pub struct RefundListRow {
    pub refund_id: String,
    pub payment_order_id: String,
    pub checkout_id: String,
    pub seller_id: String,
    pub amount: String,
    pub status: String,
    pub reason: String,
    pub failure_code: String,
    pub created_by: String,
    pub created_at: String,
}

pub struct RefundList {
    pub rows: Vec<RefundListRow>,
    pub next_before: Option<i64>,
}

pub fn refunds(conn: &Connection, status: Option<&str>, before: Option<i64>) -> anyhow::Result<RefundList> {
    let mut st = conn.prepare_cached(
        "SELECT r.rowid, r.refund_id, r.payment_order_id, o.checkout_id, o.seller_id, r.amount_minor, r.currency,
                r.status, r.reason, r.failure_code, r.created_by, r.created_at
         FROM refunds r JOIN payment_orders o ON o.payment_order_id = r.payment_order_id
         WHERE (?1 IS NULL OR r.status = ?1) AND (?2 IS NULL OR r.rowid < ?2)
         ORDER BY r.rowid DESC LIMIT ?3",
    )?;
    let mut rows = st
        .query_map(params![status, before, PAGE_SIZE + 1], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                RefundListRow {
                    refund_id: r.get(1)?,
                    payment_order_id: r.get(2)?,
                    checkout_id: r.get(3)?,
                    seller_id: r.get(4)?,
                    amount: format::money(r.get(5)?, &r.get::<_, String>(6)?),
                    status: r.get(7)?,
                    reason: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
                    failure_code: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
                    created_by: r.get(10)?,
                    created_at: format::time(&r.get::<_, String>(11)?),
                },
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let has_more = rows.len() > PAGE_SIZE as usize;
    rows.truncate(PAGE_SIZE as usize);
    let next_before = if has_more { rows.last().map(|(id, _)| *id) } else { None };
    Ok(RefundList { rows: rows.into_iter().map(|(_, r)| r).collect(), next_before })
}

pub struct PayoutList {
    pub rows: Vec<PayoutRow>,
    pub next_after: Option<String>,
}

/// Through the core list of payouts (`payouts::store::list`).
pub fn payouts(conn: &Connection, status: Option<&str>, after: Option<String>) -> anyhow::Result<PayoutList> {
    // seam: transitional
    let filter = PayoutFilter {
        seller_id: None,
        status: status.and_then(crate::payouts::PayoutStatus::parse),
        starting_after: after,
        limit: PAGE_SIZE,
    };
    let (rows, more) = sellers::payout_rows(conn, &filter)?;
    let next_after = if more { rows.last().map(|r| r.payout_id.clone()) } else { None };
    Ok(PayoutList { rows, next_after })
}
