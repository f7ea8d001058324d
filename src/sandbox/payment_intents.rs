//! PaymentIntents: created by the API (`POST /v1/payment_intents`, confirmed
//! with a test payment method) or by a hosted checkout that was paid. The
//! state machine is Stripe's subset: `requires_payment_method` ⇄
//! `requires_confirmation` → `succeeded` (final). A decline leaves the intent
//! in `requires_payment_method` with `last_payment_error`, and answers 402
//! with the intent inside the card error, as Stripe does; that reply is
//! stored under the idempotency key like any other.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::json;

use super::Shared;
use super::api::Reply;
use super::balance::{self, Category, Entry};
use super::cards::{self, Card, Decline, Outcome};
use super::error::{ErrorBody, StripeError, envelope_json};
use super::events;
use super::ids::{new_id, now_s};
use super::params::{Metadata, Params};

pub const MAX_DESCRIPTION_CHARS: usize = 1_000;

#[derive(Debug, Clone, Serialize)]
pub struct PaymentIntent {
    pub id: String,
    pub object: &'static str,
    pub amount: i64,
    pub amount_capturable: i64,
    pub amount_received: i64,
    pub capture_method: &'static str,
    pub client_secret: String,
    pub confirmation_method: &'static str,
    pub created: i64,
    pub currency: String,
    pub description: Option<String>,
    pub last_payment_error: Option<serde_json::Value>,
    pub latest_charge: Option<String>,
    pub livemode: bool,
    pub metadata: Metadata,
    pub payment_method: Option<String>,
    pub payment_method_types: [&'static str; 1],
    pub status: String,
}

/// What a new intent is made of.
pub struct NewIntent {
    pub amount: i64,
    pub currency: String,
    pub description: Option<String>,
    pub metadata: Metadata,
    pub payment_method: Option<String>,
    pub checkout_session: Option<String>,
}

/// `POST /v1/payment_intents`.
pub fn create(conn: &Connection, shared: &Shared, params: Params) -> Result<Reply, StripeError> {
    let amount = params.amount("amount")?;
    let currency = params.currency("currency")?;
    let payment_method = params.opt_str("payment_method")?;
    let confirm = params.opt_bool("confirm")?.unwrap_or(false);
    let description = params.opt_str("description")?;
    if description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS) {
        return Err(StripeError::invalid(
            "parameter_invalid",
            "description",
            format!("description can be at most {MAX_DESCRIPTION_CHARS} characters."),
        ));
    }
    let card = payment_method.as_deref().map(test_payment_method).transpose()?;
    if confirm && card.is_none() {
        return Err(missing_payment_method());
    }
    let id = insert(
        conn,
        &NewIntent {
            amount,
            currency,
            description,
            metadata: params.metadata("metadata")?,
            payment_method: payment_method.clone(),
            checkout_session: None,
        },
    )?;
    match (confirm, card, payment_method) {
        (true, Some(card), Some(pm)) => attempt(conn, shared, &id, &pm, &card),
        _ => Reply::ok(&load_required(conn, &id)?),
    }
}

/// `POST /v1/payment_intents/{id}/confirm` (`payment_method` optional if already set).
pub fn confirm(conn: &Connection, shared: &Shared, id: &str, params: Params) -> Result<Reply, StripeError> {
    let intent = load(conn, id)?.ok_or_else(|| StripeError::no_such("payment_intent", id, Some("intent")))?;
    if intent.status == "succeeded" {
        return Err(StripeError::unexpected_state(
            "payment_intent_unexpected_state",
            "You cannot confirm this PaymentIntent because it has a status of succeeded. Only a PaymentIntent \
             with one of the following statuses may be confirmed: requires_confirmation, requires_payment_method.",
        ));
    }
    let pm = params.opt_str("payment_method")?.or(intent.payment_method).ok_or_else(missing_payment_method)?;
    let card = test_payment_method(&pm)?;
    attempt(conn, shared, id, &pm, &card)
}

/// `GET /v1/payment_intents/{id}`.
pub fn retrieve(conn: &Connection, id: &str) -> Result<Reply, StripeError> {
    let intent = load(conn, id)?.ok_or_else(|| StripeError::no_such("payment_intent", id, Some("intent")))?;
    Reply::ok(&intent)
}

fn missing_payment_method() -> StripeError {
    StripeError::invalid(
        "payment_intent_unexpected_state",
        "payment_method",
        "You cannot confirm this PaymentIntent because it's missing a payment method. Pass `payment_method`.",
    )
}

fn test_payment_method(pm: &str) -> Result<Card, StripeError> {
    cards::payment_method(pm).ok_or_else(|| StripeError::InvalidRequest {
        code: Some("resource_missing"),
        param: Some("payment_method".into()),
        message: format!(
            "No such PaymentMethod: '{}'. The sandbox knows pm_card_visa, pm_card_mastercard, \
             pm_card_chargeDeclined and pm_card_chargeDeclinedInsufficientFunds.",
            super::error::truncate(pm, 80)
        ),
    })
}

/// Charges the card: success or a stored 402 decline.
fn attempt(conn: &Connection, shared: &Shared, id: &str, pm: &str, card: &Card) -> Result<Reply, StripeError> {
    match card.outcome {
        Outcome::Approve => Reply::ok(&succeed(conn, shared, id, pm, card)?),
        Outcome::Decline(decline) => {
            let intent = fail(conn, shared, id, pm, card, decline)?;
            Ok(card_error_reply(&intent, decline)?)
        }
    }
}

fn card_error_reply(intent: &PaymentIntent, decline: Decline) -> anyhow::Result<Reply> {
    let intent_json = serde_json::to_value(intent)?;
    let body = envelope_json(ErrorBody {
        code: Some(decline.code),
        decline_code: Some(decline.decline_code),
        message: decline.message,
        param: None,
        payment_intent: Some(&intent_json),
        kind: "card_error",
    });
    Ok(Reply::raw_json(402, body))
}

/// Inserts an intent awaiting confirmation (or a payment method).
pub fn insert(conn: &Connection, new: &NewIntent) -> anyhow::Result<String> {
    let id = new_id("pi_");
    let status = if new.payment_method.is_some() { "requires_confirmation" } else { "requires_payment_method" };
    conn.execute(
        "INSERT INTO payment_intents (id, amount, currency, status, payment_method, description, metadata,
             checkout_session, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            id,
            new.amount,
            new.currency,
            status,
            new.payment_method,
            new.description,
            serde_json::to_string(&new.metadata)?,
            new.checkout_session,
            now_s()
        ],
    )?;
    Ok(id)
}

/// → `succeeded`: the charge, its balance transaction and `payment_intent.succeeded`.
pub fn succeed(conn: &Connection, shared: &Shared, id: &str, pm: &str, card: &Card) -> anyhow::Result<PaymentIntent> {
    let charge = new_id("ch_");
    let changed = conn.execute(
        "UPDATE payment_intents SET status = 'succeeded', payment_method = ?2, latest_charge = ?3,
             card_brand = ?4, card_last4 = ?5, last_payment_error = NULL
         WHERE id = ?1 AND status IN ('requires_payment_method', 'requires_confirmation')",
        params![id, pm, charge, card.brand, card.last4],
    )?;
    anyhow::ensure!(changed == 1, "payment intent {id} was not awaiting a payment");
    let intent = load_required(conn, id)?;
    let fee = balance::fee_minor(intent.amount, shared.settings.fee_percent, shared.settings.fee_fixed)?;
    balance::book(
        conn,
        &Entry {
            created: now_s(),
            currency: &intent.currency,
            amount: intent.amount,
            fee,
            category: Category::Charge,
            source_id: &charge,
            payment_intent: Some(&intent.id),
            description: intent.description.as_deref(),
            payment_metadata: &intent.metadata,
        },
    )?;
    events::emit(conn, shared, "payment_intent.succeeded", &intent)?;
    Ok(intent)
}

fn fail(
    conn: &Connection,
    shared: &Shared,
    id: &str,
    pm: &str,
    card: &Card,
    decline: Decline,
) -> anyhow::Result<PaymentIntent> {
    let error = json!({
        "type": "card_error",
        "code": decline.code,
        "decline_code": decline.decline_code,
        "message": decline.message,
        "payment_method": {"id": pm, "object": "payment_method", "type": "card",
                           "card": {"brand": card.brand, "last4": card.last4}},
    });
    let changed = conn.execute(
        "UPDATE payment_intents SET status = 'requires_payment_method', payment_method = NULL,
             last_payment_error = ?2
         WHERE id = ?1 AND status IN ('requires_payment_method', 'requires_confirmation')",
        params![id, error.to_string()],
    )?;
    anyhow::ensure!(changed == 1, "payment intent {id} was not awaiting a payment");
    let intent = load_required(conn, id)?;
    events::emit(conn, shared, "payment_intent.payment_failed", &intent)?;
    Ok(intent)
}

pub fn load_required(conn: &Connection, id: &str) -> anyhow::Result<PaymentIntent> {
    load(conn, id)?.ok_or_else(|| anyhow::anyhow!("payment intent {id} vanished"))
}

pub fn load(conn: &Connection, id: &str) -> anyhow::Result<Option<PaymentIntent>> {
    let intent = conn
        .query_row(
            "SELECT id, amount, currency, status, payment_method, description, metadata,
                    last_payment_error, latest_charge, created
             FROM payment_intents WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?),
                    (r.get::<_, String>(3)?, r.get::<_, Option<String>>(4)?),
                    (r.get::<_, Option<String>>(5)?, r.get::<_, String>(6)?),
                    (r.get::<_, Option<String>>(7)?, r.get::<_, Option<String>>(8)?, r.get::<_, i64>(9)?),
                ))
            },
        )
        .optional()?;
    let Some(((id, amount, currency), (status, payment_method), (description, metadata), (error, charge, created))) =
        intent
    else {
        return Ok(None);
    };
    let last_payment_error = error.as_deref().map(serde_json::from_str).transpose()?;
    Ok(Some(PaymentIntent {
        client_secret: format!("{id}_secret_sandbox"),
        id,
        object: "payment_intent",
        amount,
        amount_capturable: 0,
        amount_received: if status == "succeeded" { amount } else { 0 },
        capture_method: "automatic",
        confirmation_method: "automatic",
        created,
        currency,
        description,
        last_payment_error,
        latest_charge: charge,
        livemode: false,
        metadata: serde_json::from_str(&metadata)?,
        payment_method,
        payment_method_types: ["card"],
        status,
    }))
}
