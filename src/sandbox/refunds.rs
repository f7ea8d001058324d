//! Refunds of succeeded PaymentIntents. The refundable rest is reserved on
//! the intent when the refund is created (`amount_refunded`, guarded in SQL,
//! so refunds never exceed what the intent received, `amount_received`: all
//! of it, or what a manual capture took; also under concurrent requests).
//! A charge with a dispute that was not won is not refunded (Stripe's
//! `charge_disputed`). The ticker settles each refund later: `pending` → `succeeded`
//! (booked in the balance) or `failed` (the reservation released), each with
//! `refund.updated`. A refund fails when `metadata[sandbox_outcome]=fail` or
//! its amount is exactly [`FAILING_AMOUNT_MINOR`].

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::Shared;
use super::balance::{self, Category, Entry};
use super::error::StripeError;
use super::ids::{new_id, now_ms, now_s};
use super::params::{Metadata, Params, check_amount};
use super::payment_intents;
use super::reply::Reply;
use super::{disputes, events};

/// A refund is settled this long after it is created.
pub const SETTLE_DELAY_MS: i64 = 500;
/// A refund of exactly this many minor units fails (a test hook).
pub const FAILING_AMOUNT_MINOR: i64 = 13;
const FAILURE_REASON: &str = "declined";

#[derive(Debug, Clone, Serialize)]
pub struct Refund {
    pub id: String,
    pub object: &'static str,
    pub amount: i64,
    pub charge: String,
    pub created: i64,
    pub currency: String,
    pub failure_reason: Option<String>,
    pub metadata: Metadata,
    pub payment_intent: String,
    pub reason: Option<String>,
    pub status: String,
}

/// `POST /v1/refunds` (`payment_intent`, `amount` (default: the rest), `metadata[]`).
pub fn create(conn: &Connection, shared: &Shared, params: Params) -> Result<Reply, StripeError> {
    let pi_id = params.req_str("payment_intent")?;
    let intent = payment_intents::load(conn, &pi_id)?.ok_or_else(|| StripeError::InvalidRequest {
        code: Some("resource_missing"),
        param: Some("payment_intent".into()),
        message: format!("No such payment_intent: '{}'", super::error::truncate(&pi_id, 80)),
    })?;
    let Some(charge) = intent.latest_charge.clone().filter(|_| intent.status == "succeeded") else {
        return Err(StripeError::unexpected_state(
            "charge_not_refundable",
            "This PaymentIntent does not have a successful charge to refund.",
        ));
    };
    if disputes::blocks_refund(conn, &pi_id)? {
        return Err(StripeError::unexpected_state(
            "charge_disputed",
            format!("Charge {charge} has been charged back; cannot issue a refund."),
        ));
    }
    let refunded: i64 = conn
        .query_row("SELECT amount_refunded FROM payment_intents WHERE id = ?1", [&pi_id], |r| r.get(0))
        .map_err(anyhow::Error::from)?;
    let rest = intent.amount_received - refunded;
    let amount = match params.opt_i64("amount")? {
        Some(amount) => check_amount(amount, "amount")?,
        None if rest > 0 => rest,
        None => return Err(already_refunded()),
    };
    reserve(conn, &pi_id, amount, rest)?;
    let metadata = params.metadata("metadata")?;
    let id = new_id("re_");
    conn.execute(
        "INSERT INTO refunds (id, payment_intent, charge, amount, currency, status, metadata, settle_at_ms, created)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?8)",
        params![
            id,
            pi_id,
            charge,
            amount,
            intent.currency,
            serde_json::to_string(&metadata).map_err(anyhow::Error::from)?,
            now_ms() + SETTLE_DELAY_MS,
            now_s()
        ],
    )
    .map_err(anyhow::Error::from)?;
    let refund = load_required(conn, &id)?;
    events::emit(conn, shared, "refund.created", &refund)?;
    Reply::ok(&refund)
}

fn already_refunded() -> StripeError {
    StripeError::unexpected_state("charge_already_refunded", "This PaymentIntent has already been refunded in full.")
}

/// Reserves `amount` of the intent's unrefunded rest, guarded in SQL.
fn reserve(conn: &Connection, pi_id: &str, amount: i64, rest: i64) -> Result<(), StripeError> {
    let changed = conn
        .execute(
            "UPDATE payment_intents SET amount_refunded = amount_refunded + ?2
             WHERE id = ?1 AND status = 'succeeded' AND amount_refunded + ?2 <= amount_received",
            params![pi_id, amount],
        )
        .map_err(anyhow::Error::from)?;
    if changed == 1 {
        return Ok(());
    }
    if rest <= 0 {
        return Err(already_refunded());
    }
    Err(StripeError::invalid(
        "amount_too_large",
        "amount",
        format!("Refund amount ({amount}) is greater than the unrefunded amount on the PaymentIntent ({rest})."),
    ))
}

/// `GET /v1/refunds/{id}`.
pub fn retrieve(conn: &Connection, id: &str) -> Result<Reply, StripeError> {
    let refund = load(conn, id)?.ok_or_else(|| StripeError::no_such("refund", id, Some("refund")))?;
    Reply::ok(&refund)
}

/// Pending refunds whose time has come, at most `limit`.
pub fn due(conn: &Connection, now_ms: i64, limit: i64) -> anyhow::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT id FROM refunds WHERE status = 'pending' AND settle_at_ms <= ?1 ORDER BY settle_at_ms LIMIT ?2",
    )?;
    let ids = stmt.query_map(params![now_ms, limit], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

/// `pending` → `succeeded` or `failed`, with `refund.updated`.
pub fn settle(conn: &Connection, shared: &Shared, id: &str) -> anyhow::Result<()> {
    let Some(refund) = load(conn, id)?.filter(|r| r.status == "pending") else {
        return Ok(());
    };
    let fails = refund.amount == FAILING_AMOUNT_MINOR
        || refund.metadata.get("sandbox_outcome").map(String::as_str) == Some("fail");
    let (status, reason) = if fails { ("failed", Some(FAILURE_REASON)) } else { ("succeeded", None) };
    let changed = conn.execute(
        "UPDATE refunds SET status = ?2, failure_reason = ?3 WHERE id = ?1 AND status = 'pending'",
        params![id, status, reason],
    )?;
    anyhow::ensure!(changed == 1, "refund {id} left 'pending' while settling");
    if fails {
        release(conn, &refund)?;
    } else {
        book(conn, &refund)?;
    }
    let refund = load_required(conn, id)?;
    events::emit(conn, shared, "refund.updated", &refund)?;
    Ok(())
}

fn release(conn: &Connection, refund: &Refund) -> anyhow::Result<()> {
    let changed = conn.execute(
        "UPDATE payment_intents SET amount_refunded = amount_refunded - ?2
         WHERE id = ?1 AND amount_refunded >= ?2",
        params![refund.payment_intent, refund.amount],
    )?;
    anyhow::ensure!(changed == 1, "refund {} was not reserved on its intent", refund.id);
    Ok(())
}

fn book(conn: &Connection, refund: &Refund) -> anyhow::Result<()> {
    let intent = payment_intents::load_required(conn, &refund.payment_intent)?;
    balance::book(
        conn,
        &Entry {
            created: now_s(),
            currency: &refund.currency,
            amount: -refund.amount,
            fee: 0,
            category: Category::Refund,
            source_id: &refund.id,
            payment_intent: Some(&refund.payment_intent),
            description: Some("REFUND FOR CHARGE"),
            payment_metadata: &intent.metadata,
        },
    )?;
    Ok(())
}

fn load_required(conn: &Connection, id: &str) -> anyhow::Result<Refund> {
    load(conn, id)?.ok_or_else(|| anyhow::anyhow!("refund {id} vanished"))
}

fn load(conn: &Connection, id: &str) -> anyhow::Result<Option<Refund>> {
    let row = conn
        .query_row(
            "SELECT id, payment_intent, charge, amount, currency, status, failure_reason, metadata, created
             FROM refunds WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?),
                    (r.get::<_, i64>(3)?, r.get::<_, String>(4)?, r.get::<_, String>(5)?),
                    (r.get::<_, Option<String>>(6)?, r.get::<_, String>(7)?, r.get::<_, i64>(8)?),
                ))
            },
        )
        .optional()?;
    let Some(((id, payment_intent, charge), (amount, currency, status), (failure_reason, metadata, created))) = row
    else {
        return Ok(None);
    };
    Ok(Some(Refund {
        id,
        object: "refund",
        amount,
        charge,
        created,
        currency,
        failure_reason,
        metadata: serde_json::from_str(&metadata)?,
        payment_intent,
        reason: None,
        status,
    }))
}
