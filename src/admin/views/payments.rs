//! `/admin/payments`: search and filter payment orders (newest first, keyset
//! pagination on the creation time and the order id, each filter answered
//! by an index), and one payment's page: its orders, their state history,
//! what a manual capture may take, PSP calls, webhooks received, ledger
//! transactions, refunds and disputes.

use crate::admin::actions::{self, ActionView};
use crate::admin::format;
use crate::admin::views::disputes::{self, DisputeItem, Scope};
use crate::admin::views::{self, JournalRow};
use crate::db::{ToSql, Tx, Value, params};
use crate::payments::model::{CaptureMethod, Checkout, Order, OrderStatus, PaymentOrderId};
use crate::payments::store;

pub const PAGE_SIZE: u32 = 50;

/// What the search box holds, parsed: its kind decides which index answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    /// A UUID: an order id or a checkout id.
    Id(String),
    /// An email: the buyer's.
    BuyerEmail(String),
    /// Anything else: a seller id, a buyer id, a metadata value, or words
    /// of a description.
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
    /// Show orders older than this one, by its id (the next page).
    pub before: Option<String>,
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
    /// The cursor of the next (older) page, if there is one: the last order shown.
    pub next_before: Option<String>,
}

/// Which condition a free-text search needs: the seller, buyer or
/// metadata value it names, whichever exists (so that an index answers);
/// when none does, orders whose description (or their checkout's) holds
/// it. `$p` is the parameter holding the search; when the condition is on
/// descriptions (the bool), it holds the search's LIKE pattern instead.
fn party_condition(tx: &Tx, q: &str, p: usize) -> anyhow::Result<(String, bool)> {
    let exists = |sql: &str| -> anyhow::Result<bool> { Ok(tx.query_opt(sql, params![q], |_| Ok(()))?.is_some()) };
    let mut found = Vec::new();
    if exists("SELECT 1 FROM payment_orders WHERE seller_id = $1 LIMIT 1")? {
        found.push(format!("o.seller_id = ${p}"));
    }
    if exists("SELECT 1 FROM payment_orders WHERE buyer_account = $1 LIMIT 1")? {
        found.push(format!("o.buyer_account = ${p}"));
    }
    if store::metadata_value_exists(tx, q)? {
        found.push(format!(
            "o.payment_order_id IN (SELECT payment_order_id FROM payment_order_metadata WHERE value = ${p})"
        ));
    }
    let by_description = found.is_empty();
    if by_description {
        let like = p;
        found.push(format!(
            "(LOWER(COALESCE(o.description, '')) LIKE ${like} ESCAPE '\\'
              OR LOWER(COALESCE(e.description, '')) LIKE ${like} ESCAPE '\\')"
        ));
    }
    Ok((format!("({})", found.join(" OR ")), by_description))
}

/// `%q%` for LIKE, lower case, its own wildcards escaped.
fn like_pattern(q: &str) -> String {
    let escaped = q.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

/// The WHERE clause of a list and its text parameters (`$1…`, in order);
/// None when the cursor names no order.
fn conditions(tx: &Tx, f: &Filter) -> anyhow::Result<Option<(String, Vec<Value>)>> {
    let mut conditions: Vec<String> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    match &f.search {
        None => {}
        Some(Search::Id(id)) => {
            args.push(Value::Text(id.clone()));
            conditions.push(format!("(o.payment_order_id = ${0} OR o.checkout_id = ${0})", args.len()));
        }
        Some(Search::BuyerEmail(email)) => {
            args.push(Value::Text(email.clone()));
            conditions.push(format!(
                "o.checkout_id IN (SELECT checkout_id FROM payment_events WHERE buyer_email = LOWER(${}))",
                args.len()
            ));
        }
        Some(Search::Party(q)) => {
            args.push(Value::Text(q.clone()));
            let (condition, by_description) = party_condition(tx, q, args.len())?;
            if by_description {
                *args.last_mut().expect("the search was just pushed") = Value::Text(like_pattern(q));
            }
            conditions.push(condition);
        }
    }
    if let Some(status) = f.status {
        args.push(Value::Text(status.as_str().to_string()));
        conditions.push(format!("o.payment_order_status = ${}", args.len()));
    }
    if let Some(before) = &f.before {
        // Where the cursor's order sorts: the API's list order (see `payments::store::list_orders`).
        let place: Option<(String, String, i64)> = tx.query_opt(
            "SELECT created_at, checkout_id, position FROM payment_orders WHERE payment_order_id = $1",
            params![before],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let Some((at, checkout, position)) = place else { return Ok(None) };
        args.extend([Value::Text(at), Value::Text(checkout), Value::Int(position)]);
        let n = args.len();
        conditions.push(format!("(o.created_at, o.checkout_id, o.position) < (${}, ${}, ${n})", n - 2, n - 1));
    }
    let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    Ok(Some((filter, args)))
}

/// Orders newest first, in the API's list order: by creation time, then
/// checkout and position (a checkout's orders stay together).
pub fn list(tx: &Tx, f: &Filter) -> anyhow::Result<PaymentList> {
    let Some((filter, args)) = conditions(tx, f)? else {
        return Ok(PaymentList { rows: Vec::new(), next_before: None });
    };
    let limit = f.limit.clamp(1, 500);
    let fetch = i64::from(limit) + 1;
    let sql = format!(
        "SELECT o.payment_order_id, o.checkout_id, o.seller_id, o.buyer_account, e.buyer_info, o.amount_minor,
                o.refunded_minor, o.currency, o.payment_order_status, o.failure_code, o.created_at
         FROM payment_orders o JOIN payment_events e ON e.checkout_id = o.checkout_id
         {filter} ORDER BY o.created_at DESC, o.checkout_id DESC, o.position DESC LIMIT ${}",
        args.len() + 1
    );
    let mut bound: Vec<&dyn ToSql> = args.iter().map(|a| a as &dyn ToSql).collect();
    bound.push(&fetch);
    let mut rows = tx.query_map(&sql, &bound, |r| {
        let code: String = r.get(7)?;
        let refunded: i64 = r.get(6)?;
        let buyer: String = r.get(3)?;
        let email = buyer_email(&r.get::<String>(4)?);
        Ok(PaymentRow {
            payment_order_id: r.get(0)?,
            checkout_id: r.get(1)?,
            seller_id: r.get(2)?,
            buyer: email.map_or(buyer.clone(), |e| format!("{buyer} · {e}")),
            amount: format::money(r.get(5)?, &code),
            refunded: if refunded > 0 { format::money(refunded, &code) } else { String::new() },
            status: r.get(8)?,
            failure_code: r.get::<Option<String>>(9)?.unwrap_or_default(),
            created_at: format::time(&r.get::<String>(10)?),
        })
    })?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_before = if has_more { rows.last().map(|r| r.payment_order_id.clone()) } else { None };
    Ok(PaymentList { rows, next_before })
}

/// The buyer's email from a checkout's stored buyer (`{"id", "email"}`), if it has one.
fn buyer_email(buyer_info: &str) -> Option<String> {
    let buyer: serde_json::Value = serde_json::from_str(buyer_info).ok()?;
    buyer.get("email")?.as_str().map(str::to_string)
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
    /// AUTHORIZED: the PSP holds the buyer's money until the shop captures it.
    pub authorized: bool,
    /// The amount as a form field wants it ("25.00"), for the capture form.
    pub amount_plain: String,
    /// When an AUTHORIZED order must be captured by ("" otherwise).
    pub capture_before: String,
    /// What was charged, when a capture took less than the amount ("" otherwise).
    pub captured: String,
    /// What may still be refunded (what was charged less refunds), as a
    /// form field wants it ("15.00"); None: nothing, or a dispute blocks it.
    pub refundable: Option<String>,
    pub refundable_label: String,
    /// Why refunds are refused while a dispute stands ("" when none does).
    pub refund_blocked: String,
    pub history: Vec<HistoryRow>,
    pub refunds: Vec<RefundRow>,
    pub disputes: Vec<DisputeItem>,
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
    /// "automatic" or "manual", and the shop's decision on a manual one ("" before).
    pub capture_method: String,
    pub capture_decision: String,
    /// The capture form is offered: a manual checkout whose orders are
    /// authorized and not being paid any more, nothing decided yet.
    pub capturable: bool,
    /// A capture or void was decided and its orders are still AUTHORIZED:
    /// the PSP is being asked (or asked again by the settle job).
    pub settling: bool,
    /// What the authorized orders add up to, and the soonest capture deadline.
    pub authorized_total: String,
    pub capture_before: String,
    pub orders: Vec<OrderDetail>,
    pub psp_calls: Vec<PspCallRow>,
    pub webhooks: Vec<PspEventRow>,
    pub ledger: Vec<JournalRow>,
    pub actions: Vec<ActionView>,
}

/// The checkout an id names: a checkout id itself, or one of its orders' ids.
pub fn checkout_of(tx: &Tx, id: &str) -> anyhow::Result<Option<String>> {
    tx.query_opt(
        "SELECT checkout_id FROM payment_events WHERE checkout_id = $1
         UNION ALL SELECT checkout_id FROM payment_orders WHERE payment_order_id = $1 LIMIT 1",
        params![id],
        |r| r.get(0),
    )
}

pub fn detail(tx: &Tx, checkout_id: &str) -> anyhow::Result<Option<PaymentDetail>> {
    let Some(checkout) = store::load_checkout(tx, checkout_id)? else { return Ok(None) };
    let orders = checkout.orders.iter().map(|o| order_detail(tx, o)).collect::<anyhow::Result<Vec<_>>>()?;
    let order_ids: Vec<String> = orders.iter().map(|o| o.payment_order_id.clone()).collect();
    let refund_ids: Vec<String> = orders.iter().flat_map(|o| o.refunds.iter().map(|r| r.refund_id.clone())).collect();
    let dispute_ids: Vec<String> =
        orders.iter().flat_map(|o| o.disputes.iter().map(|d| d.dispute_id.clone())).collect();
    let mut psp_objects: Vec<String> = checkout.psp_session_id.iter().cloned().collect();
    psp_objects.extend(orders.iter().map(|o| o.psp_payment_intent_id.clone()).filter(|s| !s.is_empty()));
    psp_objects.extend(psp_refund_ids(tx, &refund_ids)?);
    let mut psp_disputes: Vec<String> =
        orders.iter().flat_map(|o| o.disputes.iter().map(|d| d.psp_dispute_id.clone())).collect();
    psp_disputes.sort();
    psp_disputes.dedup();
    psp_objects.extend(psp_disputes);
    // Calls made on a PSP event's behalf are recorded under the PSP's id.
    let mut subjects = vec![checkout_id.to_string()];
    subjects.extend(order_ids.iter().chain(&refund_ids).chain(&psp_objects).cloned());
    // Staff actions on the checkout (capture, void), its orders (refunds) and its disputes (answers).
    let mut acted_on = vec![checkout_id.to_string()];
    acted_on.extend(order_ids.iter().chain(&dispute_ids).cloned());
    let currency = checkout.orders.first().map(|o| o.amount.currency().code().to_string()).unwrap_or_default();
    let total: i64 = checkout.orders.iter().map(|o| o.amount.amount_minor()).sum();
    let capture = CaptureState::of(&checkout);
    Ok(Some(PaymentDetail {
        checkout_id: checkout.checkout_id.to_string(),
        payment_method: checkout.payment_method.clone(),
        buyer_id: checkout.buyer["id"].as_str().unwrap_or_default().to_string(),
        buyer_email: checkout.buyer["email"].as_str().unwrap_or_default().to_string(),
        is_payment_done: checkout.is_payment_done,
        psp_session_id: checkout.psp_session_id.clone().unwrap_or_default(),
        created_at: format::time(&checkout.created_at),
        total: format::money(total, &currency),
        capture_method: checkout.capture_method.as_str().to_string(),
        capture_decision: checkout.capture_decision.map(|d| d.as_str().to_string()).unwrap_or_default(),
        capturable: capture.capturable,
        settling: capture.settling,
        authorized_total: format::money(capture.authorized_minor, &currency),
        capture_before: capture.capture_before.as_deref().map(format::time).unwrap_or_default(),
        orders,
        psp_calls: psp_calls(tx, &subjects)?,
        webhooks: psp_events(tx, &psp_objects)?,
        ledger: ledger_of(tx, &order_ids, &refund_ids, &dispute_ids)?,
        actions: actions::for_subjects(tx, &acted_on, 20)?,
    }))
}

/// Where a manual checkout's capture stands.
struct CaptureState {
    capturable: bool,
    settling: bool,
    authorized_minor: i64,
    capture_before: Option<String>,
}

impl CaptureState {
    fn of(c: &Checkout) -> CaptureState {
        let authorized: Vec<&Order> = c.orders.iter().filter(|o| o.status == OrderStatus::Authorized).collect();
        // An order still being paid makes the core refuse a capture (the buyer has not authorized it yet).
        let paying = c.orders.iter().any(|o| matches!(o.status, OrderStatus::NotStarted | OrderStatus::Executing));
        let manual = c.capture_method == CaptureMethod::Manual && !authorized.is_empty();
        CaptureState {
            capturable: manual && !paying && c.capture_decision.is_none(),
            settling: manual && c.capture_decision.is_some(),
            authorized_minor: authorized.iter().map(|o| o.amount.amount_minor()).sum(),
            capture_before: authorized.iter().filter_map(|o| o.capture_before.clone()).min(),
        }
    }
}

fn order_detail(tx: &Tx, o: &Order) -> anyhow::Result<OrderDetail> {
    let currency = o.amount.currency().code();
    let id = o.payment_order_id.as_str();
    // Refunds come out of what was charged (less than the amount after a partial capture).
    let left = o.charged_minor() - o.refunded_minor;
    let blocked = match o.status {
        OrderStatus::Success => crate::disputes::blocking_refund(tx, id)?,
        _ => None,
    };
    let refund_blocked = blocked.map_or_else(String::new, |(dispute, status)| {
        format!(
            "No refund while dispute {dispute} is {}: the PSP has taken the money back, or may.",
            status.as_str().replace('_', " ")
        )
    });
    let refundable = (o.status == OrderStatus::Success && left > 0 && refund_blocked.is_empty())
        .then(|| format::plain_amount(left, currency));
    let authorized = o.status == OrderStatus::Authorized;
    let captured = o.captured_minor.filter(|c| *c != o.amount.amount_minor());
    let scope = Scope { payment_order_id: Some(id.to_string()), ..Scope::default() };
    Ok(OrderDetail {
        payment_order_id: o.payment_order_id.to_string(),
        seller_id: o.seller_id.to_string(),
        amount: format::money(o.amount.amount_minor(), currency),
        amount_plain: format::plain_amount(o.amount.amount_minor(), currency),
        currency: currency.to_string(),
        refunded: format::money(o.refunded_minor, currency),
        status: o.status.as_str().to_string(),
        failure_code: o.failure_code.clone().unwrap_or_default(),
        created_at: format::time(&o.created_at),
        updated_at: format::time(&o.updated_at),
        psp_payment_intent_id: o.psp_payment_intent_id.clone().unwrap_or_default(),
        authorized,
        capture_before: o.capture_before.as_deref().filter(|_| authorized).map(format::time).unwrap_or_default(),
        captured: captured.map(|c| format::money(c, currency)).unwrap_or_default(),
        refundable_label: format::money(left.max(0), currency),
        refundable,
        refund_blocked,
        history: history_of(tx, id)?,
        refunds: refunds_of(tx, id)?,
        disputes: disputes::listed(tx, &scope)?.0,
    })
}

fn history_of(tx: &Tx, payment_order_id: &str) -> anyhow::Result<Vec<HistoryRow>> {
    tx.query_map(
        "SELECT from_status, to_status, reason, at FROM payment_order_history WHERE payment_order_id = $1 ORDER BY id",
        params![payment_order_id],
        |r| {
            Ok(HistoryRow {
                from: r.get::<Option<String>>(0)?.unwrap_or_else(|| "—".into()),
                to: r.get(1)?,
                reason: r.get::<Option<String>>(2)?.unwrap_or_default(),
                at: format::time(&r.get::<String>(3)?),
            })
        },
    )
}

fn refunds_of(tx: &Tx, payment_order_id: &str) -> anyhow::Result<Vec<RefundRow>> {
    tx.query_map(
        // Who asked, by name: a staff user's email, or the API key's name.
        "SELECT r.refund_id, r.amount_minor, r.currency, r.status, r.reason, r.failure_code,
                CASE WHEN k.name IS NULL THEN r.created_by ELSE 'API key ' || k.name END, r.created_at
         FROM refunds r LEFT JOIN api_keys k ON k.id = r.created_by
         WHERE r.payment_order_id = $1 ORDER BY r.created_at, r.refund_id",
        params![payment_order_id],
        |r| {
            Ok(RefundRow {
                refund_id: r.get(0)?,
                amount: format::money(r.get(1)?, &r.get::<String>(2)?),
                status: r.get(3)?,
                reason: r.get::<Option<String>>(4)?.unwrap_or_default(),
                failure_code: r.get::<Option<String>>(5)?.unwrap_or_default(),
                created_by: r.get(6)?,
                created_at: format::time(&r.get::<String>(7)?),
            })
        },
    )
}

fn psp_refund_ids(tx: &Tx, refund_ids: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for id in refund_ids {
        let psp: Option<Option<String>> =
            tx.query_opt("SELECT psp_refund_id FROM refunds WHERE refund_id = $1", params![id], |r| r.get(0))?;
        out.extend(psp.flatten());
    }
    Ok(out)
}

fn psp_calls(tx: &Tx, subjects: &[String]) -> anyhow::Result<Vec<PspCallRow>> {
    let mut rows = Vec::new();
    for subject in subjects {
        let found = tx.query_map(
            "SELECT id, at, subject_id, method, path, http_status, outcome, duration_ms, api_version FROM psp_calls
             WHERE subject_id = $1 ORDER BY id LIMIT 200",
            params![subject],
            |r| {
                Ok((
                    r.get::<i64>(0)?,
                    PspCallRow {
                        at: format::time(&r.get::<String>(1)?),
                        subject_id: r.get(2)?,
                        call: format!("{} {}", r.get::<String>(3)?, r.get::<String>(4)?),
                        http_status: r.get::<Option<i64>>(5)?.map_or("no answer".into(), |s| s.to_string()),
                        outcome: r.get(6)?,
                        duration_ms: r.get(7)?,
                        api_version: r.get::<Option<String>>(8)?.unwrap_or_default(),
                    },
                ))
            },
        )?;
        rows.extend(found);
    }
    rows.sort_by_key(|(id, _)| *id);
    Ok(rows.into_iter().map(|(_, r)| r).collect())
}

fn psp_events(tx: &Tx, objects: &[String]) -> anyhow::Result<Vec<PspEventRow>> {
    let mut rows = Vec::new();
    for object in objects {
        let found = tx.query_map(
            "SELECT event_id, event_type, object_id, deliveries, received_at, processed_at, last_error
             FROM psp_events WHERE object_id = $1 LIMIT 100",
            params![object],
            |r| {
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
            },
        )?;
        rows.extend(found);
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(rows.into_iter().map(|(_, r)| r).collect())
}

/// The ledger transactions of a payment: its orders' pay-ins, its refunds
/// (and their reversals) and its disputes' withdrawals and reinstatements.
fn ledger_of(
    tx: &Tx,
    order_ids: &[String],
    refund_ids: &[String],
    dispute_ids: &[String],
) -> anyhow::Result<Vec<JournalRow>> {
    let sources = order_ids
        .iter()
        .map(|id| ("payment_order", id))
        .chain(refund_ids.iter().flat_map(|id| [("refund", id), ("refund_reversal", id)]))
        .chain(dispute_ids.iter().flat_map(|id| [("dispute", id), ("dispute_reversal", id)]));
    let mut ids = Vec::new();
    for (source_type, source_id) in sources {
        let id: Option<i64> = tx.query_opt(
            "SELECT id FROM ledger_transactions WHERE source_type = $1 AND source_id = $2",
            params![source_type, source_id],
            |r| r.get(0),
        )?;
        ids.extend(id);
    }
    ids.sort_unstable();
    let mut rows = Vec::new();
    for id in ids {
        rows.extend(views::journal_row(tx, id)?);
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
