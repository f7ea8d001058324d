//! `/admin/payments`: search and filter payment orders (newest first, keyset
//! pagination on the rowid, every filter walking an index in that order),
//! and one payment's page: its orders, their state history, PSP calls,
//! webhooks received, ledger transactions and refunds.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::admin::actions::{self, ActionView};
use crate::admin::format;
use crate::admin::views::{self, JournalRow};
use crate::payments::model::{OrderStatus, PaymentOrderId};
use crate::payments::store;

pub const PAGE_SIZE: u32 = 50;

/// What the search box holds, parsed: its kind decides which index answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    /// A UUID: an order id or a checkout id.
    Id(String),
    /// An email: the buyer's.
    BuyerEmail(String),
    /// Anything else: a seller id or a buyer id.
    Party(String),
}

impl Search {
    pub fn parse(q: &str) -> Option<Search> {
        let q = q.trim();
        if q.is_empty() {
            return None;
        }
        if let Some(id) = PaymentOrderId::parse(q) {
            return Some(Search::Id(id.as_str().to_string()));
        }
        if q.contains('@') {
            return Some(Search::BuyerEmail(q.to_lowercase()));
        }
        Some(Search::Party(q.chars().take(200).collect()))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub search: Option<Search>,
    pub status: Option<OrderStatus>,
    /// Show orders older than this rowid (the next page).
    pub before: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone)]
pub struct PaymentRow {
    pub payment_order_id: String,
    pub checkout_id: String,
    pub seller_id: String,
    pub buyer: String,
    pub amount: String,
    pub refunded: String,
    pub status: String,
    pub failure_code: String,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct PaymentList {
    pub rows: Vec<PaymentRow>,
    /// The cursor of the next (older) page, if there is one.
    pub next_before: Option<i64>,
}

/// Which condition a seller-or-buyer search needs: whichever exists, so
/// that one index answers in order; both only when the id is both.
fn party_condition(conn: &Connection, q: &str) -> anyhow::Result<&'static str> {
    let exists = |sql: &str| -> anyhow::Result<bool> { Ok(conn.prepare_cached(sql)?.query_row([q], |r| r.get(0))?) };
    let seller = exists("SELECT EXISTS (SELECT 1 FROM payment_orders WHERE seller_id = ?1)")?;
    let buyer = exists("SELECT EXISTS (SELECT 1 FROM payment_orders WHERE buyer_account = ?1)")?;
    Ok(match (seller, buyer) {
        (true, true) => "(o.seller_id = ? OR o.buyer_account = ?)",
        (false, true) => "o.buyer_account = ?",
        _ => "o.seller_id = ?",
    })
}

pub fn list(conn: &Connection, f: &Filter) -> anyhow::Result<PaymentList> {
    let mut conditions: Vec<String> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    match &f.search {
        None => {}
        Some(Search::Id(id)) => {
            conditions.push("(o.payment_order_id = ? OR o.checkout_id = ?)".into());
            args.extend([Value::Text(id.clone()), Value::Text(id.clone())]);
        }
        Some(Search::BuyerEmail(email)) => {
            conditions.push(
                "o.checkout_id IN (SELECT checkout_id FROM payment_events
                                   WHERE lower(json_extract(buyer_info, '$.email')) = ?)"
                    .into(),
            );
            args.push(Value::Text(email.clone()));
        }
        Some(Search::Party(q)) => {
            let condition = party_condition(conn, q)?;
            args.extend(std::iter::repeat_n(Value::Text(q.clone()), condition.matches('?').count()));
            conditions.push(condition.into());
        }
    }
    if let Some(status) = f.status {
        conditions.push("o.payment_order_status = ?".into());
        args.push(Value::Text(status.as_str().into()));
    }
    if let Some(before) = f.before {
        conditions.push("o.rowid < ?".into());
        args.push(Value::Integer(before));
    }
    let limit = f.limit.clamp(1, 500);
    args.push(Value::Integer(i64::from(limit) + 1));
    let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    let sql = format!(
        "SELECT o.rowid, o.payment_order_id, o.checkout_id, o.seller_id, o.buyer_account,
                json_extract(e.buyer_info, '$.email'), o.amount_minor, o.refunded_minor, o.currency,
                o.payment_order_status, o.failure_code, o.created_at
         FROM payment_orders o JOIN payment_events e ON e.checkout_id = o.checkout_id
         {filter} ORDER BY o.rowid DESC LIMIT ?"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let mut rows = st
        .query_map(params_from_iter(args), |r| {
            let code: String = r.get(8)?;
            let refunded: i64 = r.get(7)?;
            let email: Option<String> = r.get(5)?;
            let buyer: String = r.get(4)?;
            Ok((
                r.get::<_, i64>(0)?,
                PaymentRow {
                    payment_order_id: r.get(1)?,
                    checkout_id: r.get(2)?,
                    seller_id: r.get(3)?,
                    buyer: email.map_or(buyer.clone(), |e| format!("{buyer} · {e}")),
                    amount: format::money(r.get(6)?, &code),
                    refunded: if refunded > 0 { format::money(refunded, &code) } else { String::new() },
                    status: r.get(9)?,
                    failure_code: r.get::<_, Option<String>>(10)?.unwrap_or_default(),
                    created_at: format::time(&r.get::<_, String>(11)?),
                },
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_before = if has_more { rows.last().map(|(rowid, _)| *rowid) } else { None };
    Ok(PaymentList { rows: rows.into_iter().map(|(_, r)| r).collect(), next_before })
}

#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub from: String,
    pub to: String,
    pub reason: String,
    pub at: String,
}

#[derive(Debug, Clone)]
pub struct RefundRow {
    pub refund_id: String,
    pub amount: String,
    pub status: String,
    pub reason: String,
    pub failure_code: String,
    pub created_by: String,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct OrderDetail {
    pub payment_order_id: String,
    pub seller_id: String,
    pub amount: String,
    pub currency: String,
    pub refunded: String,
    pub status: String,
    pub failure_code: String,
    pub created_at: String,
    pub updated_at: String,
    pub psp_payment_intent_id: String,
    /// What may still be refunded, as a form field wants it ("15.00"); None: nothing.
    pub refundable: Option<String>,
    pub refundable_label: String,
    pub history: Vec<HistoryRow>,
    pub refunds: Vec<RefundRow>,
}

#[derive(Debug, Clone)]
pub struct PspCallRow {
    pub at: String,
    pub subject_id: String,
    pub call: String,
    /// The `Stripe-Version` it carried ("" for calls logged before it was recorded).
    pub api_version: String,
    pub http_status: String,
    pub outcome: String,
    pub duration_ms: i64,
}

#[derive(Debug, Clone)]
pub struct PspEventRow {
    pub event_id: String,
    pub event_type: String,
    pub object_id: String,
    pub deliveries: i64,
    pub received_at: String,
    pub processed: String,
}

#[derive(Debug, Clone)]
pub struct PaymentDetail {
    pub checkout_id: String,
    pub payment_method: String,
    pub buyer_id: String,
    pub buyer_email: String,
    pub is_payment_done: bool,
    pub psp_session_id: String,
    pub created_at: String,
    pub total: String,
    pub orders: Vec<OrderDetail>,
    pub psp_calls: Vec<PspCallRow>,
    pub webhooks: Vec<PspEventRow>,
    pub ledger: Vec<JournalRow>,
    pub actions: Vec<ActionView>,
}

/// The checkout an id names: a checkout id itself, or one of its orders' ids.
pub fn checkout_of(conn: &Connection, id: &str) -> anyhow::Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT checkout_id FROM payment_events WHERE checkout_id = ?1
             UNION ALL SELECT checkout_id FROM payment_orders WHERE payment_order_id = ?1 LIMIT 1",
        )?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

pub fn detail(conn: &Connection, checkout_id: &str) -> anyhow::Result<Option<PaymentDetail>> {
    // seam: transitional
    let Some(checkout) = store::checkout_view(&crate::db::Tx::sqlite(conn), checkout_id)? else { return Ok(None) };
    let mut orders = Vec::new();
    let mut refund_ids = Vec::new();
    for o in &checkout.orders {
        let detail = order_detail(conn, o)?;
        refund_ids.extend(detail.refunds.iter().map(|r| r.refund_id.clone()));
        orders.push(detail);
    }
    let order_ids: Vec<String> = orders.iter().map(|o| o.payment_order_id.clone()).collect();
    let mut subjects = vec![checkout_id.to_string()];
    subjects.extend(order_ids.iter().cloned());
    subjects.extend(refund_ids.iter().cloned());
    let mut psp_objects: Vec<String> = checkout.psp_session_id.iter().cloned().collect();
    psp_objects.extend(orders.iter().map(|o| o.psp_payment_intent_id.clone()).filter(|s| !s.is_empty()));
    psp_objects.extend(psp_refund_ids(conn, &refund_ids)?);
    // Calls made on a PSP event's behalf are recorded under the PSP's id.
    subjects.extend(psp_objects.iter().cloned());
    let currency = checkout.orders.first().map(|o| o.currency.clone()).unwrap_or_default();
    let total: i64 = checkout.orders.iter().map(amount_minor).sum::<anyhow::Result<i64>>()?; // seam: transitional
    Ok(Some(PaymentDetail {
        checkout_id: checkout.checkout_id.clone(),
        payment_method: checkout.payment_method.clone(),
        buyer_id: checkout.buyer["id"].as_str().unwrap_or_default().to_string(),
        buyer_email: checkout.buyer["email"].as_str().unwrap_or_default().to_string(),
        is_payment_done: checkout.is_payment_done,
        psp_session_id: checkout.psp_session_id.clone().unwrap_or_default(),
        created_at: format::time(&checkout.created_at),
        total: format::money(total, &currency),
        orders,
        psp_calls: psp_calls(conn, &subjects)?,
        webhooks: psp_events(conn, &psp_objects)?,
        ledger: ledger_of(conn, &order_ids, &refund_ids)?,
        actions: actions::for_subjects(conn, &order_ids, 20)?,
    }))
}

fn order_detail(conn: &Connection, o: &store::OrderView) -> anyhow::Result<OrderDetail> {
    let (refunded_minor, intent): (i64, Option<String>) = conn
        .prepare_cached("SELECT refunded_minor, psp_payment_intent_id FROM payment_orders WHERE payment_order_id = ?1")?
        .query_row([&o.payment_order_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let left = amount_minor(o)? - refunded_minor; // seam: transitional
    let refundable =
        (o.status == OrderStatus::Success.as_str() && left > 0).then(|| format::plain_amount(left, &o.currency));
    let mut st = conn.prepare_cached(
        "SELECT from_status, to_status, reason, at FROM payment_order_history WHERE payment_order_id = ?1 ORDER BY id",
    )?;
    let history = st
        .query_map([&o.payment_order_id], |r| {
            Ok(HistoryRow {
                from: r.get::<_, Option<String>>(0)?.unwrap_or_else(|| "—".into()),
                to: r.get(1)?,
                reason: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                at: format::time(&r.get::<_, String>(3)?),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(OrderDetail {
        payment_order_id: o.payment_order_id.clone(),
        seller_id: o.seller_id.clone(),
        amount: format::money(amount_minor(o)?, &o.currency), // seam: transitional
        currency: o.currency.clone(),
        refunded: format::money(refunded_minor, &o.currency),
        status: o.status.clone(),
        failure_code: o.failure_code.clone().unwrap_or_default(),
        created_at: format::time(&o.created_at),
        updated_at: format::time(&o.updated_at),
        psp_payment_intent_id: intent.unwrap_or_default(),
        refundable_label: format::money(left, &o.currency),
        refundable,
        history,
        refunds: refunds_of(conn, &o.payment_order_id)?,
    })
}

/// seam: transitional: an order view's amount in minor units, until this view reads its own rows.
fn amount_minor(o: &store::OrderView) -> anyhow::Result<i64> {
    Ok(crate::money::parse_minor(&o.amount, crate::money::Currency::parse(&o.currency)?)?)
}

fn refunds_of(conn: &Connection, payment_order_id: &str) -> anyhow::Result<Vec<RefundRow>> {
    let mut st = conn.prepare_cached(
        "SELECT refund_id, amount_minor, currency, status, reason, failure_code, created_by, created_at
         FROM refunds WHERE payment_order_id = ?1 ORDER BY created_at, refund_id",
    )?;
    let rows = st
        .query_map([payment_order_id], |r| {
            Ok(RefundRow {
                refund_id: r.get(0)?,
                amount: format::money(r.get(1)?, &r.get::<_, String>(2)?),
                status: r.get(3)?,
                reason: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                failure_code: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                created_by: r.get(6)?,
                created_at: format::time(&r.get::<_, String>(7)?),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn psp_refund_ids(conn: &Connection, refund_ids: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for id in refund_ids {
        let psp: Option<String> = conn
            .prepare_cached("SELECT psp_refund_id FROM refunds WHERE refund_id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?
            .flatten();
        out.extend(psp);
    }
    Ok(out)
}

fn psp_calls(conn: &Connection, subjects: &[String]) -> anyhow::Result<Vec<PspCallRow>> {
    let mut rows = Vec::new();
    for subject in subjects {
        let mut st = conn.prepare_cached(
            "SELECT id, at, subject_id, method, path, http_status, outcome, duration_ms, api_version FROM psp_calls
             WHERE subject_id = ?1 ORDER BY id LIMIT 200",
        )?;
        let found = st.query_map([subject], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                PspCallRow {
                    at: format::time(&r.get::<_, String>(1)?),
                    subject_id: r.get(2)?,
                    call: format!("{} {}", r.get::<_, String>(3)?, r.get::<_, String>(4)?),
                    http_status: r.get::<_, Option<i64>>(5)?.map_or("no answer".into(), |s| s.to_string()),
                    outcome: r.get(6)?,
                    duration_ms: r.get(7)?,
                    api_version: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
                },
            ))
        })?;
        rows.extend(found.collect::<Result<Vec<_>, _>>()?);
    }
    rows.sort_by_key(|(id, _)| *id);
    Ok(rows.into_iter().map(|(_, r)| r).collect())
}

fn psp_events(conn: &Connection, objects: &[String]) -> anyhow::Result<Vec<PspEventRow>> {
    let mut rows = Vec::new();
    for object in objects {
        let mut st = conn.prepare_cached(
            "SELECT event_id, event_type, object_id, deliveries, received_at, processed_at, last_error
             FROM psp_events WHERE object_id = ?1 LIMIT 100",
        )?;
        let found = st.query_map([object], |r| {
            let received: String = r.get(4)?;
            let processed: Option<String> = r.get(5)?;
            let error: Option<String> = r.get(6)?;
            Ok((
                received.clone(),
                PspEventRow {
                    event_id: r.get(0)?,
                    event_type: r.get(1)?,
                    object_id: r.get(2)?,
                    deliveries: r.get(3)?,
                    received_at: format::time(&received),
                    processed: match (processed, error) {
                        (_, Some(e)) => format!("not applied: {e}"),
                        (Some(at), None) => format::time(&at),
                        (None, None) => "not yet".into(),
                    },
                },
            ))
        })?;
        rows.extend(found.collect::<Result<Vec<_>, _>>()?);
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(rows.into_iter().map(|(_, r)| r).collect())
}

fn ledger_of(conn: &Connection, order_ids: &[String], refund_ids: &[String]) -> anyhow::Result<Vec<JournalRow>> {
    let sources = order_ids
        .iter()
        .map(|id| ("payment_order", id))
        .chain(refund_ids.iter().flat_map(|id| [("refund", id), ("refund_reversal", id)]));
    let mut ids = Vec::new();
    for (source_type, source_id) in sources {
        let id: Option<i64> = conn
            .prepare_cached("SELECT id FROM ledger_transactions WHERE source_type = ?1 AND source_id = ?2")?
            .query_row(params![source_type, source_id], |r| r.get(0))
            .optional()?;
        ids.extend(id);
    }
    ids.sort_unstable();
    let mut rows = Vec::new();
    for id in ids {
        rows.extend(views::journal_row(conn, id)?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_box_is_read_by_its_shape() {
        let id = "1F0C7A0E-3A57-4B5B-9A4C-2B8E0F0F6D11";
        assert_eq!(Search::parse(id), Some(Search::Id(id.to_lowercase())));
        assert_eq!(Search::parse(" Kim@Example.com "), Some(Search::BuyerEmail("kim@example.com".into())));
        assert_eq!(Search::parse("seller_a"), Some(Search::Party("seller_a".into())));
        assert_eq!(Search::parse("  "), None);
    }
}
