//! Manual capture: `POST /v1/payment_intents/{id}/capture` takes an
//! authorized intent (`requires_capture`) to `succeeded`, booking what was
//! captured (the rest is released); `POST /v1/payment_intents/{id}/cancel`
//! takes any state but the final ones to `canceled`; and the ticker cancels
//! authorizations not captured within `[sandbox] authorization_days`
//! (`cancellation_reason=automatic`), as Stripe does after 7 days. Every
//! transition is guarded in SQL and sends its event in its transaction.

use rusqlite::{Connection, params};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::{PaymentIntent, book_charge, dispute_due_ms, load_or_404, load_required};
use crate::sandbox::Shared;
use crate::sandbox::error::{StripeError, truncate};
use crate::sandbox::events;
use crate::sandbox::ids::now_s;
use crate::sandbox::params::{Metadata, Params};
use crate::sandbox::reply::Reply;

/// The statuses an intent is canceled from, for the SQL guard (the sandbox
/// never has Stripe's `requires_action` or `processing`).
const CANCELABLE_SQL: &str = "'requires_payment_method', 'requires_confirmation', 'requires_capture'";
/// The cancelable statuses as Stripe's message lists them.
const CANCELABLE_AS_STRIPE_SAYS: &str =
    "requires_payment_method, requires_capture, requires_confirmation, requires_action, processing";
/// The reasons a caller may give; `automatic` is Stripe's own (an expired authorization).
const CALLER_REASONS: [&str; 4] = ["duplicate", "fraudulent", "requested_by_customer", "abandoned"];
pub const EXPIRED_REASON: &str = "automatic";
const MS_PER_DAY: i64 = 86_400_000;

/// `POST /v1/payment_intents/{id}/capture` (`amount_to_capture`, default all
/// that is capturable; `metadata[]`, merged into the intent's).
pub fn capture(conn: &Connection, shared: &Shared, id: &str, params: Params) -> Result<Reply, StripeError> {
    params.only(&["amount_to_capture", "metadata"])?;
    let requested = params.opt_i64("amount_to_capture")?;
    if requested.is_some_and(|amount| amount < 1) {
        return Err(StripeError::invalid(
            "parameter_invalid_integer",
            "amount_to_capture",
            "Invalid amount_to_capture: this value must be greater than or equal to 1.",
        ));
    }
    let patch = params.metadata_patch("metadata")?;
    let intent = load_or_404(conn, id)?;
    if intent.status != "requires_capture" {
        return Err(StripeError::unexpected_state(
            "payment_intent_unexpected_state",
            format!(
                "This PaymentIntent could not be captured because it has a status of {}. Only a PaymentIntent \
                 with one of the following statuses may be captured: requires_capture.",
                intent.status
            ),
        ));
    }
    let amount = requested.unwrap_or(intent.amount_capturable);
    if amount > intent.amount_capturable {
        return Err(StripeError::invalid(
            "amount_too_large",
            "amount_to_capture",
            format!(
                "The amount to capture ({amount}) is greater than the amount capturable on this PaymentIntent ({}).",
                intent.amount_capturable
            ),
        ));
    }
    let metadata = patch.apply(&intent.metadata, "metadata")?;
    Reply::ok(&capture_authorized(conn, shared, id, amount, &metadata)?)
}

/// `requires_capture` → `succeeded` with `amount` received, the charge line
/// of that amount, the dispute test card's dispute scheduled, and
/// `payment_intent.succeeded`.
fn capture_authorized(
    conn: &Connection,
    shared: &Shared,
    id: &str,
    amount: i64,
    metadata: &Metadata,
) -> anyhow::Result<PaymentIntent> {
    let changed = conn.execute(
        "UPDATE payment_intents SET status = 'succeeded', amount_received = ?2, amount_capturable = 0,
             metadata = ?3, dispute_at_ms = CASE WHEN card_disputes = 1 THEN ?4 END
         WHERE id = ?1 AND status = 'requires_capture' AND ?2 BETWEEN 1 AND amount_capturable",
        params![id, amount, serde_json::to_string(metadata)?, dispute_due_ms(shared)],
    )?;
    anyhow::ensure!(changed == 1, "payment intent {id} left 'requires_capture' while being captured");
    let intent = load_required(conn, id)?;
    book_charge(conn, shared, &intent, amount)?;
    events::emit(conn, shared, "payment_intent.succeeded", &intent)?;
    Ok(intent)
}

/// `POST /v1/payment_intents/{id}/cancel` (`cancellation_reason` optional).
pub fn cancel(conn: &Connection, shared: &Shared, id: &str, params: Params) -> Result<Reply, StripeError> {
    params.only(&["cancellation_reason"])?;
    let reason = params.opt_str("cancellation_reason")?;
    if let Some(reason) = reason.as_deref().filter(|r| !CALLER_REASONS.contains(r)) {
        return Err(StripeError::invalid(
            "parameter_invalid",
            "cancellation_reason",
            format!(
                "Invalid cancellation_reason: must be one of {} (not '{}').",
                CALLER_REASONS.join(", "),
                truncate(reason, 30)
            ),
        ));
    }
    let intent = load_or_404(conn, id)?;
    match cancel_open(conn, shared, id, reason.as_deref())? {
        Some(canceled) => Reply::ok(&canceled),
        None => Err(StripeError::unexpected_state(
            "payment_intent_unexpected_state",
            format!(
                "You cannot cancel this PaymentIntent because it has a status of {}. Only a PaymentIntent with \
                 one of the following statuses may be canceled: {CANCELABLE_AS_STRIPE_SAYS}.",
                intent.status
            ),
        )),
    }
}

/// → `canceled` (an authorization released: nothing capturable, no dispute
/// to come) with `payment_intent.canceled`; `None` if the intent was final.
pub fn cancel_open(
    conn: &Connection,
    shared: &Shared,
    id: &str,
    reason: Option<&str>,
) -> anyhow::Result<Option<PaymentIntent>> {
    let changed = conn.execute(
        &format!(
            "UPDATE payment_intents SET status = 'canceled', canceled_at = ?2, cancellation_reason = ?3,
                 amount_capturable = 0, dispute_at_ms = NULL
             WHERE id = ?1 AND status IN ({CANCELABLE_SQL})"
        ),
        params![id, now_s(), reason],
    )?;
    if changed == 0 {
        return Ok(None);
    }
    let intent = load_required(conn, id)?;
    events::emit(conn, shared, "payment_intent.canceled", &intent)?;
    Ok(Some(intent))
}

/// Authorized intents older than `authorization_days` at `now_ms`, oldest
/// first, at most `limit`: the ticker cancels them ([`EXPIRED_REASON`]).
pub fn due_for_expiry(
    conn: &Connection,
    authorization_days: Decimal,
    now_ms: i64,
    limit: i64,
) -> anyhow::Result<Vec<String>> {
    let period_ms = (authorization_days * Decimal::from(MS_PER_DAY))
        .round()
        .to_i64()
        .ok_or_else(|| anyhow::anyhow!("authorization_days out of range"))?;
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM payment_intents WHERE status = 'requires_capture' AND authorized_at_ms <= ?1
         ORDER BY authorized_at_ms LIMIT ?2",
    )?;
    let ids = stmt
        .query_map(params![now_ms.saturating_sub(period_ms), limit], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}
