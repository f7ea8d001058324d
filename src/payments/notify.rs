//! Telling the shop: each order that reaches a final state and each
//! checkout that completes becomes a merchant webhook event, stored in the
//! same transaction as the change itself.

use anyhow::Context;
use rusqlite::Transaction;

use crate::events;
use crate::payments::Policy;
use crate::payments::model::OrderStatus;
use crate::payments::store;

/// Call after an order became SUCCESS or FAILED in this transaction.
pub fn order_final(
    tx: &Transaction,
    payment_order_id: &str,
    status: OrderStatus,
    policy: Policy,
) -> anyhow::Result<()> {
    orders_final(tx, &[payment_order_id], status, policy)
}

/// Call after orders became `status` (SUCCESS or FAILED) in this transaction.
pub fn orders_final(
    tx: &Transaction,
    payment_order_ids: &[&str],
    status: OrderStatus,
    policy: Policy,
) -> anyhow::Result<()> {
    let event = match status {
        OrderStatus::Success => "payment_order.succeeded",
        OrderStatus::Failed => "payment_order.failed",
        _ => return Ok(()),
    };
    // seam: transitional
    if payment_order_ids.is_empty() || !events::wanted(&crate::db::Tx::sqlite(tx), event)? {
        return Ok(());
    }
    for id in payment_order_ids {
        let order = store::load_order(tx, id)?.with_context(|| format!("order {id}"))?;
        // seam: transitional
        events::emit(&crate::db::Tx::sqlite(tx), event, id, &order, policy.webhook_attempts)?;
    }
    Ok(())
}

/// Marks the checkout done once all its orders are final, and tells the shop once.
pub fn checkout_progress(tx: &Transaction, checkout_id: &str, policy: Policy) -> anyhow::Result<()> {
    // seam: transitional
    if !store::refresh_payment_done(tx, checkout_id)?
        || !events::wanted(&crate::db::Tx::sqlite(tx), "checkout.completed")?
    {
        return Ok(());
    }
    let checkout = store::load_checkout(tx, checkout_id)?.with_context(|| format!("checkout {checkout_id}"))?;
    // seam: transitional
    events::emit(&crate::db::Tx::sqlite(tx), "checkout.completed", checkout_id, &checkout, policy.webhook_attempts)
}
