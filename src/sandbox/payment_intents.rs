//! PaymentIntents: created by the API (`POST /v1/payment_intents`, confirmed
//! with a test payment method) or by a hosted checkout that was paid. The
//! state machine is Stripe's subset: `requires_payment_method` ⇄
//! `requires_confirmation` → `succeeded` (final). A decline leaves the intent
//! in `requires_payment_method` with `last_payment_error`, and answers 402
//! with the intent inside the card error, as Stripe does; that reply is
//! stored under the idempotency key like any other.
//!
//! Confirmation needs what a current Stripe account needs: an intent that
//! accepts the Dashboard's payment methods with redirects allowed (the
//! default from API version 2023-08-16, or `automatic_payment_methods[enabled]=true`
//! alone) is confirmed only with a `return_url` or `off_session=true`;
//! `automatic_payment_methods[allow_redirects]=never` or
//! `payment_method_types[]=card` lift that.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Shared;
use super::balance::{self, Category, Entry};
use super::cards::{self, Card, Decline, Outcome};
use super::error::{ErrorBody, StripeError, envelope_json};
use super::events::{self, parse_url};
use super::ids::{new_id, now_s};
use super::params::{Metadata, Params};
use super::reply::Reply;
use super::versions::Version;

pub const MAX_DESCRIPTION_CHARS: usize = 1_000;
/// Stripe's longest `statement_descriptor_suffix`.
pub const MAX_SUFFIX_CHARS: usize = 22;
/// Characters Stripe refuses in statement descriptors.
const SUFFIX_FORBIDDEN: &[char] = &['<', '>', '\\', '\'', '"', '*'];
/// The payment method types the sandbox account has activated.
const ACTIVATED_TYPES: [&str; 1] = ["card"];

/// Stripe's `automatic_payment_methods` of an intent that has them enabled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutomaticPaymentMethods {
    /// `always` or `never`.
    pub allow_redirects: String,
    pub enabled: bool,
}

impl AutomaticPaymentMethods {
    const ALWAYS: &str = "always";
    const NEVER: &str = "never";

    fn may_redirect(&self) -> bool {
        self.enabled && self.allow_redirects == Self::ALWAYS
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PaymentIntent {
    pub id: String,
    pub object: &'static str,
    pub amount: i64,
    pub amount_capturable: i64,
    pub amount_received: i64,
    pub automatic_payment_methods: Option<AutomaticPaymentMethods>,
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
    pub statement_descriptor_suffix: Option<String>,
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
    /// `None`: not enabled; the intent takes cards.
    pub automatic_payment_methods: Option<AutomaticPaymentMethods>,
    pub statement_descriptor_suffix: Option<String>,
}

/// What a confirmation carries besides the payment method.
struct Confirmation {
    return_url: Option<String>,
    off_session: bool,
}

/// `POST /v1/payment_intents`, served with `version` (which decides the
/// default of `automatic_payment_methods`).
pub fn create(conn: &Connection, shared: &Shared, params: Params, version: &Version) -> Result<Reply, StripeError> {
    let new = parse_new(&params, version)?;
    let confirm = params.opt_bool("confirm")?.unwrap_or(false);
    let confirmation = parse_confirmation(&params)?;
    if !confirm {
        only_when_confirming(&confirmation)?;
    }
    let card = new.payment_method.as_deref().map(test_payment_method).transpose()?;
    if confirm {
        if card.is_none() {
            return Err(missing_payment_method());
        }
        check_redirects(new.automatic_payment_methods.as_ref(), &confirmation)?;
    }
    let id = insert(conn, &new)?;
    match (confirm, card, new.payment_method) {
        (true, Some(card), Some(pm)) => attempt(conn, shared, &id, &pm, &card),
        _ => Reply::ok(&load_required(conn, &id)?),
    }
}

fn parse_new(params: &Params, version: &Version) -> Result<NewIntent, StripeError> {
    let amount = params.amount("amount")?;
    let currency = params.currency("currency")?;
    let description = params.opt_str("description")?;
    if description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS) {
        return Err(StripeError::invalid(
            "parameter_invalid",
            "description",
            format!("description can be at most {MAX_DESCRIPTION_CHARS} characters."),
        ));
    }
    Ok(NewIntent {
        amount,
        currency,
        description,
        metadata: params.metadata("metadata")?,
        payment_method: params.opt_str("payment_method")?,
        checkout_session: None,
        automatic_payment_methods: parse_payment_methods(params, version)?,
        statement_descriptor_suffix: parse_suffix(params, "statement_descriptor_suffix")?,
    })
}

/// `automatic_payment_methods[…]` and `payment_method_types[]`, checked as
/// Stripe checks them: the automatic methods the intent has enabled, if any
/// (given neither, from API version 2023-08-16 on, enabled with redirects).
fn parse_payment_methods(params: &Params, version: &Version) -> Result<Option<AutomaticPaymentMethods>, StripeError> {
    let automatic = params.child("automatic_payment_methods")?.map(|a| parse_automatic(&a)).transpose()?;
    let types = params.str_list("payment_method_types")?;
    if let Some(bad) = types.iter().find(|t| !ACTIVATED_TYPES.contains(&t.as_str())) {
        return Err(StripeError::invalid(
            "parameter_invalid",
            "payment_method_types",
            format!(
                "The payment method type \"{}\" is invalid. Please ensure the provided type is activated in your \
                 dashboard (https://dashboard.stripe.com/account/payments/settings) and your account is enabled \
                 for any preview features that you are trying to use.",
                super::error::truncate(bad, 40)
            ),
        ));
    }
    match (automatic, types.is_empty()) {
        (Some(a), false) if a.enabled => Err(StripeError::InvalidRequest {
            code: None,
            param: None,
            message: "You may only specify one of these parameters: automatic_payment_methods, payment_method_types."
                .into(),
        }),
        (Some(a), _) => Ok(a.enabled.then_some(a)),
        (None, false) => Ok(None),
        (None, true) => Ok(version.automatic_payment_methods_by_default().then(|| AutomaticPaymentMethods {
            allow_redirects: AutomaticPaymentMethods::ALWAYS.into(),
            enabled: true,
        })),
    }
}

fn parse_automatic(apm: &Params) -> Result<AutomaticPaymentMethods, StripeError> {
    let enabled = apm.opt_bool("enabled")?.ok_or_else(|| StripeError::missing(&apm.name("enabled")))?;
    let allow_redirects = match apm.opt_str("allow_redirects")?.as_deref() {
        None | Some(AutomaticPaymentMethods::ALWAYS) => AutomaticPaymentMethods::ALWAYS,
        Some(AutomaticPaymentMethods::NEVER) => AutomaticPaymentMethods::NEVER,
        Some(_) => {
            let name = apm.name("allow_redirects");
            return Err(StripeError::invalid(
                "parameter_invalid",
                &name,
                format!("Invalid {name}: must be one of always or never"),
            ));
        }
    };
    Ok(AutomaticPaymentMethods { allow_redirects: allow_redirects.into(), enabled })
}

/// A `statement_descriptor_suffix` by Stripe's rules: at most 22
/// characters, at least one letter, none of `<>\'"*`. Empty: not set.
pub fn parse_suffix(params: &Params, key: &str) -> Result<Option<String>, StripeError> {
    let Some(suffix) = params.opt_str(key)? else {
        return Ok(None);
    };
    let name = params.name(key);
    let why = if suffix.chars().count() > MAX_SUFFIX_CHARS {
        format!("{name} must be at most {MAX_SUFFIX_CHARS} characters.")
    } else if !suffix.chars().any(char::is_alphabetic) {
        format!("{name} must contain at least one letter.")
    } else if suffix.contains(SUFFIX_FORBIDDEN) {
        format!("{name} cannot contain any of the special characters < > \\ ' \" *.")
    } else {
        return Ok(Some(suffix));
    };
    Err(StripeError::invalid("parameter_invalid", name, why))
}

fn parse_confirmation(params: &Params) -> Result<Confirmation, StripeError> {
    let off_session = match params.opt_str("off_session")?.as_deref() {
        None | Some("false") => false,
        Some("true" | "one_off" | "recurring") => true,
        Some(other) => {
            return Err(StripeError::invalid(
                "parameter_invalid",
                "off_session",
                format!(
                    "Invalid off_session: {} (true, false, one_off or recurring).",
                    super::error::truncate(other, 20)
                ),
            ));
        }
    };
    Ok(Confirmation { return_url: parse_url(params, "return_url")?, off_session })
}

/// `return_url` and `off_session` belong to a confirmation.
fn only_when_confirming(c: &Confirmation) -> Result<(), StripeError> {
    let param = match (&c.return_url, c.off_session) {
        (Some(_), _) => "return_url",
        (None, true) => "off_session",
        (None, false) => return Ok(()),
    };
    Err(StripeError::invalid("parameter_invalid", param, format!("{param} can only be used with confirm=true.")))
}

/// Stripe's refusal to confirm, without a `return_url` (or off session), an
/// intent whose payment methods may need a full page redirect.
fn check_redirects(automatic: Option<&AutomaticPaymentMethods>, c: &Confirmation) -> Result<(), StripeError> {
    if !automatic.is_some_and(AutomaticPaymentMethods::may_redirect) || c.return_url.is_some() || c.off_session {
        return Ok(());
    }
    Err(StripeError::InvalidRequest {
        code: None,
        param: Some("return_url".into()),
        message: "A `return_url` must be specified because this Payment Intent is configured to automatically \
                  accept the payment methods enabled in the Dashboard, some of which may require a full page \
                  redirect to succeed. If you do not want to accept redirect-based payment methods, set \
                  `automatic_payment_methods[enabled]` to `true` and `automatic_payment_methods[allow_redirects]` \
                  to `never` when creating Setup Intents and Payment Intents."
            .into(),
    })
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
    check_redirects(intent.automatic_payment_methods.as_ref(), &parse_confirmation(&params)?)?;
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
             checkout_session, automatic_payment_methods, statement_descriptor_suffix, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            id,
            new.amount,
            new.currency,
            status,
            new.payment_method,
            new.description,
            serde_json::to_string(&new.metadata)?,
            new.checkout_session,
            new.automatic_payment_methods.as_ref().map(serde_json::to_string).transpose()?,
            new.statement_descriptor_suffix,
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
                    last_payment_error, latest_charge, created, automatic_payment_methods,
                    statement_descriptor_suffix
             FROM payment_intents WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?),
                    (r.get::<_, String>(3)?, r.get::<_, Option<String>>(4)?),
                    (r.get::<_, Option<String>>(5)?, r.get::<_, String>(6)?),
                    (r.get::<_, Option<String>>(7)?, r.get::<_, Option<String>>(8)?, r.get::<_, i64>(9)?),
                    (r.get::<_, Option<String>>(10)?, r.get::<_, Option<String>>(11)?),
                ))
            },
        )
        .optional()?;
    let Some((
        (id, amount, currency),
        (status, payment_method),
        (description, metadata),
        (error, charge, created),
        (automatic, statement_descriptor_suffix),
    )) = intent
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
        automatic_payment_methods: automatic.as_deref().map(serde_json::from_str).transpose()?,
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
        statement_descriptor_suffix,
        status,
    }))
}
