//! Checkout sessions (`mode=payment`): create, retrieve, expire, pay. The
//! state machine is `open` → `complete` (paid, with a succeeded
//! PaymentIntent) or `open` → `expired`; both are final, and every
//! transition is guarded in SQL (`… WHERE status = 'open'` and a row count).
//! A session with `payment_intent_data[capture_method]=manual` completes
//! `unpaid`, as on Stripe: its PaymentIntent is only authorized
//! (`requires_capture`) and is captured or canceled on its own; the session
//! stays `complete`/`unpaid` whatever happens to it.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::Shared;
use super::cards::Card;
use super::error::StripeError;
use super::events::{self, parse_url};
use super::ids::{new_id, now_s, with_random};
use super::params::{MAX_AMOUNT_MINOR, Metadata, Params, check_amount};
use super::payment_intents::{self, CaptureMethod, NewIntent};
use super::reply::Reply;

/// Stripe's default and longest lifetime of a session.
pub const MAX_LIFETIME_S: i64 = 24 * 60 * 60;
pub const MAX_CLIENT_REFERENCE_CHARS: usize = 200;
pub const MAX_NAME_CHARS: usize = 250;
pub const MAX_QUANTITY: i64 = 999_999;

#[derive(Debug, Clone, Serialize)]
pub struct CheckoutSession {
    pub id: String,
    pub object: &'static str,
    pub amount_subtotal: i64,
    pub amount_total: i64,
    pub cancel_url: Option<String>,
    pub client_reference_id: Option<String>,
    pub created: i64,
    pub currency: String,
    pub expires_at: i64,
    pub livemode: bool,
    pub metadata: Metadata,
    pub mode: String,
    pub payment_intent: Option<String>,
    pub payment_method_types: [&'static str; 1],
    pub payment_status: String,
    pub status: String,
    pub success_url: String,
    /// The hosted page; only while the session is open, as on Stripe.
    pub url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LineItem {
    pub name: String,
    pub unit_amount: i64,
    pub quantity: i64,
    pub amount_total: i64,
}

struct NewSession {
    currency: String,
    amount_total: i64,
    line_items: Vec<LineItem>,
    success_url: String,
    cancel_url: Option<String>,
    client_reference_id: Option<String>,
    metadata: Metadata,
    payment_intent_metadata: Metadata,
    /// `payment_intent_data[statement_descriptor_suffix]`, for the PaymentIntent.
    statement_descriptor_suffix: Option<String>,
    /// `payment_intent_data[capture_method]`, for the PaymentIntent.
    capture_method: CaptureMethod,
    expires_at: i64,
}

/// `POST /v1/checkout/sessions`.
pub fn create(conn: &Connection, shared: &Shared, params: Params) -> Result<Reply, StripeError> {
    let now = now_s();
    let new = parse_new(&params, now)?;
    let id = with_random("cs_test_", 58);
    conn.execute(
        "INSERT INTO checkout_sessions (id, status, payment_status, mode, currency, amount_total, success_url,
             cancel_url, client_reference_id, metadata, payment_intent_metadata, statement_descriptor_suffix,
             capture_method, expires_at, created)
         VALUES (?1, 'open', 'unpaid', 'payment', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            id,
            new.currency,
            new.amount_total,
            new.success_url,
            new.cancel_url,
            new.client_reference_id,
            to_json(&new.metadata)?,
            to_json(&new.payment_intent_metadata)?,
            new.statement_descriptor_suffix,
            new.capture_method.as_str(),
            new.expires_at,
            now
        ],
    )
    .map_err(anyhow::Error::from)?;
    for (position, item) in (0i64..).zip(&new.line_items) {
        conn.execute(
            "INSERT INTO checkout_line_items (session_id, position, name, unit_amount, quantity, amount_total)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, position, item.name, item.unit_amount, item.quantity, item.amount_total],
        )
        .map_err(anyhow::Error::from)?;
    }
    Reply::ok(&load_required(conn, shared, &id)?)
}

fn to_json(metadata: &Metadata) -> anyhow::Result<String> {
    Ok(serde_json::to_string(metadata)?)
}

fn parse_new(params: &Params, now: i64) -> Result<NewSession, StripeError> {
    let mode = params.req_str("mode")?;
    if mode != "payment" {
        return Err(StripeError::invalid(
            "parameter_invalid",
            "mode",
            format!(
                "Invalid mode: the sandbox supports only mode=payment, not '{}'.",
                mode.chars().take(20).collect::<String>()
            ),
        ));
    }
    let success_url = parse_url(params, "success_url")?.ok_or_else(|| StripeError::missing("success_url"))?;
    let cancel_url = parse_url(params, "cancel_url")?;
    let client_reference_id = params.opt_str("client_reference_id")?;
    if client_reference_id.as_ref().is_some_and(|c| c.chars().count() > MAX_CLIENT_REFERENCE_CHARS) {
        return Err(StripeError::invalid(
            "parameter_invalid",
            "client_reference_id",
            format!("client_reference_id can be at most {MAX_CLIENT_REFERENCE_CHARS} characters."),
        ));
    }
    let (currency, line_items) = parse_line_items(params)?;
    let amount_total = line_items
        .iter()
        .try_fold(0i64, |sum, item| sum.checked_add(item.amount_total))
        .filter(|total| *total <= MAX_AMOUNT_MINOR)
        .ok_or_else(|| too_large("line_items"))?;
    check_amount(amount_total, "line_items")?;
    let (payment_intent_metadata, statement_descriptor_suffix, capture_method) =
        match params.child("payment_intent_data")? {
            Some(data) => (
                data.metadata("metadata")?,
                payment_intents::parse_suffix(&data, "statement_descriptor_suffix")?,
                CaptureMethod::parse(&data, "capture_method")?,
            ),
            None => (Metadata::new(), None, CaptureMethod::Automatic),
        };
    Ok(NewSession {
        currency,
        amount_total,
        line_items,
        success_url,
        cancel_url,
        client_reference_id,
        metadata: params.metadata("metadata")?,
        payment_intent_metadata,
        statement_descriptor_suffix,
        capture_method,
        expires_at: parse_expires_at(params, now)?,
    })
}

fn too_large(param: &str) -> StripeError {
    StripeError::invalid(
        "amount_too_large",
        param,
        format!("The total amount must be no larger than {MAX_AMOUNT_MINOR}."),
    )
}

/// Any time in the next 24 h (Stripe: at least 30 minutes; the sandbox lets tests go shorter).
fn parse_expires_at(params: &Params, now: i64) -> Result<i64, StripeError> {
    let Some(expires_at) = params.opt_i64("expires_at")? else {
        return Ok(now + MAX_LIFETIME_S);
    };
    if expires_at <= now || expires_at > now + MAX_LIFETIME_S {
        return Err(StripeError::invalid(
            "parameter_invalid",
            "expires_at",
            "The `expires_at` timestamp must be in the future and less than 24 hours from Checkout Session creation.",
        ));
    }
    Ok(expires_at)
}

/// 1 to 100 items with `price_data`, all in one currency.
fn parse_line_items(params: &Params) -> Result<(String, Vec<LineItem>), StripeError> {
    let items = params.list("line_items")?;
    if items.is_empty() {
        return Err(StripeError::missing("line_items"));
    }
    let mut currency: Option<String> = None;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        if item.opt_str("price")?.is_some() {
            return Err(StripeError::invalid(
                "parameter_invalid",
                item.name("price"),
                "The sandbox has no Price objects: give price_data instead.",
            ));
        }
        let price = item.child("price_data")?.ok_or_else(|| StripeError::missing(&item.name("price_data")))?;
        let item_currency = price.currency("currency")?;
        if currency.as_ref().is_some_and(|c| *c != item_currency) {
            return Err(StripeError::invalid(
                "parameter_invalid",
                price.name("currency"),
                "All line items must have the same currency.",
            ));
        }
        currency = Some(item_currency);
        out.push(parse_line_item(item, &price)?);
    }
    let currency = currency.ok_or_else(|| StripeError::missing("line_items"))?;
    Ok((currency, out))
}

fn parse_line_item(item: &Params, price: &Params) -> Result<LineItem, StripeError> {
    let unit_amount = price.req_i64("unit_amount")?;
    if !(0..=MAX_AMOUNT_MINOR).contains(&unit_amount) {
        return Err(StripeError::invalid(
            "parameter_invalid_integer",
            price.name("unit_amount"),
            format!("unit_amount must be between 0 and {MAX_AMOUNT_MINOR}."),
        ));
    }
    let product = price.child("product_data")?.ok_or_else(|| StripeError::missing(&price.name("product_data")))?;
    let name = product.req_str("name")?;
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(StripeError::invalid(
            "parameter_invalid",
            product.name("name"),
            format!("name can be at most {MAX_NAME_CHARS} characters."),
        ));
    }
    let quantity = item.req_i64("quantity")?;
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        return Err(StripeError::invalid(
            "parameter_invalid_integer",
            item.name("quantity"),
            format!("quantity must be between 1 and {MAX_QUANTITY}."),
        ));
    }
    let amount_total = unit_amount.checked_mul(quantity).ok_or_else(|| too_large("line_items"))?;
    Ok(LineItem { name, unit_amount, quantity, amount_total })
}

/// `GET /v1/checkout/sessions/{id}`.
pub fn retrieve(conn: &Connection, shared: &Shared, id: &str) -> Result<Reply, StripeError> {
    Reply::ok(&load_or_404(conn, shared, id)?)
}

fn load_or_404(conn: &Connection, shared: &Shared, id: &str) -> Result<CheckoutSession, StripeError> {
    load(conn, shared, id)?.ok_or_else(|| StripeError::no_such("checkout.session", id, Some("session")))
}

/// `POST /v1/checkout/sessions/{id}/expire`: only an open session.
pub fn expire(conn: &Connection, shared: &Shared, id: &str) -> Result<Reply, StripeError> {
    let session = load_or_404(conn, shared, id)?;
    if !expire_open(conn, shared, id)? {
        return Err(StripeError::unexpected_state(
            "checkout_session_not_open",
            format!(
                "Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has \
                 a status of \"{}\".",
                session.status
            ),
        ));
    }
    Reply::ok(&load_or_404(conn, shared, id)?)
}

/// `open` → `expired` with its event; false if the session was not open.
pub fn expire_open(conn: &Connection, shared: &Shared, id: &str) -> anyhow::Result<bool> {
    let changed =
        conn.execute("UPDATE checkout_sessions SET status = 'expired' WHERE id = ?1 AND status = 'open'", [id])?;
    if changed == 0 {
        return Ok(false);
    }
    let session = load_required(conn, shared, id)?;
    events::emit(conn, shared, "checkout.session.expired", &session)?;
    Ok(true)
}

/// Open sessions past `expires_at`, oldest first, at most `limit`.
pub fn due_for_expiry(conn: &Connection, now: i64, limit: i64) -> anyhow::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT id FROM checkout_sessions WHERE status = 'open' AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2",
    )?;
    let ids = stmt.query_map(params![now, limit], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

/// How paying went.
pub enum PayResult {
    /// Paid: where to send the buyer.
    Paid { redirect_to: String },
    /// Not open (any more): the status it has.
    Closed(String),
}

/// Pays an open session with an approved card: a succeeded PaymentIntent
/// carrying `payment_intent_data[metadata]` and
/// `[statement_descriptor_suffix]`, the session `complete`/`paid`, and their
/// events, all in the caller's transaction; for manual capture the intent
/// is only authorized and the session `complete`/`unpaid`.
pub fn pay(conn: &Connection, shared: &Shared, id: &str, card: &Card) -> anyhow::Result<PayResult> {
    let Some(session) = load(conn, shared, id)? else {
        anyhow::bail!("checkout session {id} vanished");
    };
    if session.status != "open" {
        return Ok(PayResult::Closed(session.status));
    }
    if session.expires_at <= now_s() {
        expire_open(conn, shared, id)?;
        return Ok(PayResult::Closed("expired".into()));
    }
    let (pi_metadata, suffix, capture): (String, Option<String>, String) = conn.query_row(
        "SELECT payment_intent_metadata, statement_descriptor_suffix, capture_method
         FROM checkout_sessions WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let capture_method = CaptureMethod::from_stored(&capture)
        .ok_or_else(|| anyhow::anyhow!("checkout session {id} has capture_method {capture}"))?;
    let pm = new_id("pm_");
    let intent_id = payment_intents::insert(
        conn,
        &NewIntent {
            amount: session.amount_total,
            currency: session.currency.clone(),
            description: None,
            metadata: serde_json::from_str(&pi_metadata)?,
            payment_method: Some(pm.clone()),
            checkout_session: Some(id.to_string()),
            // Checkout picks the payment method on its page: no automatic ones.
            automatic_payment_methods: None,
            statement_descriptor_suffix: suffix,
            capture_method,
        },
    )?;
    payment_intents::approve(conn, shared, &intent_id, &pm, card)?;
    // Paid once the money is captured: a manual session's intent is only authorized.
    let changed = conn.execute(
        "UPDATE checkout_sessions SET status = 'complete', payment_intent = ?2,
             payment_status = CASE WHEN capture_method = 'manual' THEN 'unpaid' ELSE 'paid' END
         WHERE id = ?1 AND status = 'open'",
        params![id, intent_id],
    )?;
    anyhow::ensure!(changed == 1, "checkout session {id} left 'open' during payment");
    let session = load_required(conn, shared, id)?;
    events::emit(conn, shared, "checkout.session.completed", &session)?;
    Ok(PayResult::Paid { redirect_to: session.success_url.replace("{CHECKOUT_SESSION_ID}", id) })
}

pub fn load_required(conn: &Connection, shared: &Shared, id: &str) -> anyhow::Result<CheckoutSession> {
    load(conn, shared, id)?.ok_or_else(|| anyhow::anyhow!("checkout session {id} vanished"))
}

pub fn load(conn: &Connection, shared: &Shared, id: &str) -> anyhow::Result<Option<CheckoutSession>> {
    let row = conn
        .query_row(
            "SELECT id, status, payment_status, mode, currency, amount_total, success_url, cancel_url,
                    client_reference_id, metadata, payment_intent, expires_at, created
             FROM checkout_sessions WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?),
                    (r.get::<_, String>(3)?, r.get::<_, String>(4)?, r.get::<_, i64>(5)?),
                    (r.get::<_, String>(6)?, r.get::<_, Option<String>>(7)?, r.get::<_, Option<String>>(8)?),
                    (r.get::<_, String>(9)?, r.get::<_, Option<String>>(10)?),
                    (r.get::<_, i64>(11)?, r.get::<_, i64>(12)?),
                ))
            },
        )
        .optional()?;
    let Some((
        (id, status, payment_status),
        (mode, currency, amount_total),
        (success_url, cancel_url, client_reference_id),
        (metadata, payment_intent),
        (expires_at, created),
    )) = row
    else {
        return Ok(None);
    };
    let url = (status == "open").then(|| format!("{}/pay/{id}", shared.base_url));
    Ok(Some(CheckoutSession {
        id,
        object: "checkout.session",
        amount_subtotal: amount_total,
        amount_total,
        cancel_url,
        client_reference_id,
        created,
        currency,
        expires_at,
        livemode: false,
        metadata: serde_json::from_str(&metadata)?,
        mode,
        payment_intent,
        payment_method_types: ["card"],
        payment_status,
        status,
        success_url,
        url,
    }))
}

/// The session's line items, in order.
pub fn line_items(conn: &Connection, id: &str) -> anyhow::Result<Vec<LineItem>> {
    let mut stmt = conn.prepare(
        "SELECT name, unit_amount, quantity, amount_total FROM checkout_line_items
         WHERE session_id = ?1 ORDER BY position",
    )?;
    let items = stmt
        .query_map([id], |r| {
            Ok(LineItem { name: r.get(0)?, unit_amount: r.get(1)?, quantity: r.get(2)?, amount_total: r.get(3)? })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(items)
}
