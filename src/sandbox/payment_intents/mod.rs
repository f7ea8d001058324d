//! PaymentIntents: created by the API (`POST /v1/payment_intents`, confirmed
//! with a test payment method) or by a hosted checkout that was paid. The
//! state machine is Stripe's subset: `requires_payment_method` ⇄
//! `requires_confirmation` → `succeeded`; with `capture_method=manual` an
//! approved card stops at `requires_capture` (authorized, nothing booked)
//! until it is captured → `succeeded`, or canceled (see `capture`). Every
//! state but `succeeded` may be `canceled`; those two are final. A decline
//! leaves the intent in `requires_payment_method` with `last_payment_error`,
//! and answers 402 with the intent inside the card error, as Stripe does;
//! that reply is stored under the idempotency key like any other.
//!
//! Confirmation needs what a current Stripe account needs: an intent that
//! accepts the Dashboard's payment methods with redirects allowed (the
//! default from API version 2023-08-16, or `automatic_payment_methods[enabled]=true`
//! alone) is confirmed only with a `return_url` or `off_session=true`;
//! `automatic_payment_methods[allow_redirects]=never` or
//! `payment_method_types[]=card` lift that.
//!
//! The dispute test card's charge is scheduled for its dispute when it is
//! captured (`dispute_at_ms`); `disputes` opens it.

mod capture;

pub use capture::{EXPIRED_REASON, cancel, cancel_open, capture, due_for_expiry};

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Shared;
use super::balance::{self, Category, Entry};
use super::cards::{self, Card, Decline, Outcome};
use super::error::{ErrorBody, StripeError, envelope_json, truncate};
use super::events::{self, parse_url};
use super::ids::{new_id, now_ms, now_s};
use super::params::{Metadata, Params};
use super::reply::Reply;
use super::sql;
use super::versions::Version;

pub const MAX_DESCRIPTION_CHARS: usize = 1_000;
/// Stripe's longest `statement_descriptor_suffix`.
pub const MAX_SUFFIX_CHARS: usize = 22;
/// Characters Stripe refuses in statement descriptors.
const SUFFIX_FORBIDDEN: &[char] = &['<', '>', '\\', '\'', '"', '*'];
/// The payment method types the sandbox account has activated.
const ACTIVATED_TYPES: [&str; 1] = ["card"];
/// The statuses an intent is confirmed from, as Stripe's message lists them.
const CONFIRMABLE: [&str; 2] = ["requires_confirmation", "requires_payment_method"];

/// Stripe's `capture_method`. `automatic_async` captures as `automatic`
/// does: the sandbox has no asynchronous capture to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMethod {
    Automatic,
    AutomaticAsync,
    Manual,
}

impl CaptureMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureMethod::Automatic => "automatic",
            CaptureMethod::AutomaticAsync => "automatic_async",
            CaptureMethod::Manual => "manual",
        }
    }

    pub fn from_stored(raw: &str) -> Option<CaptureMethod> {
        [CaptureMethod::Automatic, CaptureMethod::AutomaticAsync, CaptureMethod::Manual]
            .into_iter()
            .find(|m| m.as_str() == raw)
    }

    /// The parameter `key` (default `automatic`), checked as Stripe checks it.
    pub fn parse(params: &Params, key: &str) -> Result<CaptureMethod, StripeError> {
        let Some(raw) = params.opt_str(key)? else {
            return Ok(CaptureMethod::Automatic);
        };
        CaptureMethod::from_stored(&raw).ok_or_else(|| {
            let name = params.name(key);
            StripeError::invalid(
                "parameter_invalid",
                &name,
                format!(
                    "Invalid {name}: must be one of automatic, automatic_async, or manual (not '{}').",
                    truncate(&raw, 20)
                ),
            )
        })
    }
}

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
    /// Unix seconds; only once canceled.
    pub canceled_at: Option<i64>,
    /// `duplicate`, `fraudulent`, `requested_by_customer`, `abandoned`, or
    /// `automatic` (an authorization that expired); only once canceled.
    pub cancellation_reason: Option<String>,
    pub capture_method: CaptureMethod,
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
    pub capture_method: CaptureMethod,
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
        capture_method: CaptureMethod::parse(params, "capture_method")?,
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
    let intent = load_or_404(conn, id)?;
    if !CONFIRMABLE.contains(&intent.status.as_str()) {
        return Err(StripeError::unexpected_state(
            "payment_intent_unexpected_state",
            format!(
                "You cannot confirm this PaymentIntent because it has a status of {}. Only a PaymentIntent \
                 with one of the following statuses may be confirmed: {}.",
                intent.status,
                CONFIRMABLE.join(", ")
            ),
        ));
    }
    let pm = params.opt_str("payment_method")?.or(intent.payment_method).ok_or_else(missing_payment_method)?;
    let card = test_payment_method(&pm)?;
    check_redirects(intent.automatic_payment_methods.as_ref(), &parse_confirmation(&params)?)?;
    attempt(conn, shared, id, &pm, &card)
}

/// `GET /v1/payment_intents/{id}`.
pub fn retrieve(conn: &Connection, id: &str) -> Result<Reply, StripeError> {
    Reply::ok(&load_or_404(conn, id)?)
}

fn load_or_404(conn: &Connection, id: &str) -> Result<PaymentIntent, StripeError> {
    load(conn, id)?.ok_or_else(|| StripeError::no_such("payment_intent", id, Some("intent")))
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
             pm_card_chargeDeclined, pm_card_chargeDeclinedInsufficientFunds and pm_card_createDispute.",
            super::error::truncate(pm, 80)
        ),
    })
}

/// Charges the card: success (or an authorization) or a stored 402 decline.
fn attempt(conn: &Connection, shared: &Shared, id: &str, pm: &str, card: &Card) -> Result<Reply, StripeError> {
    match card.outcome {
        Outcome::Approve => Reply::ok(&approve(conn, shared, id, pm, card)?),
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
             checkout_session, automatic_payment_methods, statement_descriptor_suffix, capture_method, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
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
            new.capture_method.as_str(),
            now_s()
        ],
    )?;
    Ok(id)
}

/// An approved card: its charge captured at once (`succeeded`, booked) or,
/// for manual capture, only authorized (`requires_capture`, nothing booked).
pub fn approve(conn: &Connection, shared: &Shared, id: &str, pm: &str, card: &Card) -> anyhow::Result<PaymentIntent> {
    match load_required(conn, id)?.capture_method {
        CaptureMethod::Manual => authorize(conn, shared, id, pm, card),
        CaptureMethod::Automatic | CaptureMethod::AutomaticAsync => succeed(conn, shared, id, pm, card),
    }
}

/// → `succeeded`: the charge, its balance transaction and `payment_intent.succeeded`.
fn succeed(conn: &Connection, shared: &Shared, id: &str, pm: &str, card: &Card) -> anyhow::Result<PaymentIntent> {
    let charge = new_id("ch_");
    let dispute_at_ms = card.disputes.then(|| dispute_due_ms(shared));
    let changed = conn.execute(
        "UPDATE payment_intents SET status = 'succeeded', payment_method = ?2, latest_charge = ?3,
             card_brand = ?4, card_last4 = ?5, last_payment_error = NULL, amount_received = amount,
             card_disputes = ?6, dispute_at_ms = ?7
         WHERE id = ?1 AND status IN ('requires_payment_method', 'requires_confirmation')
           AND capture_method <> 'manual'",
        params![id, pm, charge, card.brand, card.last4, card.disputes, dispute_at_ms],
    )?;
    anyhow::ensure!(changed == 1, "payment intent {id} was not awaiting an automatic payment");
    let intent = load_required(conn, id)?;
    book_charge(conn, shared, &intent, intent.amount)?;
    events::emit(conn, shared, "payment_intent.succeeded", &intent)?;
    Ok(intent)
}

/// → `requires_capture`: the whole amount authorized, the charge made but
/// not captured (nothing booked), `payment_intent.amount_capturable_updated`.
fn authorize(conn: &Connection, shared: &Shared, id: &str, pm: &str, card: &Card) -> anyhow::Result<PaymentIntent> {
    let charge = new_id("ch_");
    let changed = conn.execute(
        "UPDATE payment_intents SET status = 'requires_capture', payment_method = ?2, latest_charge = ?3,
             card_brand = ?4, card_last4 = ?5, last_payment_error = NULL, amount_capturable = amount,
             authorized_at_ms = ?6, card_disputes = ?7
         WHERE id = ?1 AND status IN ('requires_payment_method', 'requires_confirmation')
           AND capture_method = 'manual'",
        params![id, pm, charge, card.brand, card.last4, now_ms(), card.disputes],
    )?;
    anyhow::ensure!(changed == 1, "payment intent {id} was not awaiting a manual payment");
    let intent = load_required(conn, id)?;
    events::emit(conn, shared, "payment_intent.amount_capturable_updated", &intent)?;
    Ok(intent)
}

/// When a dispute test card's charge captured now is disputed.
fn dispute_due_ms(shared: &Shared) -> i64 {
    now_ms().saturating_add(i64::try_from(shared.settings.dispute_after_ms).unwrap_or(i64::MAX))
}

/// The `charge` line of `amount` captured of the intent's charge, its fee
/// computed on that amount.
fn book_charge(conn: &Connection, shared: &Shared, intent: &PaymentIntent, amount: i64) -> anyhow::Result<()> {
    let charge =
        intent.latest_charge.as_deref().ok_or_else(|| anyhow::anyhow!("payment intent {} has no charge", intent.id))?;
    let fee = balance::fee_minor(amount, shared.settings.fee_percent, shared.settings.fee_fixed)?;
    balance::book(
        conn,
        &Entry {
            created: now_s(),
            currency: &intent.currency,
            amount,
            fee,
            category: Category::Charge,
            source_id: charge,
            payment_intent: Some(&intent.id),
            description: intent.description.as_deref(),
            payment_metadata: &intent.metadata,
        },
    )?;
    Ok(())
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

/// Captured intents of the dispute test card whose dispute is due, at most `limit`.
pub fn disputes_due(conn: &Connection, now_ms: i64, limit: i64) -> anyhow::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM payment_intents WHERE dispute_at_ms IS NOT NULL AND dispute_at_ms <= ?1
         ORDER BY dispute_at_ms LIMIT ?2",
    )?;
    let ids = stmt.query_map(params![now_ms, limit], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

/// Takes the intent's due dispute (once: guarded in SQL): the intent and
/// what may be disputed of it, captured and not refunded. `None`: nothing due.
pub fn take_due_dispute(conn: &Connection, id: &str, now_ms: i64) -> anyhow::Result<Option<(PaymentIntent, i64)>> {
    let changed = conn.execute(
        "UPDATE payment_intents SET dispute_at_ms = NULL
         WHERE id = ?1 AND status = 'succeeded' AND dispute_at_ms IS NOT NULL AND dispute_at_ms <= ?2",
        params![id, now_ms],
    )?;
    if changed == 0 {
        return Ok(None);
    }
    let disputable: i64 =
        conn.query_row("SELECT amount_received - amount_refunded FROM payment_intents WHERE id = ?1", [id], |r| {
            r.get(0)
        })?;
    Ok(Some((load_required(conn, id)?, disputable)))
}

const COLUMNS: &str = "id, amount, currency, status, payment_method, description, metadata, last_payment_error,
    latest_charge, created, automatic_payment_methods, statement_descriptor_suffix, capture_method,
    amount_capturable, amount_received, canceled_at, cancellation_reason";

pub fn load(conn: &Connection, id: &str) -> anyhow::Result<Option<PaymentIntent>> {
    let sql = format!("SELECT {COLUMNS} FROM payment_intents WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], from_row).optional()?)
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<PaymentIntent> {
    let id: String = r.get(0)?;
    let capture: String = r.get(12)?;
    let capture_method =
        CaptureMethod::from_stored(&capture).ok_or_else(|| sql::unexpected(12, format!("capture_method {capture}")))?;
    Ok(PaymentIntent {
        client_secret: format!("{id}_secret_sandbox"),
        id,
        object: "payment_intent",
        amount: r.get(1)?,
        amount_capturable: r.get(13)?,
        amount_received: r.get(14)?,
        automatic_payment_methods: sql::opt_json(r, 10)?,
        canceled_at: r.get(15)?,
        cancellation_reason: r.get(16)?,
        capture_method,
        confirmation_method: "automatic",
        created: r.get(9)?,
        currency: r.get(2)?,
        description: r.get(5)?,
        last_payment_error: sql::opt_json(r, 7)?,
        latest_charge: r.get(8)?,
        livemode: false,
        metadata: sql::json(r, 6)?,
        payment_method: r.get(4)?,
        payment_method_types: ["card"],
        statement_descriptor_suffix: r.get(11)?,
        status: r.get(3)?,
    })
}
