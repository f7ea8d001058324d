//! `/admin/refunds` and `/admin/payouts`: every refund and payout, newest
//! first, filtered by status, with keyset pagination.

use crate::admin::format;
use crate::admin::views::sellers::{self, PayoutRow};
use crate::db::{Tx, params};
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
    /// The last refund shown, when there are older ones: the next page's cursor.
    pub next_before: Option<String>,
}

/// Refunds newest first: by creation time, then id (ids are random, so
/// the id only orders refunds created in the same millisecond). `before`
/// is the last refund of the previous page; an unknown one leaves nothing.
pub fn refunds(tx: &Tx, status: Option<&str>, before: Option<&str>) -> anyhow::Result<RefundList> {
    let cursor = match before {
        None => None,
        Some(id) => {
            let at: Option<String> =
                tx.query_opt("SELECT created_at FROM refunds WHERE refund_id = $1", params![id], |r| r.get(0))?;
            match at {
                Some(at) => Some((at, id)),
                None => return Ok(RefundList { rows: Vec::new(), next_before: None }),
            }
        }
    };
    let (cursor_at, cursor_id) = cursor.unzip();
    let mut rows = tx.query_map(
        "SELECT r.refund_id, r.payment_order_id, o.checkout_id, o.seller_id, r.amount_minor, r.currency,
                r.status, r.reason, r.failure_code, CASE WHEN k.name IS NULL THEN r.created_by ELSE 'API key ' || k.name END, r.created_at
         FROM refunds r JOIN payment_orders o ON o.payment_order_id = r.payment_order_id
         LEFT JOIN api_keys k ON k.id = r.created_by
         WHERE (CAST($1 AS TEXT) IS NULL OR r.status = $1)
           AND (CAST($2 AS TEXT) IS NULL OR r.created_at < $2 OR (r.created_at = $2 AND r.refund_id < $3))
         ORDER BY r.created_at DESC, r.refund_id DESC LIMIT $4",
        params![status, cursor_at, cursor_id, PAGE_SIZE + 1],
        |r| {
            Ok(RefundListRow {
                refund_id: r.get(0)?,
                payment_order_id: r.get(1)?,
                checkout_id: r.get(2)?,
                seller_id: r.get(3)?,
                amount: format::money(r.get(4)?, &r.get::<String>(5)?),
                status: r.get(6)?,
                reason: r.get::<Option<String>>(7)?.unwrap_or_default(),
                failure_code: r.get::<Option<String>>(8)?.unwrap_or_default(),
                created_by: r.get(9)?,
                created_at: format::time(&r.get::<String>(10)?),
            })
        },
    )?;
    let has_more = rows.len() > PAGE_SIZE as usize;
    rows.truncate(PAGE_SIZE as usize);
    let next_before = if has_more { rows.last().map(|r| r.refund_id.clone()) } else { None };
    Ok(RefundList { rows, next_before })
}

pub struct PayoutList {
    pub rows: Vec<PayoutRow>,
    pub next_after: Option<String>,
}

/// Through the core list of payouts (`payouts::store::list`).
pub fn payouts(tx: &Tx, status: Option<&str>, after: Option<String>) -> anyhow::Result<PayoutList> {
    let filter = PayoutFilter {
        seller_id: None,
        status: status.and_then(crate::payouts::PayoutStatus::parse),
        starting_after: after,
        limit: PAGE_SIZE,
    };
    let (rows, more) = sellers::payout_rows(tx, &filter)?;
    let next_after = if more { rows.last().map(|r| r.payout_id.clone()) } else { None };
    Ok(PayoutList { rows, next_after })
}
