//! Telling the shop: each order that reaches a final state and each
//! checkout that completes becomes a merchant webhook event, stored in the
//! same transaction as the change itself.

use anyhow::Context;

use crate::db::Tx;
use crate::events;
use crate::payments::Policy;
use crate::payments::model::OrderStatus;
use crate::payments::store::{self, OrderView};

/// Call after an order became SUCCESS or FAILED in this transaction.
pub fn order_final(tx: &Tx, payment_order_id: &str, status: OrderStatus, policy: Policy) -> anyhow::Result<()> {
    orders_final(tx, &[payment_order_id], status, policy)
}

/// Call after orders became `status` (SUCCESS, FAILED, or AUTHORIZED) in this transaction.
pub fn orders_final(tx: &Tx, payment_order_ids: &[&str], status: OrderStatus, policy: Policy) -> anyhow::Result<()> {
    let event = match status {
        OrderStatus::Success => "payment_order.succeeded",
        OrderStatus::Failed => "payment_order.failed",
        OrderStatus::Authorized => "payment_order.authorized",
        OrderStatus::NotStarted | OrderStatus::Executing => return Ok(()),
    };
    // Every event is stored, whether an endpoint wants it or not (GET /v1/events).
    for id in payment_order_ids {
        let order = store::load_order(tx, id)?.with_context(|| format!("order {id}"))?;
        events::emit(tx, event, id, &OrderView::from(&order), policy.webhook_attempts)?;
    }
    Ok(())
}

/// Marks the checkout done once all its orders are final, and tells the
/// shop once: `checkout.completed` carries its `status` (`succeeded`,
/// `partially_succeeded`, `failed` or `canceled`). A manual checkout whose
/// orders all wait for capture (or failed) tells the shop once too:
/// `checkout.authorized` (ship, then capture).
pub fn checkout_progress(tx: &Tx, checkout_id: &str, policy: Policy) -> anyhow::Result<()> {
    let event = if store::refresh_payment_done(tx, checkout_id)? {
        "checkout.completed"
    } else if store::mark_checkout_authorized(tx, checkout_id)? {
        "checkout.authorized"
    } else {
        return Ok(());
    };
    let checkout = store::checkout_view(tx, checkout_id)?.with_context(|| format!("checkout {checkout_id}"))?;
    events::emit(tx, event, checkout_id, &checkout, policy.webhook_attempts)
}
