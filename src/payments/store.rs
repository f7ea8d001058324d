//! SQL for payment events and orders: small verb-named helpers that run
//! inside the caller's transaction, and the read models the API returns.
//! `payment_events`, `payment_orders`, `payment_order_history` and
//! `psp_charges` are written here and nowhere else: other modules call
//! these verbs.

use anyhow::Context;
use serde::Serialize;

use crate::db::{Row, Tx, params};
use crate::money::{Currency, Money, format_minor};
use crate::payments::model::{
    CaptureDecision, CaptureMethod, Checkout, CheckoutId, CheckoutStatus, Metadata, NewCheckout, Order, OrderStatus,
    PaymentMethod, PaymentOrderId,
};

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
    pub capture_method: CaptureMethod,
    /// A manual checkout's one decision on its authorization, once made.
    pub capture_decision: Option<CaptureDecision>,
}

pub fn find_event_head(tx: &Tx, checkout_id: &str) -> anyhow::Result<Option<EventHead>> {
    tx.query_opt(
        "SELECT api_key_id, request_hash, psp_session_id, payment_method, is_payment_done,
                CASE WHEN canceled_at IS NULL THEN 0 ELSE 1 END, capture_method, capture_decision
         FROM payment_events WHERE checkout_id = $1",
        params![checkout_id],
        |r| {
            Ok(EventHead {
                api_key_id: r.get(0)?,
                request_hash: r.get(1)?,
                psp_session_id: r.get(2)?,
                payment_method: r.get(3)?,
                is_payment_done: r.get(4)?,
                canceled: r.get(5)?,
                capture_method: r.get(6)?,
                capture_decision: r.get(7)?,
            })
        },
    )
    .context("reading a payment event")
}

/// Records the one decision on a manual checkout's authorization, unless
/// one was recorded before (guarded in SQL: of a capture and a void racing
/// each other, one is recorded). Returns whether this one was.
pub fn record_capture_decision(tx: &Tx, checkout_id: &str, decision: CaptureDecision) -> anyhow::Result<bool> {
    let changed = tx
        .execute(
            "UPDATE payment_events SET capture_decision = $2, capture_decided_at = $3, updated_at = $3
             WHERE checkout_id = $1 AND capture_method = 'manual' AND capture_decision IS NULL",
            params![checkout_id, decision, crate::db::now()],
        )
        .context("recording a capture decision")?;
    Ok(changed == 1)
}

/// What the capture takes of an authorized order (0: it is released).
pub fn set_capture_plan(tx: &Tx, payment_order_id: &str, capture_minor: i64) -> anyhow::Result<()> {
    let changed = tx
        .execute(
            "UPDATE payment_orders SET capture_minor = $2, updated_at = $3
             WHERE payment_order_id = $1 AND payment_order_status IN ('EXECUTING', 'AUTHORIZED')",
            params![payment_order_id, capture_minor, crate::db::now()],
        )
        .context("recording what a capture takes of an order")?;
    anyhow::ensure!(changed == 1, "order {payment_order_id} is not awaiting capture");
    Ok(())
}

/// Marks a manual checkout authorized once no order of it is being paid
/// and at least one is AUTHORIZED. Returns whether it changed now (the
/// shop is then told, once).
pub fn mark_checkout_authorized(tx: &Tx, checkout_id: &str) -> anyhow::Result<bool> {
    let changed = tx
        .execute(
            "UPDATE payment_events SET authorized_at = $2, updated_at = $2
             WHERE checkout_id = $1 AND capture_method = 'manual' AND authorized_at IS NULL
               AND EXISTS (SELECT 1 FROM payment_orders WHERE checkout_id = $1
                           AND payment_order_status = 'AUTHORIZED')
               AND NOT EXISTS (SELECT 1 FROM payment_orders WHERE checkout_id = $1
                               AND payment_order_status IN ('NOT_STARTED', 'EXECUTING'))",
            params![checkout_id, crate::db::now()],
        )
        .context("marking a checkout authorized")?;
    Ok(changed == 1)
}

/// Stores the event and its orders as NOT_STARTED. Returns the position of
/// an order whose id is already taken by another checkout, if any.
pub fn insert_checkout(
    tx: &Tx,
    api_key_id: &str,
    new: &NewCheckout,
    request_hash: &str,
) -> anyhow::Result<Option<usize>> {
    for (i, order) in new.orders.iter().enumerate() {
        let taken = tx.query_opt(
            "SELECT 1 FROM payment_orders WHERE payment_order_id = $1",
            params![order.payment_order_id],
            |r| r.get::<i64>(0),
        )?;
        if taken.is_some() {
            return Ok(Some(i));
        }
    }
    let now = crate::db::now();
    let (token, success_url, cancel_url) = match &new.payment_method {
        PaymentMethod::HostedPage { success_url, cancel_url } => (None, Some(success_url), Some(cancel_url)),
        PaymentMethod::Token { token } => (Some(token), None, None),
    };
    tx.execute(
        "INSERT INTO payment_events (checkout_id, api_key_id, buyer_info, buyer_email, payment_method,
                                     payment_method_token, success_url, cancel_url, request_hash, created_at, updated_at,
                                     description, metadata, capture_method)
         VALUES ($1, $2, $3, $10, $4, $5, $6, $7, $8, $9, $9, $11, $12, $13)",
        params![
            new.checkout_id,
            api_key_id,
            serde_json::to_string(&new.buyer)?,
            new.payment_method.kind(),
            token,
            success_url,
            cancel_url,
            request_hash,
            now,
            new.buyer.email.as_deref().map(str::to_lowercase),
            new.description.as_ref().map(|d| d.as_str()),
            new.metadata.to_stored(),
            new.capture_method
        ],
    )
    .context("inserting a payment event")?;
    for (position, order) in new.orders.iter().enumerate() {
        tx.execute(
            "INSERT INTO payment_orders (payment_order_id, checkout_id, position, buyer_account, seller_id,
                                         amount_minor, currency, payment_order_status, created_at, updated_at,
                                         description, metadata)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11)",
            params![
                order.payment_order_id,
                new.checkout_id,
                position,
                new.buyer.id,
                order.seller_id,
                order.amount.amount_minor(),
                order.amount.currency(),
                OrderStatus::NotStarted,
                now,
                order.description.as_ref().map(|d| d.as_str()),
                order.metadata.to_stored()
            ],
        )
        .context("inserting a payment order")?;
        index_metadata(tx, order.payment_order_id.as_str(), &new.metadata.merged(&order.metadata))?;
        record_history(tx, order.payment_order_id.as_str(), None, OrderStatus::NotStarted, "created")?;
    }
    Ok(None)
}

/// Makes an order findable by each key of its metadata (its checkout's
/// merged with its own): one row per key in `payment_order_metadata`.
fn index_metadata(tx: &Tx, payment_order_id: &str, metadata: &Metadata) -> anyhow::Result<()> {
    for (key, value) in metadata.iter() {
        tx.execute(
            "INSERT INTO payment_order_metadata (payment_order_id, key, value) VALUES ($1, $2, $3)",
            params![payment_order_id, key, value],
        )
        .context("indexing an order's metadata")?;
    }
    Ok(())
}

/// Moves one order from `from` to `to`, guarded in SQL so that two racing
/// writers cannot both move it. Returns false if it was not in `from`.
pub fn transition_order(
    tx: &Tx,
    payment_order_id: &str,
    from: OrderStatus,
    to: OrderStatus,
    failure_code: Option<&str>,
    reason: &str,
) -> anyhow::Result<bool> {
    anyhow::ensure!(from.can_move_to(to), "illegal order transition {from} -> {to}");
    let changed = tx
        .execute(
            "UPDATE payment_orders SET payment_order_status = $3, failure_code = $4, updated_at = $5
             WHERE payment_order_id = $1 AND payment_order_status = $2",
            params![payment_order_id, from, to, failure_code, crate::db::now()],
        )
        .context("moving a payment order")?;
    if changed == 1 {
        record_history(tx, payment_order_id, Some(from), to, reason)?;
    }
    Ok(changed == 1)
}

/// What a paid order's row records in the write that books it.
pub struct Paid<'a> {
    /// The state it leaves: EXECUTING, or AUTHORIZED (a manual capture).
    pub from: OrderStatus,
    pub payment_intent: Option<&'a str>,
    /// What was charged (all of `amount`, unless a manual capture took less).
    pub captured_minor: i64,
    /// The seller's share of what was charged.
    pub seller_amount_minor: i64,
    pub reason: &'a str,
}

/// `paid.from` → SUCCESS in one row write, with what the booking set: the
/// ledger and wallet flags, the PSP's payment intent, what was charged and
/// the seller's share. Returns false (and writes nothing) if the order was
/// not in `paid.from`.
pub fn mark_succeeded(tx: &Tx, payment_order_id: &str, paid: &Paid) -> anyhow::Result<bool> {
    anyhow::ensure!(paid.from.can_move_to(OrderStatus::Success), "illegal order transition {} -> SUCCESS", paid.from);
    let changed = tx
        .execute(
            "UPDATE payment_orders SET payment_order_status = 'SUCCESS', ledger_updated = 1, wallet_updated = 1,
                    psp_payment_intent_id = COALESCE($2, psp_payment_intent_id), seller_amount_minor = $3,
                    captured_minor = $5, succeeded_at = $4, updated_at = $4
             WHERE payment_order_id = $1 AND payment_order_status = $6",
            params![
                payment_order_id,
                paid.payment_intent,
                paid.seller_amount_minor,
                crate::db::now(),
                paid.captured_minor,
                paid.from
            ],
        )
        .context("marking a payment order paid")?;
    if changed == 1 {
        record_history(tx, payment_order_id, Some(paid.from), OrderStatus::Success, paid.reason)?;
    }
    Ok(changed == 1)
}

/// EXECUTING → AUTHORIZED: the PSP holds `payment_intent`'s money for the
/// order until the shop captures it by `capture_before`. Returns false if
/// the order was not EXECUTING.
pub fn mark_authorized(
    tx: &Tx,
    payment_order_id: &str,
    payment_intent: &str,
    capture_before: &str,
    reason: &str,
) -> anyhow::Result<bool> {
    let now = crate::db::now();
    let changed = tx
        .execute(
            "UPDATE payment_orders SET payment_order_status = 'AUTHORIZED', psp_payment_intent_id = $2,
                    authorized_at = $3, capture_before = $4, updated_at = $3
             WHERE payment_order_id = $1 AND payment_order_status = 'EXECUTING'",
            params![payment_order_id, payment_intent, now, capture_before],
        )
        .context("marking a payment order authorized")?;
    if changed == 1 {
        record_history(tx, payment_order_id, Some(OrderStatus::Executing), OrderStatus::Authorized, reason)?;
    }
    Ok(changed == 1)
}

fn record_history(
    tx: &Tx,
    payment_order_id: &str,
    from: Option<OrderStatus>,
    to: OrderStatus,
    reason: &str,
) -> anyhow::Result<()> {
    tx.execute(
        "INSERT INTO payment_order_history (payment_order_id, from_status, to_status, reason, at)
         VALUES ($1, $2, $3, $4, $5)",
        params![payment_order_id, from, to, reason, crate::db::now()],
    )
    .context("recording a payment order's move")?;
    Ok(())
}

/// Adds a refund's amount to the order's refunded total, and its seller's
/// part to what refunds took of the seller's share, never past what the
/// order charged (the guard that holds under concurrent refunds).
/// Returns false, and changes nothing, if it would go past it.
pub fn add_refunded(
    tx: &Tx,
    payment_order_id: &str,
    amount_minor: i64,
    seller_part_minor: i64,
) -> anyhow::Result<bool> {
    let changed = tx
        .execute(
            "UPDATE payment_orders SET refunded_minor = refunded_minor + $2,
                    seller_refunded_minor = seller_refunded_minor + $3, updated_at = $4
             WHERE payment_order_id = $1 AND refunded_minor + $2 <= COALESCE(captured_minor, amount_minor)",
            params![payment_order_id, amount_minor, seller_part_minor, crate::db::now()],
        )
        .context("adding to a payment order's refunded total")?;
    Ok(changed == 1)
}

/// Gives a failed refund's amount (and its seller's part) back to the
/// order's refundable rest.
pub fn release_refunded(
    tx: &Tx,
    payment_order_id: &str,
    amount_minor: i64,
    seller_part_minor: i64,
) -> anyhow::Result<()> {
    let changed = tx
        .execute(
            "UPDATE payment_orders SET refunded_minor = refunded_minor - $2,
                    seller_refunded_minor = seller_refunded_minor - $3, updated_at = $4
             WHERE payment_order_id = $1 AND refunded_minor >= $2 AND seller_refunded_minor >= $3",
            params![payment_order_id, amount_minor, seller_part_minor, crate::db::now()],
        )
        .context("giving back a payment order's refunded amount")?;
    anyhow::ensure!(changed == 1, "order {payment_order_id} has less refunded than the failed refund's {amount_minor}");
    Ok(())
}

/// What buyers authorized for the seller that waits for capture, per
/// currency (AUTHORIZED orders' amounts), in currency order.
pub fn authorized_of_seller(tx: &Tx, seller_id: &str) -> anyhow::Result<Vec<(Currency, i64)>> {
    tx.query_map(
        "SELECT currency, SUM(amount_minor) FROM payment_orders
         WHERE seller_id = $1 AND payment_order_status = 'AUTHORIZED' GROUP BY currency ORDER BY currency",
        params![seller_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// What the seller still holds of its orders in `currency` paid after
/// `paid_after`: each one's share less what its live refunds took of it.
pub fn held_seller_share(tx: &Tx, seller_id: &str, currency: Currency, paid_after: &str) -> anyhow::Result<i64> {
    tx.query_value(
        "SELECT COALESCE(SUM(seller_amount_minor - seller_refunded_minor), 0) FROM payment_orders
         WHERE payment_order_status = 'SUCCESS' AND seller_id = $1 AND currency = $2 AND succeeded_at > $3",
        params![seller_id, currency, paid_after],
    )
}

/// [`held_seller_share`] of one order: its share less what its live refunds
/// took of it, if it was paid after `paid_after` (else 0).
pub fn held_share_of_order(tx: &Tx, payment_order_id: &str, paid_after: &str) -> anyhow::Result<i64> {
    tx.query_value(
        "SELECT COALESCE(SUM(seller_amount_minor - seller_refunded_minor), 0) FROM payment_orders
         WHERE payment_order_status = 'SUCCESS' AND payment_order_id = $1 AND succeeded_at > $2",
        params![payment_order_id, paid_after],
    )
}

/// Marks the checkout canceled by the shop (once).
pub fn mark_canceled(tx: &Tx, checkout_id: &str) -> anyhow::Result<()> {
    tx.execute(
        "UPDATE payment_events SET canceled_at = $2, updated_at = $2 WHERE checkout_id = $1 AND canceled_at IS NULL",
        params![checkout_id, crate::db::now()],
    )
    .context("canceling a checkout")?;
    Ok(())
}

/// Records the PSP session a checkout's buyer pays on (once: a session
/// already recorded is never replaced).
pub fn set_session(tx: &Tx, checkout_id: &str, session_id: &str, redirect_url: &str) -> anyhow::Result<()> {
    tx.execute(
        "UPDATE payment_events SET psp_session_id = $2, redirect_url = $3, updated_at = $4
         WHERE checkout_id = $1 AND psp_session_id IS NULL",
        params![checkout_id, session_id, redirect_url, crate::db::now()],
    )
    .context("recording a checkout's PSP session")?;
    Ok(())
}

/// Sets `is_payment_done` once every order of the checkout is final.
/// Returns whether it changed now.
pub fn refresh_payment_done(tx: &Tx, checkout_id: &str) -> anyhow::Result<bool> {
    let changed = tx
        .execute(
            "UPDATE payment_events SET is_payment_done = 1, updated_at = $2
             WHERE checkout_id = $1 AND is_payment_done = 0
               AND NOT EXISTS (SELECT 1 FROM payment_orders WHERE checkout_id = $1
                               AND payment_order_status NOT IN ('SUCCESS', 'FAILED'))",
            params![checkout_id, crate::db::now()],
        )
        .context("marking a checkout done")?;
    Ok(changed == 1)
}

/// A payment order as the API shows it (and the merchant events carry it).
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
    /// As the shop gave it; the buyer sees it as the order's line on the hosted page.
    pub description: Option<String>,
    /// The shop's key-value pairs, as given (`{}` when none).
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub metadata: Metadata,
    /// What was charged, once SUCCESS: `amount`, unless a manual capture
    /// took less (the rest was released); null before. Refunds come out of it.
    pub amount_captured: Option<String>,
    /// An AUTHORIZED order's authorization must be captured by then, or it
    /// expires (FAILED `authorization_expired`); null otherwise.
    pub capture_before: Option<String>,
}

impl From<&Order> for OrderView {
    fn from(o: &Order) -> OrderView {
        let currency = o.amount.currency();
        OrderView {
            payment_order_id: o.payment_order_id.to_string(),
            checkout_id: o.checkout_id.to_string(),
            seller_id: o.seller_id.to_string(),
            amount: format_minor(o.amount.amount_minor(), currency),
            currency: currency.code().to_string(),
            status: o.status.as_str().to_string(),
            wallet_updated: o.wallet_updated,
            ledger_updated: o.ledger_updated,
            refunded_amount: format_minor(o.refunded_minor, currency),
            failure_code: o.failure_code.clone(),
            created_at: o.created_at.clone(),
            updated_at: o.updated_at.clone(),
            description: o.description.clone(),
            metadata: o.metadata.clone(),
            amount_captured: o.captured_minor.map(|c| format_minor(c, currency)),
            capture_before: o.capture_before.clone().filter(|_| o.status == OrderStatus::Authorized),
        }
    }
}

/// A payment event (checkout) with all its orders, as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckoutView {
    pub checkout_id: String,
    /// `open` while an order is not final; then `succeeded`,
    /// `partially_succeeded`, `failed` or `canceled`. Ship on `succeeded`
    /// (or, for `partially_succeeded`, on each order that is SUCCESS).
    pub status: CheckoutStatus,
    /// True once every order is final, whatever its outcome (kept for
    /// compatibility: read `status` to know whether it was paid).
    pub is_payment_done: bool,
    pub payment_method: String,
    /// `automatic`, or `manual`: its orders stop at AUTHORIZED until
    /// `POST /v1/checkouts/{id}/capture` (or `/void`).
    pub capture_method: CaptureMethod,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    #[schema(value_type = Object)]
    pub buyer: serde_json::Value,
    pub orders: Vec<OrderView>,
    pub created_at: String,
    pub description: Option<String>,
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub metadata: Metadata,
    #[serde(skip)]
    pub psp_session_id: Option<String>,
}

impl From<&Checkout> for CheckoutView {
    fn from(c: &Checkout) -> CheckoutView {
        CheckoutView {
            checkout_id: c.checkout_id.to_string(),
            status: c.status(),
            is_payment_done: c.is_payment_done,
            payment_method: c.payment_method.clone(),
            capture_method: c.capture_method,
            redirect_url: c.redirect_url.clone(),
            buyer: c.buyer.clone(),
            orders: c.orders.iter().map(OrderView::from).collect(),
            created_at: c.created_at.clone(),
            description: c.description.clone(),
            metadata: c.metadata.clone(),
            psp_session_id: c.psp_session_id.clone(),
        }
    }
}

/// The columns [`order_from_row`] reads, in its order (a macro, so that
/// each statement is one literal string).
macro_rules! order_columns {
    () => {
        "payment_order_id, checkout_id, seller_id, amount_minor, currency, payment_order_status, refunded_minor,
         failure_code, psp_payment_intent_id, wallet_updated, ledger_updated, created_at, updated_at, description,
         metadata, captured_minor, authorized_at, capture_before, capture_minor"
    };
}

/// How many columns [`order_columns`] names.
const ORDER_COLUMN_COUNT: usize = 19;

fn order_from_row(r: &Row) -> anyhow::Result<Order> {
    Ok(Order {
        payment_order_id: r.get(0)?,
        checkout_id: r.get(1)?,
        seller_id: r.get(2)?,
        amount: Money::from_minor(r.get(3)?, r.get(4)?).context("a stored order amount")?,
        status: r.get(5)?,
        refunded_minor: r.get(6)?,
        failure_code: r.get(7)?,
        psp_payment_intent_id: r.get(8)?,
        wallet_updated: r.get(9)?,
        ledger_updated: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
        description: r.get(13)?,
        metadata: Metadata::from_stored(r.get::<Option<String>>(14)?.as_deref())?,
        captured_minor: r.get(15)?,
        authorized_at: r.get(16)?,
        capture_before: r.get(17)?,
        capture_minor: r.get(18)?,
    })
}

pub fn load_order(tx: &Tx, payment_order_id: &str) -> anyhow::Result<Option<Order>> {
    tx.query_opt(
        concat!("SELECT ", order_columns!(), " FROM payment_orders WHERE payment_order_id = $1"),
        params![payment_order_id],
        order_from_row,
    )
    .context("reading a payment order")
}

pub fn load_orders_of(tx: &Tx, checkout_id: &str) -> anyhow::Result<Vec<Order>> {
    tx.query_map(
        concat!("SELECT ", order_columns!(), " FROM payment_orders WHERE checkout_id = $1 ORDER BY position"),
        params![checkout_id],
        order_from_row,
    )
    .context("reading a checkout's orders")
}

/// An order that a refund is asked for, with the seller's share of it.
#[derive(Debug, Clone)]
pub struct RefundableOrder {
    pub order: Order,
    /// What the seller was credited of the amount (all of it for an order
    /// paid before shares were recorded).
    pub seller_amount_minor: i64,
}

pub fn refundable_order(tx: &Tx, payment_order_id: &str) -> anyhow::Result<Option<RefundableOrder>> {
    tx.query_opt(
        concat!(
            "SELECT ",
            order_columns!(),
            ", COALESCE(seller_amount_minor, amount_minor) FROM payment_orders WHERE payment_order_id = $1"
        ),
        params![payment_order_id],
        |r| Ok(RefundableOrder { order: order_from_row(r)?, seller_amount_minor: r.get(ORDER_COLUMN_COUNT)? }),
    )
    .context("reading a payment order to refund")
}

/// The paid orders a PSP charge (`payment_intent`) paid, in their
/// checkout's order, each with the seller's share of it (through
/// `psp_charges`, whose key finds the checkout).
pub fn paid_by_intent(tx: &Tx, payment_intent: &str) -> anyhow::Result<Vec<RefundableOrder>> {
    tx.query_map(
        concat!(
            "SELECT ",
            order_columns!(),
            ", COALESCE(seller_amount_minor, captured_minor) FROM payment_orders
             WHERE checkout_id = (SELECT checkout_id FROM psp_charges WHERE payment_intent_id = $1)
               AND psp_payment_intent_id = $1 AND payment_order_status = 'SUCCESS'
             ORDER BY position"
        ),
        params![payment_intent],
        |r| Ok(RefundableOrder { order: order_from_row(r)?, seller_amount_minor: r.get(ORDER_COLUMN_COUNT)? }),
    )
    .context("reading the orders a charge paid")
}

/// An order with whether its checkout pays on a hosted page (one PSP
/// charge for all of its orders) or by token (one charge per order).
pub struct OrderAndMethod {
    pub order: Order,
    pub hosted_page: bool,
}

/// The order `payment_order_id`, with how its checkout pays.
pub fn order_and_method(tx: &Tx, payment_order_id: &str) -> anyhow::Result<Option<OrderAndMethod>> {
    tx.query_opt(
        concat!(
            "SELECT ",
            order_columns!(),
            ", (SELECT payment_method FROM payment_events e WHERE e.checkout_id = payment_orders.checkout_id)
             FROM payment_orders WHERE payment_order_id = $1"
        ),
        params![payment_order_id],
        order_and_method_from_row,
    )
}

/// An order the PSP's payment intent `intent` charged, with how its checkout pays.
pub fn order_and_method_by_intent(tx: &Tx, intent: &str) -> anyhow::Result<Option<OrderAndMethod>> {
    tx.query_opt(
        concat!(
            "SELECT ",
            order_columns!(),
            ", (SELECT payment_method FROM payment_events e WHERE e.checkout_id = payment_orders.checkout_id)
             FROM payment_orders WHERE psp_payment_intent_id = $1 LIMIT 1"
        ),
        params![intent],
        order_and_method_from_row,
    )
}

fn order_and_method_from_row(r: &Row) -> anyhow::Result<OrderAndMethod> {
    let method: String = r.get(ORDER_COLUMN_COUNT)?;
    Ok(OrderAndMethod { order: order_from_row(r)?, hosted_page: method == "hosted_page" })
}

/// The order as the API shows it.
pub fn order_view(tx: &Tx, payment_order_id: &str) -> anyhow::Result<Option<OrderView>> {
    Ok(load_order(tx, payment_order_id)?.as_ref().map(OrderView::from))
}

pub fn load_checkout(tx: &Tx, checkout_id: &str) -> anyhow::Result<Option<Checkout>> {
    let head = tx
        .query_opt(
            "SELECT checkout_id, is_payment_done, payment_method, redirect_url, buyer_info, created_at, psp_session_id,
                    CASE WHEN canceled_at IS NULL THEN 0 ELSE 1 END, description, metadata, capture_method,
                    capture_decision
             FROM payment_events WHERE checkout_id = $1",
            params![checkout_id],
            |r| {
                Ok(Checkout {
                    checkout_id: r.get(0)?,
                    is_payment_done: r.get(1)?,
                    payment_method: r.get(2)?,
                    redirect_url: r.get(3)?,
                    buyer: serde_json::from_str(&r.get::<String>(4)?).unwrap_or(serde_json::Value::Null),
                    created_at: r.get(5)?,
                    psp_session_id: r.get(6)?,
                    canceled: r.get(7)?,
                    description: r.get(8)?,
                    metadata: Metadata::from_stored(r.get::<Option<String>>(9)?.as_deref())?,
                    capture_method: r.get(10)?,
                    capture_decision: r.get(11)?,
                    orders: Vec::new(),
                })
            },
        )
        .context("reading a checkout")?;
    let Some(mut checkout) = head else {
        return Ok(None);
    };
    checkout.orders = load_orders_of(tx, checkout_id)?;
    Ok(Some(checkout))
}

/// A checkout's orders added up: what the PSP's one charge for a hosted
/// checkout should show.
pub struct CheckoutTotal {
    pub hosted_page: bool,
    pub amount_minor: i64,
    /// The orders' currency ('' for a checkout without orders).
    pub currency: String,
    pub orders: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// What the succeeded orders charged (less than their amounts when a
    /// manual capture took less).
    pub captured_minor: i64,
}

/// The checkout's total and its orders' outcomes; None if there is no such checkout.
pub fn checkout_total(tx: &Tx, checkout_id: &str) -> anyhow::Result<Option<CheckoutTotal>> {
    tx.query_opt(
        "SELECT MIN(e.payment_method), COALESCE(SUM(o.amount_minor), 0), COALESCE(MIN(o.currency), ''),
                COUNT(o.payment_order_id),
                COALESCE(SUM(CASE WHEN o.payment_order_status = 'SUCCESS' THEN 1 ELSE 0 END), 0),
                COALESCE(SUM(CASE WHEN o.payment_order_status = 'FAILED' THEN 1 ELSE 0 END), 0),
                COALESCE(SUM(o.captured_minor), 0)
         FROM payment_events e LEFT JOIN payment_orders o ON o.checkout_id = e.checkout_id
         WHERE e.checkout_id = $1 GROUP BY e.checkout_id",
        params![checkout_id],
        |r| {
            Ok(CheckoutTotal {
                hosted_page: r.get::<String>(0)? == "hosted_page",
                amount_minor: r.get(1)?,
                currency: r.get(2)?,
                orders: r.get(3)?,
                succeeded: r.get(4)?,
                failed: r.get(5)?,
                captured_minor: r.get(6)?,
            })
        },
    )
}

/// The checkout as the API shows it.
pub fn checkout_view(tx: &Tx, checkout_id: &str) -> anyhow::Result<Option<CheckoutView>> {
    Ok(load_checkout(tx, checkout_id)?.as_ref().map(CheckoutView::from))
}

/// The checkout a PSP session belongs to, by the session id we stored.
pub fn checkout_of_session(tx: &Tx, session_id: &str) -> anyhow::Result<Option<CheckoutId>> {
    tx.query_opt("SELECT checkout_id FROM payment_events WHERE psp_session_id = $1", params![session_id], |r| r.get(0))
        .context("finding a session's checkout")
}

/// Whether the checkout paid on this PSP session is done (false for a session we do not know).
pub fn is_session_done(tx: &Tx, session_id: &str) -> anyhow::Result<bool> {
    let done = tx.query_opt(
        "SELECT is_payment_done FROM payment_events WHERE psp_session_id = $1",
        params![session_id],
        |r| r.get::<bool>(0),
    )?;
    Ok(done.unwrap_or(false))
}

pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub seller_id: Option<String>,
    /// (key, value) pairs the order's metadata (its checkout's merged
    /// with its own) must all hold; at most [`MAX_METADATA_FILTERS`].
    pub metadata: Vec<(String, String)>,
    /// An order id: the page starts with the next older order.
    pub starting_after: Option<String>,
    pub limit: u32,
}

/// Whether any order's metadata holds this value (under any key).
pub fn metadata_value_exists(tx: &Tx, value: &str) -> anyhow::Result<bool> {
    Ok(tx
        .query_opt("SELECT 1 FROM payment_order_metadata WHERE value = $1 LIMIT 1", params![value], |_| Ok(()))?
        .is_some())
}

/// Metadata conditions one list may ask for.
pub const MAX_METADATA_FILTERS: usize = 10;

/// Stripe's list shape.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub object: &'static str,
    pub data: Vec<T>,
    pub has_more: bool,
}

/// Orders, newest first. Orders created at the same instant (one
/// checkout's) come in reverse request order, and a checkout's orders
/// stay together, so `(created_at, checkout_id, position)` is a total,
/// stable order and the cursor names a place in it.
pub fn list_orders(tx: &Tx, f: &OrderFilter) -> anyhow::Result<Page<OrderView>> {
    anyhow::ensure!(f.metadata.len() <= MAX_METADATA_FILTERS, "at most {MAX_METADATA_FILTERS} metadata filters");
    let (at, checkout, position) = match &f.starting_after {
        None => (None, None, None),
        Some(id) => match place_in_list(tx, id)? {
            Some((at, checkout, position)) => (Some(at), Some(checkout), Some(position)),
            // An unknown cursor has nothing after it.
            None => return Ok(Page { object: "list", data: Vec::new(), has_more: false }),
        },
    };
    let fetch = i64::from(f.limit) + 1;
    let mut bound: Vec<&dyn crate::db::ToSql> = vec![&f.status, &f.seller_id, &at, &checkout, &position, &fetch];
    for (key, value) in &f.metadata {
        bound.push(key);
        bound.push(value);
    }
    let sql = list_orders_sql(f.metadata.len());
    let mut data = tx.query_map(&sql, &bound, |r| order_from_row(r).map(|o| OrderView::from(&o)))?;
    let has_more = data.len() > f.limit as usize;
    data.truncate(f.limit as usize);
    Ok(Page { object: "list", data, has_more })
}

/// The statement of [`list_orders`] with `metadata_filters` metadata
/// conditions (`$7`, `$8` the first key and value, and so on): one string
/// per count, so each is prepared once.
fn list_orders_sql(metadata_filters: usize) -> String {
    let mut sql = String::from(concat!(
        "SELECT ",
        order_columns!(),
        " FROM payment_orders
         WHERE (CAST($1 AS TEXT) IS NULL OR payment_order_status = $1)
           AND (CAST($2 AS TEXT) IS NULL OR seller_id = $2)
           AND (CAST($3 AS TEXT) IS NULL OR (created_at, checkout_id, position) < ($3, $4, $5))"
    ));
    for i in 0..metadata_filters {
        let (key, value) = (7 + 2 * i, 8 + 2 * i);
        sql.push_str(&format!(
            " AND payment_order_id IN (SELECT payment_order_id FROM payment_order_metadata
                                       WHERE key = ${key} AND value = ${value})"
        ));
    }
    sql.push_str(" ORDER BY created_at DESC, checkout_id DESC, position DESC LIMIT $6");
    sql
}

/// Where an order sorts in [`list_orders`].
fn place_in_list(tx: &Tx, payment_order_id: &str) -> anyhow::Result<Option<(String, String, i64)>> {
    tx.query_opt(
        "SELECT created_at, checkout_id, position FROM payment_orders WHERE payment_order_id = $1",
        params![payment_order_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
}

/// The order's status; None if there is no such order.
/// How many orders are in each status (an index scan: the metrics read it).
pub fn count_by_status(tx: &Tx) -> anyhow::Result<Vec<(String, i64)>> {
    tx.query_map(
        "SELECT payment_order_status, COUNT(*) FROM payment_orders GROUP BY payment_order_status",
        params![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

pub fn order_status(tx: &Tx, payment_order_id: &str) -> anyhow::Result<Option<OrderStatus>> {
    tx.query_opt(
        "SELECT payment_order_status FROM payment_orders WHERE payment_order_id = $1",
        params![payment_order_id],
        |r| r.get(0),
    )
}

/// Up to `limit` orders not final that were created before `cutoff`, oldest first.
pub fn unfinished_orders_created_before(tx: &Tx, cutoff: &str, limit: i64) -> anyhow::Result<Vec<Order>> {
    tx.query_map(
        concat!(
            "SELECT ",
            order_columns!(),
            " FROM payment_orders WHERE payment_order_status IN ($1, $2) AND created_at < $3
             ORDER BY created_at, payment_order_id LIMIT $4"
        ),
        params![OrderStatus::NotStarted, OrderStatus::Executing, cutoff, limit],
        order_from_row,
    )
}

/// Up to `limit` token orders not final and unchanged since `unchanged_before`.
pub fn stale_token_orders(tx: &Tx, unchanged_before: &str, limit: i64) -> anyhow::Result<Vec<String>> {
    tx.query_map(
        "SELECT o.payment_order_id FROM payment_orders o JOIN payment_events e ON e.checkout_id = o.checkout_id
         WHERE o.payment_order_status IN ($1, $2) AND e.payment_method = 'token' AND o.updated_at < $3 LIMIT $4",
        params![OrderStatus::NotStarted, OrderStatus::Executing, unchanged_before, limit],
        |r| r.get(0),
    )
}

/// Up to `limit` hosted checkouts not done, with a session, created before
/// `created_before` (an authorized manual checkout waits for the shop, not the PSP).
pub fn stale_hosted_checkouts(tx: &Tx, created_before: &str, limit: i64) -> anyhow::Result<Vec<String>> {
    tx.query_map(
        "SELECT checkout_id FROM payment_events
         WHERE is_payment_done = 0 AND payment_method = 'hosted_page' AND psp_session_id IS NOT NULL
           AND authorized_at IS NULL AND created_at < $1 LIMIT $2",
        params![created_before, limit],
        |r| r.get(0),
    )
}

/// A charge till has as paid: a hosted checkout (one PSP charge for all of
/// its orders) or a token order.
pub struct PaidCharge {
    pub hosted_page: bool,
    /// The checkout's id for a hosted checkout, else the order's.
    pub id: String,
    pub amount_minor: i64,
    pub currency: String,
    /// When its (first) order succeeded.
    pub paid_at: String,
}

/// The charges first paid at or after `from` and before `before`. A hosted
/// checkout adds up its orders paid since `from`.
pub fn paid_charges_between(tx: &Tx, from: &str, before: &str) -> anyhow::Result<Vec<PaidCharge>> {
    tx.query_map(
        "SELECT 1, o.checkout_id, SUM(o.captured_minor), MIN(o.currency), MIN(o.succeeded_at)
         FROM payment_orders o JOIN payment_events e ON e.checkout_id = o.checkout_id
         WHERE e.payment_method = 'hosted_page' AND o.payment_order_status = 'SUCCESS' AND o.succeeded_at >= $1
         GROUP BY o.checkout_id HAVING MIN(o.succeeded_at) < $2
         UNION ALL
         SELECT 0, o.payment_order_id, o.captured_minor, o.currency, o.succeeded_at
         FROM payment_orders o JOIN payment_events e ON e.checkout_id = o.checkout_id
         WHERE e.payment_method = 'token' AND o.payment_order_status = 'SUCCESS' AND o.succeeded_at >= $1
           AND o.succeeded_at < $2",
        params![from, before],
        |r| {
            Ok(PaidCharge {
                hosted_page: r.get(0)?,
                id: r.get(1)?,
                amount_minor: r.get(2)?,
                currency: r.get(3)?,
                paid_at: r.get(4)?,
            })
        },
    )
}

/// A token order with what the executor needs to charge it.
pub struct ChargeTarget {
    pub order: Order,
    pub token: String,
    /// The checkout's description and metadata (the charge carries the
    /// order's own, or its checkout's).
    pub checkout_description: Option<String>,
    pub checkout_metadata: Metadata,
    pub capture_method: CaptureMethod,
}

pub fn load_charge_target(tx: &Tx, payment_order_id: &str) -> anyhow::Result<Option<ChargeTarget>> {
    let Some(order) = load_order(tx, payment_order_id)? else {
        return Ok(None);
    };
    type Head = (Option<String>, Option<String>, Option<String>, CaptureMethod);
    let (token, description, metadata, capture_method): Head = tx.query_row(
        "SELECT payment_method_token, description, metadata, capture_method FROM payment_events WHERE checkout_id = $1",
        params![order.checkout_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let token = token.with_context(|| format!("order {payment_order_id} is not a token payment"))?;
    let checkout_metadata = Metadata::from_stored(metadata.as_deref())?;
    Ok(Some(ChargeTarget { order, token, checkout_description: description, checkout_metadata, capture_method }))
}

/// What the PSP itself says it charged: read from its own copy of the
/// payment intent or checkout session, never from a webhook's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub payment_intent_id: String,
    /// The checkout the PSP's object names as its own.
    pub checkout_id: CheckoutId,
    /// A token charge's one order; None for a hosted checkout's charge,
    /// which pays all of its orders.
    pub payment_order_id: Option<PaymentOrderId>,
    pub amount: Money,
}

/// Records that `charge` pays `order` (just moved to SUCCESS) what it is
/// charged: the charge is stored the first time, and each order it backs
/// must be of its checkout (and be its order, for a token charge), in its
/// currency, and within what is left of its amount. Otherwise nothing is written and the
/// caller's transaction must roll back: no charge pays for what it did not.
pub fn back_with_charge(tx: &Tx, charge: &Charge, order: &Order) -> anyhow::Result<()> {
    tx.execute(
        "INSERT INTO psp_charges (payment_intent_id, checkout_id, payment_order_id, amount_minor, currency, recorded_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (payment_intent_id) DO NOTHING",
        params![
            charge.payment_intent_id,
            charge.checkout_id,
            charge.payment_order_id,
            charge.amount.amount_minor(),
            charge.amount.currency(),
            crate::db::now()
        ],
    )
    .context("recording a PSP charge")?;
    let backed = tx
        .execute(
            "UPDATE psp_charges SET backed_minor = backed_minor + $2
             WHERE payment_intent_id = $1 AND checkout_id = $3 AND currency = $4
               AND (payment_order_id IS NULL OR payment_order_id = $5)
               AND backed_minor + $2 <= amount_minor",
            params![
                charge.payment_intent_id,
                order.charged_minor(),
                order.checkout_id,
                order.amount.currency(),
                order.payment_order_id
            ],
        )
        .context("backing an order with a PSP charge")?;
    anyhow::ensure!(
        backed == 1,
        "PSP charge {} ({} {} for checkout {}) cannot pay order {} ({} {} of checkout {}): \
         another checkout's or order's charge, or more than it charged",
        charge.payment_intent_id,
        charge.amount.amount_minor(),
        charge.amount.currency(),
        charge.checkout_id,
        order.payment_order_id,
        order.charged_minor(),
        order.amount.currency(),
        order.checkout_id
    );
    Ok(())
}

pub fn set_payment_intent(tx: &Tx, payment_order_id: &str, intent_id: &str) -> anyhow::Result<()> {
    tx.execute(
        "UPDATE payment_orders SET psp_payment_intent_id = $2
         WHERE payment_order_id = $1 AND psp_payment_intent_id IS DISTINCT FROM $2",
        params![payment_order_id, intent_id],
    )
    .context("recording a payment order's intent")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::payments::model::{Buyer, NewOrder, SellerId};

    /// A database with one api key and one token checkout of one order of 10.00 EUR.
    fn one_order() -> (tempfile::TempDir, Db, String) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("s.db"), 2, 1000, &crate::db::till_migrations()).unwrap();
        let key = db.write_now(|tx| crate::api_keys::create(tx, "test")).unwrap().id;
        let order_id = PaymentOrderId::parse(&uuid::Uuid::new_v4().to_string()).unwrap();
        let new = NewCheckout {
            checkout_id: CheckoutId::parse(&uuid::Uuid::new_v4().to_string()).unwrap(),
            buyer: Buyer { id: "buyer".into(), email: None },
            orders: vec![NewOrder {
                payment_order_id: order_id.clone(),
                seller_id: SellerId::parse("seller").unwrap(),
                amount: Money::from_minor(1000, Currency::parse("EUR").unwrap()).unwrap(),
                description: None,
                metadata: Metadata::default(),
            }],
            payment_method: PaymentMethod::Token { token: "pm_card_visa".into() },
            description: None,
            metadata: Metadata::default(),
            capture_method: CaptureMethod::Automatic,
        };
        assert_eq!(db.write_now(|tx| insert_checkout(tx, &key, &new, "hash")).unwrap(), None);
        (dir, db, order_id.to_string())
    }

    #[test]
    fn refunds_take_at_most_the_amount_and_give_back_at_most_what_they_took() {
        let (_dir, db, id) = one_order();
        let add = |minor: i64| db.write_now(|tx| add_refunded(tx, &id, minor, minor)).unwrap();
        assert!(add(600));
        assert!(!add(401), "past the amount: refused, nothing changed");
        assert!(add(400));
        let refundable = db.read_now(|tx| refundable_order(tx, &id)).unwrap().unwrap();
        assert_eq!((refundable.order.refunded_minor, refundable.seller_amount_minor), (1000, 1000));
        db.write_now(|tx| release_refunded(tx, &id, 600, 600)).unwrap();
        assert!(db.write_now(|tx| release_refunded(tx, &id, 401, 401)).is_err(), "more than is refunded");
        assert_eq!(db.read_now(|tx| load_order(tx, &id)).unwrap().unwrap().refunded_minor, 400);
        assert!(db.read_now(|tx| refundable_order(tx, "nope")).unwrap().is_none());
    }
}
