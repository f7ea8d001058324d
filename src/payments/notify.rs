//! Telling the shop: each order that reaches a final state and each
//! checkout that completes becomes a merchant webhook event, stored in the
//! same transaction as the change itself.

use anyhow::Context;
use rusqlite::Transaction;

use crate::payments::Policy;
use crate::payments::store;
use crate::webhooks::out;

/// Call after an order became SUCCESS or FAILED in this transaction.
pub fn order_final(tx: &Transaction, payment_order_id: &str, policy: Policy) -> anyhow::Result<()> {
    let status: String = tx
        .prepare_cached("SELECT payment_order_status FROM payment_orders WHERE payment_order_id = ?1")?
        .query_row([payment_order_id], |r| r.get(0))?;
    let event = match status.as_str() {
        "SUCCESS" => "payment_order.succeeded",
        "FAILED" => "payment_order.failed",
        _ => return Ok(()),
    };
    if !out::wanted(tx, event)? {
        return Ok(());
    }
    let order = store::load_order(tx, payment_order_id)?.with_context(|| format!("order {payment_order_id}"))?;
    out::emit(tx, event, payment_order_id, &order, policy.webhook_attempts)
}

/// Marks the checkout done once all its orders are final, and tells the shop once.
pub fn checkout_progress(tx: &Transaction, checkout_id: &str, policy: Policy) -> anyhow::Result<()> {
    if !store::refresh_payment_done(tx, checkout_id)? || !out::wanted(tx, "checkout.completed")? {
        return Ok(());
    }
    let checkout = store::load_checkout(tx, checkout_id)?.with_context(|| format!("checkout {checkout_id}"))?;
    out::emit(tx, "checkout.completed", checkout_id, &checkout, policy.webhook_attempts)
}
