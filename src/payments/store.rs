//! SQL for payment events and orders: small verb-named helpers that run
//! inside the caller's transaction, and the read models the API returns.

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde::Serialize;

use crate::money::{Currency, format_minor};
use crate::payments::model::{NewCheckout, OrderStatus, PaymentMethod};

/// The columns of an event that drive the create flow.
#[derive(Debug, Clone)]
pub struct EventHead {
    pub api_key_id: String,
    pub request_hash: String,
    pub psp_session_id: Option<String>,
    pub payment_method: String,
    pub is_payment_done: bool,
    /// The shop asked to cancel it.
    pub canceled: bool,
}

pub fn find_event_head(conn: &Connection, checkout_id: &str) -> anyhow::Result<Option<EventHead>> {
    conn.prepare_cached(
        "SELECT api_key_id, request_hash, psp_session_id, payment_method, is_payment_done, canceled_at IS NOT NULL
         FROM payment_events WHERE checkout_id = ?1",
    )?
    .query_row([checkout_id], |r| {
        Ok(EventHead {
            api_key_id: r.get(0)?,
            request_hash: r.get(1)?,
            psp_session_id: r.get(2)?,
            payment_method: r.get(3)?,
            is_payment_done: r.get(4)?,
            canceled: r.get(5)?,
        })
    })
    .optional()
    .context("reading a payment event")
}

/// Stores the event and its orders as NOT_STARTED. Returns the position of
/// an order whose id is already taken by another checkout, if any.
pub fn insert_checkout(
    tx: &Transaction,
    api_key_id: &str,
    new: &NewCheckout,
    request_hash: &str,
) -> anyhow::Result<Option<usize>> {
    for (i, order) in new.orders.iter().enumerate() {
        let taken: bool = tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM payment_orders WHERE payment_order_id = ?1)")?
            .query_row([order.payment_order_id.as_str()], |r| r.get(0))?;
        if taken {
            return Ok(Some(i));
        }
    }
    let now = crate::db::now();
    let (token, success_url, cancel_url) = match &new.payment_method {
        PaymentMethod::HostedPage { success_url, cancel_url } => (None, Some(success_url), Some(cancel_url)),
        PaymentMethod::Token { token } => (Some(token), None, None),
    };
    tx.prepare_cached(
        "INSERT INTO payment_events (checkout_id, api_key_id, buyer_info, payment_method, payment_method_token,
                                     success_url, cancel_url, request_hash, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
    )?
    .execute(params![
        new.checkout_id.as_str(),
        api_key_id,
        serde_json::to_string(&new.buyer)?,
        new.payment_method.kind(),
        token,
        success_url,
        cancel_url,
        request_hash,
        now
    ])
    .context("inserting a payment event")?;
    for (position, order) in new.orders.iter().enumerate() {
        tx.prepare_cached(
            "INSERT INTO payment_orders (payment_order_id, checkout_id, position, buyer_account, seller_id,
                                         amount_minor, currency, payment_order_status, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'NOT_STARTED', ?8, ?8)",
        )?
        .execute(params![
            order.payment_order_id.as_str(),
            new.checkout_id.as_str(),
            position as i64,
            new.buyer.id,
            order.seller_id.as_str(),
            order.amount.amount_minor(),
            order.amount.currency().code(),
            now
        ])
        .context("inserting a payment order")?;
        record_history(tx, order.payment_order_id.as_str(), None, OrderStatus::NotStarted, "created")?;
    }
    Ok(None)
}

/// Moves one order from `from` to `to`, guarded in SQL so that two racing
/// writers cannot both move it. Returns false if it was not in `from`.
pub fn transition_order(
    tx: &Transaction,
    payment_order_id: &str,
    from: OrderStatus,
    to: OrderStatus,
    failure_code: Option<&str>,
    reason: &str,
) -> anyhow::Result<bool> {
    anyhow::ensure!(from.can_move_to(to), "illegal order transition {from} -> {to}");
    let changed = tx
        .prepare_cached(
            "UPDATE payment_orders SET payment_order_status = ?3, failure_code = ?4, updated_at = ?5
             WHERE payment_order_id = ?1 AND payment_order_status = ?2",
        )?
        .execute(params![payment_order_id, from.as_str(), to.as_str(), failure_code, crate::db::now()])
        .context("moving a payment order")?;
    if changed == 1 {
        record_history(tx, payment_order_id, Some(from), to, reason)?;
    }
    Ok(changed == 1)
}

/// EXECUTING → SUCCESS in one row write, with what the booking set: the
/// ledger and wallet flags, the PSP's payment intent and the seller's share.
/// Returns false (and writes nothing) if the order was not EXECUTING.
pub fn mark_succeeded(
    tx: &Transaction,
    payment_order_id: &str,
    payment_intent: Option<&str>,
    seller_amount_minor: i64,
    reason: &str,
) -> anyhow::Result<bool> {
    let now = crate::db::now();
    let changed = tx
        .prepare_cached(
            "UPDATE payment_orders SET payment_order_status = 'SUCCESS', ledger_updated = 1, wallet_updated = 1,
                    psp_payment_intent_id = COALESCE(?2, psp_payment_intent_id), seller_amount_minor = ?3, succeeded_at = ?4, updated_at = ?4
             WHERE payment_order_id = ?1 AND payment_order_status = 'EXECUTING'",
        )?
        .execute(params![payment_order_id, payment_intent, seller_amount_minor, now])
        .context("marking a payment order paid")?;
    if changed == 1 {
        record_history(tx, payment_order_id, Some(OrderStatus::Executing), OrderStatus::Success, reason)?;
    }
    Ok(changed == 1)
}

fn record_history(
    tx: &Transaction,
    payment_order_id: &str,
    from: Option<OrderStatus>,
    to: OrderStatus,
    reason: &str,
) -> anyhow::Result<()> {
    tx.prepare_cached(
        "INSERT INTO payment_order_history (payment_order_id, from_status, to_status, reason, at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![payment_order_id, from.map(OrderStatus::as_str), to.as_str(), reason, crate::db::now()])?;
    Ok(())
}

/// Marks the checkout canceled by the shop (once).
pub fn mark_canceled(tx: &Transaction, checkout_id: &str) -> anyhow::Result<()> {
    tx.prepare_cached(
        "UPDATE payment_events SET canceled_at = ?2, updated_at = ?2 WHERE checkout_id = ?1 AND canceled_at IS NULL",
    )?
    .execute(params![checkout_id, crate::db::now()])?;
    Ok(())
}

/// Records the PSP session a checkout's buyer pays on (once: a session
/// already recorded is never replaced).
pub fn set_session(tx: &Transaction, checkout_id: &str, session_id: &str, redirect_url: &str) -> anyhow::Result<()> {
    tx.prepare_cached(
        "UPDATE payment_events SET psp_session_id = ?2, redirect_url = ?3, updated_at = ?4
         WHERE checkout_id = ?1 AND psp_session_id IS NULL",
    )?
    .execute(params![checkout_id, session_id, redirect_url, crate::db::now()])
    .context("recording a checkout's PSP session")?;
    Ok(())
}

/// Sets `is_payment_done` once every order of the checkout is final.
/// Returns whether it changed now.
pub fn refresh_payment_done(tx: &Transaction, checkout_id: &str) -> anyhow::Result<bool> {
    let changed = tx
        .prepare_cached(
            "UPDATE payment_events SET is_payment_done = 1, updated_at = ?2
         WHERE checkout_id = ?1 AND is_payment_done = 0
           AND NOT EXISTS (SELECT 1 FROM payment_orders WHERE checkout_id = ?1
                           AND payment_order_status NOT IN ('SUCCESS', 'FAILED'))",
        )?
        .execute(params![checkout_id, crate::db::now()])?;
    Ok(changed == 1)
}

/// A payment order as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    pub payment_order_id: String,
    pub checkout_id: String,
    pub seller_id: String,
    pub amount: String,
    pub currency: String,
    pub status: String,
    pub wallet_updated: bool,
    pub ledger_updated: bool,
    pub refunded_amount: String,
    pub failure_code: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub amount_minor: i64,
    /// The PSP's payment intent that charged (or tried to charge) the order.
    #[serde(skip)]
    pub psp_payment_intent_id: Option<String>,
}

/// A payment event (checkout) with all its orders, as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckoutView {
    pub checkout_id: String,
    pub is_payment_done: bool,
    pub payment_method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    #[schema(value_type = Object)]
    pub buyer: serde_json::Value,
    pub orders: Vec<OrderView>,
    pub created_at: String,
    #[serde(skip)]
    pub psp_session_id: Option<String>,
}

const ORDER_COLUMNS: &str = "payment_order_id, checkout_id, seller_id, amount_minor, currency, payment_order_status,
     wallet_updated, ledger_updated, refunded_minor, failure_code, created_at, updated_at, psp_payment_intent_id";

fn order_from_row(r: &Row) -> rusqlite::Result<OrderView> {
    let amount_minor: i64 = r.get(3)?;
    let code: String = r.get(4)?;
    let refunded_minor: i64 = r.get(8)?;
    let currency = Currency::parse(&code)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, e.into()))?;
    Ok(OrderView {
        payment_order_id: r.get(0)?,
        checkout_id: r.get(1)?,
        seller_id: r.get(2)?,
        amount: format_minor(amount_minor, currency),
        currency: code,
        status: r.get(5)?,
        wallet_updated: r.get(6)?,
        ledger_updated: r.get(7)?,
        refunded_amount: format_minor(refunded_minor, currency),
        failure_code: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        amount_minor,
        psp_payment_intent_id: r.get(12)?,
    })
}

pub fn load_order(conn: &Connection, payment_order_id: &str) -> anyhow::Result<Option<OrderView>> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM payment_orders WHERE payment_order_id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([payment_order_id], order_from_row).optional()?)
}

pub fn load_orders_of(conn: &Connection, checkout_id: &str) -> anyhow::Result<Vec<OrderView>> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM payment_orders WHERE checkout_id = ?1 ORDER BY position");
    let mut st = conn.prepare_cached(&sql)?;
    let orders = st.query_map([checkout_id], order_from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(orders)
}

pub fn load_checkout(conn: &Connection, checkout_id: &str) -> anyhow::Result<Option<CheckoutView>> {
    let head = conn
        .prepare_cached(
            "SELECT checkout_id, is_payment_done, payment_method, redirect_url, buyer_info, created_at, psp_session_id
             FROM payment_events WHERE checkout_id = ?1",
        )?
        .query_row([checkout_id], |r| {
            Ok(CheckoutView {
                checkout_id: r.get(0)?,
                is_payment_done: r.get(1)?,
                payment_method: r.get(2)?,
                redirect_url: r.get(3)?,
                buyer: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or(serde_json::Value::Null),
                orders: Vec::new(),
                created_at: r.get(5)?,
                psp_session_id: r.get(6)?,
            })
        })
        .optional()?;
    let Some(mut view) = head else {
        return Ok(None);
    };
    view.orders = load_orders_of(conn, checkout_id)?;
    Ok(Some(view))
}

/// The checkout a PSP session belongs to, by the session id we stored.
pub fn checkout_of_session(conn: &Connection, session_id: &str) -> anyhow::Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT checkout_id FROM payment_events WHERE psp_session_id = ?1")?
        .query_row([session_id], |r| r.get(0))
        .optional()?)
}

pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub seller_id: Option<String>,
    /// An order id: the page starts with the next older order.
    pub starting_after: Option<String>,
    pub limit: u32,
}

/// Stripe's list shape.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub object: &'static str,
    pub data: Vec<T>,
    pub has_more: bool,
}

/// Orders, newest first, in insertion order (rowid) so the cursor is stable.
pub fn list_orders(conn: &Connection, f: &OrderFilter) -> anyhow::Result<Page<OrderView>> {
    let cursor: Option<i64> = match &f.starting_after {
        None => None,
        Some(id) => Some(
            conn.prepare_cached("SELECT rowid FROM payment_orders WHERE payment_order_id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?
                .unwrap_or(0),
        ),
    };
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM payment_orders
         WHERE (?1 IS NULL OR payment_order_status = ?1)
           AND (?2 IS NULL OR seller_id = ?2)
           AND (?3 IS NULL OR rowid < ?3)
         ORDER BY rowid DESC LIMIT ?4"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let mut data = st
        .query_map(
            params![f.status.map(OrderStatus::as_str), f.seller_id, cursor, i64::from(f.limit) + 1],
            order_from_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let has_more = data.len() > f.limit as usize;
    data.truncate(f.limit as usize);
    Ok(Page { object: "list", data, has_more })
}

/// A token order with what the executor needs to charge it.
pub struct ChargeTarget {
    pub order: OrderView,
    pub token: String,
    pub order_intent_id: Option<String>,
}

pub fn load_charge_target(conn: &Connection, payment_order_id: &str) -> anyhow::Result<Option<ChargeTarget>> {
    let Some(order) = load_order(conn, payment_order_id)? else {
        return Ok(None);
    };
    let (token, intent): (Option<String>, Option<String>) = conn
        .prepare_cached(
            "SELECT e.payment_method_token, o.psp_payment_intent_id
             FROM payment_orders o JOIN payment_events e ON e.checkout_id = o.checkout_id
             WHERE o.payment_order_id = ?1",
        )?
        .query_row([payment_order_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let token = token.with_context(|| format!("order {payment_order_id} is not a token payment"))?;
    Ok(Some(ChargeTarget { order, token, order_intent_id: intent }))
}

/// What the PSP itself says it charged: read from its own copy of the
/// payment intent or checkout session, never from a webhook's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub payment_intent_id: String,
    /// The checkout the PSP's object names as its own.
    pub checkout_id: String,
    /// A token charge's one order; None for a hosted checkout's charge,
    /// which pays all of its orders.
    pub payment_order_id: Option<String>,
    pub amount_minor: i64,
    pub currency: Currency,
}

/// Records that `charge` pays `order` (just moved to SUCCESS): the charge
/// is stored the first time, and each order it backs must be of its
/// checkout (and be its order, for a token charge), in its currency, and
/// within what is left of its amount. Otherwise nothing is written and the
/// caller's transaction must roll back: no charge pays for what it did not.
pub fn back_with_charge(tx: &Transaction, charge: &Charge, order: &OrderView) -> anyhow::Result<()> {
    tx.prepare_cached(
        "INSERT INTO psp_charges (payment_intent_id, checkout_id, payment_order_id, amount_minor, currency, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (payment_intent_id) DO NOTHING",
    )?
    .execute(params![
        charge.payment_intent_id,
        charge.checkout_id,
        charge.payment_order_id,
        charge.amount_minor,
        charge.currency.code(),
        crate::db::now()
    ])
    .context("recording a PSP charge")?;
    let backed = tx
        .prepare_cached(
            "UPDATE psp_charges SET backed_minor = backed_minor + ?2
             WHERE payment_intent_id = ?1 AND checkout_id = ?3 AND currency = ?4
               AND (payment_order_id IS NULL OR payment_order_id = ?5)
               AND backed_minor + ?2 <= amount_minor",
        )?
        .execute(params![
            charge.payment_intent_id,
            order.amount_minor,
            order.checkout_id,
            order.currency,
            order.payment_order_id
        ])
        .context("backing an order with a PSP charge")?;
    anyhow::ensure!(
        backed == 1,
        "PSP charge {} ({} {} for checkout {}) cannot pay order {} ({} {} of checkout {}): \
         another checkout's or order's charge, or more than it charged",
        charge.payment_intent_id,
        charge.amount_minor,
        charge.currency,
        charge.checkout_id,
        order.payment_order_id,
        order.amount_minor,
        order.currency,
        order.checkout_id
    );
    Ok(())
}

pub fn set_payment_intent(tx: &Transaction, payment_order_id: &str, intent_id: &str) -> anyhow::Result<()> {
    tx.prepare_cached(
        "UPDATE payment_orders SET psp_payment_intent_id = ?2
         WHERE payment_order_id = ?1 AND psp_payment_intent_id IS NOT ?2",
    )?
    .execute(params![payment_order_id, intent_id])?;
    Ok(())
}

/// Adds a refund's amount to the order's refunded total, never past the
/// order's amount (the guard that holds under concurrent refunds).
/// Returns false, and changes nothing, if it would.
pub fn add_refunded(tx: &crate::db::Tx, payment_order_id: &str, amount_minor: i64) -> anyhow::Result<bool> {
    let n = tx.execute(
        "UPDATE payment_orders SET refunded_minor = refunded_minor + $2, updated_at = $3
         WHERE payment_order_id = $1 AND refunded_minor + $2 <= amount_minor",
        crate::params![payment_order_id, amount_minor, crate::db::now()],
    )?;
    Ok(n == 1)
}

/// Gives a failed refund's amount back to the order's refundable rest.
pub fn release_refunded(tx: &crate::db::Tx, payment_order_id: &str, amount_minor: i64) -> anyhow::Result<()> {
    let n = tx.execute(
        "UPDATE payment_orders SET refunded_minor = refunded_minor - $2, updated_at = $3
         WHERE payment_order_id = $1 AND refunded_minor >= $2",
        crate::params![payment_order_id, amount_minor, crate::db::now()],
    )?;
    anyhow::ensure!(n == 1, "order {payment_order_id} has less refunded than the failed refund's {amount_minor}");
    Ok(())
}
