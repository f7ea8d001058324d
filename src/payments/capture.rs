//! Manual capture (SPEC §3.6a): authorize now, capture later. A checkout
//! created with `capture_method: manual` has the PSP only authorize the
//! buyer's payment: its orders stop at AUTHORIZED and nothing is booked
//! (no wallet, no ledger) until the shop captures them
//! (`POST /v1/checkouts/{id}/capture`, all or part of each order: one
//! capture per PaymentIntent, the rest released) or voids them
//! (`/void`), or the authorization expires after
//! `payments.authorization_days` (an alert a day before).
//!
//! Of capture, void and expiry exactly one happens: the decision is
//! recorded once (`payment_events.capture_decision`, a guarded write), in
//! the transaction that also stores what the capture takes of each order,
//! fixes the PSP requests it calls for (`psp_requests`, so every retry is
//! the same request under the same idempotency key) and enqueues the job
//! that sends them (outbox). The API call then sends them at once; the job
//! sends them again after a crash or an unknown outcome. Whatever the PSP
//! answers, what is applied is its own copy of the PaymentIntent
//! ([`apply_to_group`]), the same function its webhooks go through.

use chrono::SecondsFormat;

use crate::alerts;
use crate::context::Ctx;
use crate::db::Tx;
use crate::money::{Currency, Money, format_minor};
use crate::payments::book::{fail_order, succeed_orders};
use crate::payments::model::{CaptureDecision, CaptureMethod, CheckoutId, Order, OrderStatus, PaymentOrderId};
use crate::payments::store::{self, CheckoutView, EventHead};
use crate::payments::{Policy, notify};
use crate::psp::requests::{self, PspRequest};
use crate::psp::types::{IntentOutcome, PaymentIntent};
use crate::psp::{CancelIntentRequest, CaptureRequest, PspError};
use crate::queue::{self, JobError, JobKind};

/// The alert raised a day before an uncaptured authorization expires.
pub const EXPIRING_ALERT: &str = "authorization_expiring";
/// How long before its expiry an uncaptured authorization raises its alert.
const ALERT_BEFORE_MS: i64 = 24 * 3600 * 1000;
/// The settle job waits this long before it sends what the API call is
/// sending at once: it is there for a crash or an unknown outcome.
const SETTLE_JOB_DELAY_MS: i64 = 5_000;
/// Orders a capture request may name (a checkout holds at most 50).
pub const MAX_CAPTURE_ORDERS: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("no checkout {0}")]
    NotFound(String),
    /// The checkout cannot be captured now, and the message says why.
    #[error("{0}")]
    Refused(String),
    /// The checkout cannot be voided now, and the message says why.
    #[error("{0}")]
    NotVoidable(String),
    /// `orders[index]` of the request is wrong.
    #[error("orders[{index}].{field} {why}")]
    BadOrder { index: usize, field: &'static str, why: String },
    #[error("the PSP did not answer: {0}")]
    PspUnavailable(String),
    #[error("the PSP refused: {0}")]
    Psp(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What the shop asks a capture to take: per order listed, an amount in
/// major units (`"0"` releases the order); an order not listed is
/// captured in full.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureAsk {
    pub orders: Vec<(String, String)>,
}

/// When an authorization made now must be captured by.
pub fn capture_before(policy: Policy) -> String {
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(policy.authorization_ms);
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `POST /v1/checkouts/{id}/capture`: records the capture (once; the same
/// capture asked again is sent again), then has the PSP capture it and
/// books each captured order as a paid order is booked.
pub async fn capture(ctx: &Ctx, checkout_id: &str, ask: CaptureAsk) -> Result<CheckoutView, CaptureError> {
    let (id, policy) = (checkout_id.to_string(), Policy::of(&ctx.settings));
    ctx.db.write(move |tx| decide_capture(tx, &id, &ask, policy)).await?;
    settle_now(ctx, checkout_id).await?;
    let view = view(ctx, checkout_id).await?;
    // Settled, and nothing succeeded: the PSP had ended the authorization
    // (it expired there, or was canceled outside till) before the capture.
    let settled = view.orders.iter().all(|o| o.status != OrderStatus::Authorized.as_str());
    let paid = view.orders.iter().any(|o| o.status == OrderStatus::Success.as_str());
    if settled && !paid {
        let code = view.orders.iter().find_map(|o| o.failure_code.clone()).unwrap_or_default();
        return Err(CaptureError::Refused(format!("nothing was captured: the PSP ended the authorization ({code})")));
    }
    Ok(view)
}

/// `POST /v1/checkouts/{id}/void`: records the void (once), then has the
/// PSP release the authorization; the orders end FAILED `canceled`.
pub async fn void(ctx: &Ctx, checkout_id: &str) -> Result<CheckoutView, CaptureError> {
    let id = checkout_id.to_string();
    let attempts = ctx.settings.queue.max_attempts;
    ctx.db.write(move |tx| decide(tx, &id, CaptureDecision::Void, attempts)).await?;
    settle_now(ctx, checkout_id).await?;
    let view = view(ctx, checkout_id).await?;
    // The PSP had captured it (outside till) before the void reached it: paid it is.
    if let Some(paid) = view.orders.iter().find(|o| o.status == OrderStatus::Success.as_str()) {
        return Err(CaptureError::NotVoidable(format!(
            "order {} was captured at the PSP before the void reached it; refund it instead",
            paid.payment_order_id
        )));
    }
    Ok(view)
}

async fn view(ctx: &Ctx, checkout_id: &str) -> Result<CheckoutView, CaptureError> {
    let id = checkout_id.to_string();
    ctx.db
        .run(move |tx| store::checkout_view(tx, &id))
        .await?
        .ok_or_else(|| CaptureError::NotFound(checkout_id.to_string()))
}

/// Sends the decided requests now, as the API call's answer waits for.
async fn settle_now(ctx: &Ctx, checkout_id: &str) -> Result<(), CaptureError> {
    ctx.queue_wake.notify_one();
    settle(ctx, checkout_id).await.map_err(|e| match e {
        JobError::Retry(why) | JobError::Later { why, .. } => CaptureError::PspUnavailable(why),
        JobError::Final(why) => CaptureError::Psp(why),
    })
}

/// The head and orders of a manual checkout the shop decides about.
fn manual_checkout(
    tx: &Tx,
    checkout_id: &str,
    asked: CaptureDecision,
) -> Result<(EventHead, Vec<Order>), CaptureError> {
    let head = store::find_event_head(tx, checkout_id)?.ok_or_else(|| CaptureError::NotFound(checkout_id.into()))?;
    if head.capture_method != CaptureMethod::Manual {
        let why = format!(
            "checkout {checkout_id} is captured automatically (only a checkout created with \
             \"capture_method\": \"manual\" is captured or voided)"
        );
        return Err(refusal(asked, why));
    }
    Ok((head, store::load_orders_of(tx, checkout_id)?))
}

/// Why a decision cannot be taken on these orders now, if it cannot.
fn refuse_undecidable(orders: &[Order], asked: CaptureDecision) -> Result<(), CaptureError> {
    if let Some(o) = orders.iter().find(|o| matches!(o.status, OrderStatus::NotStarted | OrderStatus::Executing)) {
        let why = format!(
            "order {} is {}: the buyer has not authorized it yet (cancel the checkout instead: \
             POST /v1/checkouts/{{id}}/cancel)",
            o.payment_order_id, o.status
        );
        return Err(refusal(asked, why));
    }
    if !orders.iter().any(|o| o.status == OrderStatus::Authorized) {
        return Err(refusal(asked, "no order of this checkout is AUTHORIZED".into()));
    }
    Ok(())
}

/// Why an earlier decision stands in the way of `asked`.
fn already_decided(decision: CaptureDecision, asked: CaptureDecision) -> CaptureError {
    let done = match decision {
        CaptureDecision::Capture => "captured",
        CaptureDecision::Void => "voided",
        CaptureDecision::Expire => "left to expire (its authorization ran out)",
    };
    refusal(asked, format!("this checkout was {done} already"))
}

/// A refusal of `asked`, in its own words.
fn refusal(asked: CaptureDecision, why: String) -> CaptureError {
    match asked {
        CaptureDecision::Capture => CaptureError::Refused(format!("{why}; it cannot be captured")),
        CaptureDecision::Void | CaptureDecision::Expire => {
            CaptureError::NotVoidable(format!("{why}; it cannot be voided"))
        }
    }
}

fn decide_capture(tx: &Tx, checkout_id: &str, ask: &CaptureAsk, policy: Policy) -> Result<(), CaptureError> {
    let (head, orders) = manual_checkout(tx, checkout_id, CaptureDecision::Capture)?;
    match head.capture_decision {
        // The same capture again (a retry): it is sent again, nothing new is decided.
        Some(CaptureDecision::Capture) if same_plan(&orders, ask) => return Ok(()),
        Some(decision) => return Err(already_decided(decision, CaptureDecision::Capture)),
        None => {}
    }
    refuse_undecidable(&orders, CaptureDecision::Capture)?;
    let plan = plan(&orders, ask)?;
    let authorized: Vec<&Order> = orders.iter().filter(|o| o.status == OrderStatus::Authorized).collect();
    let takes_nothing =
        authorized.iter().all(|o| plan.iter().any(|(id, take)| *id == o.payment_order_id && *take == 0));
    if takes_nothing {
        return Err(CaptureError::BadOrder {
            index: 0,
            field: "amount",
            why: "takes nothing, nor does the rest: void the checkout instead (POST /v1/checkouts/{id}/void)".into(),
        });
    }
    record(tx, checkout_id, CaptureDecision::Capture, policy.job_attempts)?;
    for order in authorized {
        let take =
            plan.iter().find(|(id, _)| *id == order.payment_order_id).map_or(order.amount.amount_minor(), |p| p.1);
        store::set_capture_plan(tx, order.payment_order_id.as_str(), take)?;
    }
    Ok(())
}

fn decide(tx: &Tx, checkout_id: &str, decision: CaptureDecision, attempts: u32) -> Result<(), CaptureError> {
    let (head, orders) = manual_checkout(tx, checkout_id, decision)?;
    match head.capture_decision {
        Some(done) if done == decision => return Ok(()),
        Some(done) => return Err(already_decided(done, decision)),
        None => {}
    }
    refuse_undecidable(&orders, decision)?;
    record(tx, checkout_id, decision, attempts)
}

/// The decision, once, with the job that carries it out (outbox); the
/// authorization's expiry alert, if raised, is answered by it.
fn record(tx: &Tx, checkout_id: &str, decision: CaptureDecision, attempts: u32) -> Result<(), CaptureError> {
    if !store::record_capture_decision(tx, checkout_id, decision)? {
        return Err(CaptureError::Refused("another decision on this checkout was just recorded".into()));
    }
    queue::enqueue(tx, JobKind::SettleAuthorization, checkout_id, SETTLE_JOB_DELAY_MS, attempts)?;
    alerts::resolve(tx, EXPIRING_ALERT, checkout_id, &format!("{} decided", decision.as_str()))?;
    Ok(())
}

/// What the capture takes of each authorized order, in minor units; the
/// orders named in `ask` must be this checkout's AUTHORIZED orders, each
/// named once, for at most its amount.
fn plan(orders: &[Order], ask: &CaptureAsk) -> Result<Vec<(PaymentOrderId, i64)>, CaptureError> {
    if ask.orders.len() > MAX_CAPTURE_ORDERS {
        return Err(CaptureError::BadOrder {
            index: MAX_CAPTURE_ORDERS,
            field: "payment_order_id",
            why: format!("is one too many: a capture names at most {MAX_CAPTURE_ORDERS} orders"),
        });
    }
    let mut out: Vec<(PaymentOrderId, i64)> = Vec::with_capacity(ask.orders.len());
    for (index, (id, amount)) in ask.orders.iter().enumerate() {
        let bad = |field, why: String| CaptureError::BadOrder { index, field, why };
        let order = PaymentOrderId::parse(id)
            .and_then(|id| orders.iter().find(|o| o.payment_order_id == id))
            .ok_or_else(|| bad("payment_order_id", "is not an order of this checkout".into()))?;
        if out.iter().any(|(seen, _)| *seen == order.payment_order_id) {
            return Err(bad("payment_order_id", "appears twice".into()));
        }
        if order.status != OrderStatus::Authorized {
            return Err(bad("payment_order_id", format!("is {}: only AUTHORIZED orders are captured", order.status)));
        }
        let currency = order.amount.currency();
        let take = parse_take(amount, currency).map_err(|why| bad("amount", why))?;
        if take > order.amount.amount_minor() {
            let authorized = format_minor(order.amount.amount_minor(), currency);
            return Err(bad("amount", format!("exceeds the {authorized} {currency} authorized for the order")));
        }
        out.push((order.payment_order_id.clone(), take));
    }
    Ok(out)
}

/// A capture's amount of one order: a decimal in major units of its
/// currency, or zero (the order is released).
fn parse_take(raw: &str, currency: Currency) -> Result<i64, String> {
    let zero = !raw.is_empty()
        && raw.bytes().all(|b| b == b'0' || b == b'.')
        && raw.bytes().filter(|b| *b == b'.').count() <= 1;
    if zero && !raw.starts_with('.') && !raw.ends_with('.') {
        let decimals = raw.split_once('.').map_or(0, |(_, f)| f.len());
        return match decimals <= currency.exponent() as usize {
            true => Ok(0),
            false => Err(format!("has {decimals} decimals; {currency} allows {}", currency.exponent())),
        };
    }
    Money::parse(raw, currency).map(|m| m.amount_minor()).map_err(|e| e.to_string())
}

/// Whether `ask` asks what the recorded capture takes of each order.
fn same_plan(orders: &[Order], ask: &CaptureAsk) -> bool {
    let planned = orders.iter().filter(|o| o.capture_minor.is_some());
    planned.into_iter().all(|o| {
        let asked = ask.orders.iter().find(|(id, _)| PaymentOrderId::parse(id).as_ref() == Some(&o.payment_order_id));
        let take = match asked {
            Some((_, amount)) => parse_take(amount, o.amount.currency()).ok(),
            None => Some(o.amount.amount_minor()),
        };
        take == o.capture_minor
    }) && ask.orders.iter().all(|(id, _)| {
        PaymentOrderId::parse(id)
            .is_some_and(|id| orders.iter().any(|o| o.payment_order_id == id && o.capture_minor.is_some()))
    })
}

/// A PSP request the decision calls for, and the orders its answer is about.
struct Settlement {
    request: PspRequest,
    /// The token order it is for; None: the hosted checkout's one intent.
    token_order: Option<PaymentOrderId>,
    payment_intent: String,
}

/// The requests a checkout's recorded decision calls for, for the orders
/// still AUTHORIZED, each fixed the first time (every retry sends the same).
fn settlements(tx: &Tx, checkout_id: &str) -> anyhow::Result<Vec<Settlement>> {
    let Some(head) = store::find_event_head(tx, checkout_id)? else { return Ok(Vec::new()) };
    let Some(decision) = head.capture_decision else { return Ok(Vec::new()) };
    let orders = store::load_orders_of(tx, checkout_id)?;
    let live: Vec<&Order> = orders.iter().filter(|o| o.status == OrderStatus::Authorized).collect();
    let mut out = Vec::new();
    if head.payment_method == "hosted_page" {
        let Some(intent) = live.first().and_then(|o| o.psp_payment_intent_id.clone()) else { return Ok(out) };
        let take: i64 = live.iter().map(|o| o.capture_minor.unwrap_or(0)).sum();
        let request = request_for(decision, &intent, take, checkout_id);
        out.push(Settlement { request: requests::fix(tx, request)?, token_order: None, payment_intent: intent });
        return Ok(out);
    }
    for order in live {
        let Some(intent) = order.psp_payment_intent_id.clone() else { continue };
        let request = request_for(decision, &intent, order.capture_minor.unwrap_or(0), order.payment_order_id.as_str());
        let token_order = Some(order.payment_order_id.clone());
        out.push(Settlement { request: requests::fix(tx, request)?, token_order, payment_intent: intent });
    }
    Ok(out)
}

/// The PSP request of `decision` for one intent (`subject`: the checkout,
/// or the token order); a capture that takes nothing releases it.
fn request_for(decision: CaptureDecision, intent: &str, take_minor: i64, subject: &str) -> PspRequest {
    let cancel = |reason: &'static str, verb: &str| {
        CancelIntentRequest {
            payment_intent: intent.to_string(),
            reason,
            idempotency_key: format!("{verb}-{subject}"),
            subject_id: subject.to_string(),
        }
        .build()
    };
    match decision {
        CaptureDecision::Capture if take_minor > 0 => CaptureRequest {
            payment_intent: intent.to_string(),
            amount_to_capture: take_minor,
            idempotency_key: format!("capture-{subject}"),
            subject_id: subject.to_string(),
        }
        .build(),
        CaptureDecision::Capture => cancel("requested_by_customer", "release"),
        CaptureDecision::Void => cancel("requested_by_customer", "void"),
        CaptureDecision::Expire => cancel("abandoned", "expire"),
    }
}

/// The settle job (and the API call's own sending): each request the
/// checkout's decision calls for, sent and its answer applied. A request
/// the PSP refuses (the intent is no longer in a state for it: captured or
/// canceled meanwhile) is answered by reading the intent: its state is
/// what happened.
pub async fn settle(ctx: &Ctx, checkout_id: &str) -> Result<(), JobError> {
    let id = checkout_id.to_string();
    let work = ctx.db.write(move |tx| settlements(tx, &id)).await?;
    for s in work {
        let intent = match ctx.psp.settle_authorization(&s.request).await {
            Ok(intent) => intent,
            Err(PspError::Refused { .. }) => {
                match ctx.psp.retrieve_payment_intent(&s.payment_intent, checkout_id).await {
                    Ok(intent) => intent,
                    Err(PspError::Unknown(why)) => return Err(JobError::Retry(why)),
                    Err(e) => return Err(JobError::Final(e.to_string())),
                }
            }
            Err(rejected @ PspError::Rejected { .. }) => {
                return Err(JobError::Final(format!("{rejected}; checkout {checkout_id} stays AUTHORIZED")));
            }
            Err(PspError::Unknown(why)) => return Err(JobError::Retry(why)),
        };
        apply_intent(ctx, checkout_id, s.token_order, intent).await?;
    }
    Ok(())
}

/// What a hosted checkout's payment intent (read from the PSP after one of
/// its events) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostedIntent {
    Applied,
    /// The checkout is captured automatically: its session's events tell.
    Automatic,
    /// The intent is not (yet) the one its orders recorded: only the
    /// checkout's session can say it is its payment (sync the session).
    NotRecorded,
}

/// A payment intent event of a manual hosted checkout (authorized,
/// captured, canceled): applied when the intent is the one the checkout's
/// orders recorded from its session; otherwise the session must be asked.
pub async fn apply_hosted_intent(
    ctx: &Ctx,
    checkout_id: &str,
    intent: PaymentIntent,
) -> Result<HostedIntent, JobError> {
    let (id, policy) = (checkout_id.to_string(), Policy::of(&ctx.settings));
    ctx.db
        .write(move |tx| -> Result<HostedIntent, JobError> {
            let head = store::find_event_head(tx, &id)?.ok_or_else(|| JobError::Final(format!("no checkout {id}")))?;
            if head.capture_method != CaptureMethod::Manual || head.payment_method != "hosted_page" {
                return Ok(HostedIntent::Automatic);
            }
            let orders = store::load_orders_of(tx, &id)?;
            if !orders.iter().any(|o| o.psp_payment_intent_id.as_deref() == Some(intent.id.as_str())) {
                return Ok(HostedIntent::NotRecorded);
            }
            let checkout_id = CheckoutId::from_stored(id.clone());
            apply_to_group(tx, &head, &checkout_id, &orders, &intent, None, policy)
                .map_err(|e| JobError::Final(format!("{e:#}")))?;
            notify::checkout_progress(tx, &id, policy)?;
            Ok(HostedIntent::Applied)
        })
        .await
}

/// Applies an intent (just read from the PSP) to the orders of a manual
/// checkout it charges: the checkout's orders for a hosted checkout, the
/// one order for a token payment.
pub async fn apply_intent(
    ctx: &Ctx,
    checkout_id: &str,
    token_order: Option<PaymentOrderId>,
    intent: PaymentIntent,
) -> Result<(), JobError> {
    let (id, policy) = (checkout_id.to_string(), Policy::of(&ctx.settings));
    ctx.db
        .write(move |tx| -> Result<(), JobError> {
            let head = store::find_event_head(tx, &id)?.ok_or_else(|| JobError::Final(format!("no checkout {id}")))?;
            let orders = store::load_orders_of(tx, &id)?;
            let group: Vec<Order> = match &token_order {
                Some(order_id) => orders.into_iter().filter(|o| o.payment_order_id == *order_id).collect(),
                None => orders,
            };
            let checkout_id = CheckoutId::from_stored(id.clone());
            apply_to_group(tx, &head, &checkout_id, &group, &intent, token_order.as_ref(), policy)
                .map_err(|e| JobError::Final(format!("{e:#}")))?;
            notify::checkout_progress(tx, &id, policy)?;
            Ok(())
        })
        .await
}

/// The PSP's own copy of the intent that charges `group` (a hosted
/// checkout's orders, or one token order of a manual checkout), applied to
/// those of them not final: authorized, captured (each for what the
/// capture took of it: the recorded plan, or, for a capture made outside
/// till, the amount received shared in proportion), or ended (voided,
/// expired, declined). The intent must be for exactly the group's amount
/// and currency, and be the one the orders recorded, if they did.
pub fn apply_to_group(
    tx: &Tx,
    head: &EventHead,
    checkout_id: &CheckoutId,
    group: &[Order],
    intent: &PaymentIntent,
    token_order: Option<&PaymentOrderId>,
    policy: Policy,
) -> anyhow::Result<()> {
    check_intent(group, intent)?;
    let live: Vec<&Order> = group.iter().filter(|o| !o.status.is_final()).collect();
    if live.is_empty() {
        return Ok(());
    }
    match intent.outcome() {
        IntentOutcome::Authorized => authorize(tx, checkout_id, &live, intent, policy),
        IntentOutcome::Succeeded => captured(tx, checkout_id, &live, intent, token_order, policy),
        IntentOutcome::Failed(code) => {
            let code = match head.capture_decision {
                Some(CaptureDecision::Void) => "canceled".to_string(),
                Some(CaptureDecision::Expire) => "authorization_expired".to_string(),
                Some(CaptureDecision::Capture) | None => code,
            };
            let reason = format!("the PSP ended the authorization: {code}");
            for order in live {
                let id = order.payment_order_id.as_str();
                fail_order(tx, id, order.status, &code, &reason, policy)?;
            }
            alerts::resolve(tx, EXPIRING_ALERT, checkout_id.as_str(), &format!("the authorization ended: {code}"))?;
            Ok(())
        }
        IntentOutcome::Pending => Ok(()),
    }
}

fn check_intent(group: &[Order], intent: &PaymentIntent) -> anyhow::Result<()> {
    let first = group.first().ok_or_else(|| anyhow::anyhow!("payment intent {} pays no order here", intent.id))?;
    let total: i64 = group.iter().map(|o| o.amount.amount_minor()).sum();
    let currency = first.amount.currency();
    anyhow::ensure!(
        intent.amount == total && intent.currency.eq_ignore_ascii_case(currency.code()),
        "payment intent {} is for {} {}, but its orders add up to {total} {currency}",
        intent.id,
        intent.amount,
        intent.currency
    );
    if let Some(o) = group.iter().find(|o| o.psp_payment_intent_id.as_deref().is_some_and(|pi| pi != intent.id)) {
        anyhow::bail!("order {} is paid by another payment intent than {}", o.payment_order_id, intent.id);
    }
    Ok(())
}

/// EXECUTING → AUTHORIZED for the orders the intent holds money for, each
/// to be captured by the same deadline; the shop is told, and the job that
/// watches the deadline is queued.
fn authorize(
    tx: &Tx,
    checkout_id: &CheckoutId,
    live: &[&Order],
    intent: &PaymentIntent,
    policy: Policy,
) -> anyhow::Result<()> {
    let executing: Vec<&&Order> = live.iter().filter(|o| o.status == OrderStatus::Executing).collect();
    let total: i64 = live.iter().map(|o| o.amount.amount_minor()).sum();
    anyhow::ensure!(
        intent.amount_capturable == total || executing.is_empty(),
        "payment intent {} authorized {} of the {total} its orders ask",
        intent.id,
        intent.amount_capturable
    );
    let before = capture_before(policy);
    let mut moved = Vec::new();
    for order in executing {
        let id = order.payment_order_id.as_str();
        if store::mark_authorized(tx, id, &intent.id, &before, "authorized at the PSP; awaits the shop's capture")? {
            moved.push(id);
        }
    }
    if moved.is_empty() {
        return Ok(());
    }
    notify::orders_final(tx, &moved, OrderStatus::Authorized, policy)?;
    let alert_in_ms = (policy.authorization_ms - ALERT_BEFORE_MS).max(0);
    queue::enqueue(tx, JobKind::AuthorizationDeadline, checkout_id.as_str(), alert_in_ms, policy.job_attempts)?;
    Ok(())
}

/// The intent was captured: each live order → SUCCESS for its share of
/// what the PSP received (booked as a paid order), or FAILED `canceled`
/// when the capture took nothing of it.
fn captured(
    tx: &Tx,
    checkout_id: &CheckoutId,
    live: &[&Order],
    intent: &PaymentIntent,
    token_order: Option<&PaymentOrderId>,
    policy: Policy,
) -> anyhow::Result<()> {
    let received = intent.received_minor();
    let asked: i64 = live.iter().map(|o| o.amount.amount_minor()).sum();
    anyhow::ensure!(
        received > 0 && received <= asked,
        "payment intent {} received {received} of the {asked} its orders ask",
        intent.id
    );
    let shares = shares_of(live, received);
    let mut paid: Vec<Order> = Vec::new();
    for (order, take) in live.iter().zip(shares) {
        let id = order.payment_order_id.as_str();
        if order.capture_minor != Some(take) {
            store::set_capture_plan(tx, id, take)?;
        }
        if take == 0 {
            fail_order(tx, id, order.status, "canceled", "released: the capture took nothing of it", policy)?;
        } else {
            paid.push(Order { capture_minor: Some(take), ..(*order).clone() });
        }
    }
    let currency = live[0].amount.currency();
    let charge = store::Charge {
        payment_intent_id: intent.id.clone(),
        checkout_id: checkout_id.clone(),
        payment_order_id: token_order.cloned(),
        amount: Money::from_minor(received, currency)?,
    };
    let paid: Vec<&Order> = paid.iter().collect();
    succeed_orders(tx, &paid, Some(&charge), policy)?;
    alerts::resolve(tx, EXPIRING_ALERT, checkout_id.as_str(), "captured")?;
    Ok(())
}

/// What each order takes of `received`: the capture the shop asked for
/// when it adds up to what the PSP received; else (a capture made outside
/// till) `received` shared in proportion to the orders' amounts, rounded
/// down, the remainder a minor unit each to the first orders.
fn shares_of(live: &[&Order], received: i64) -> Vec<i64> {
    let planned: Option<Vec<i64>> = live.iter().map(|o| o.capture_minor).collect();
    if let Some(plan) = planned.filter(|p| p.iter().sum::<i64>() == received) {
        return plan;
    }
    let amounts: Vec<i64> = live.iter().map(|o| o.amount.amount_minor()).collect();
    crate::money::share_in_proportion(received, &amounts, &amounts)
}

/// The deadline job of a manual checkout: a day before its authorization
/// expires, an alert (unless the shop decided meanwhile); at the deadline,
/// the expiry is recorded as the decision and the authorization released
/// at the PSP: its orders end FAILED `authorization_expired`.
pub async fn authorization_deadline(ctx: &Ctx, checkout_id: &str) -> Result<(), JobError> {
    let id = checkout_id.to_string();
    let step = ctx
        .db
        .write(move |tx| -> Result<Option<i64>, JobError> {
            let Some(head) = store::find_event_head(tx, &id)? else { return Ok(None) };
            let orders = store::load_orders_of(tx, &id)?;
            let Some(deadline) = deadline_ms(&orders) else { return Ok(None) };
            if head.capture_decision.is_some() {
                return Ok(None);
            }
            let now = crate::db::now_ms();
            if now < deadline - ALERT_BEFORE_MS {
                return Ok(Some(deadline - ALERT_BEFORE_MS));
            }
            if now < deadline {
                alerts::raise(tx, EXPIRING_ALERT, &id, &expiring_message(&id, &orders))?;
                return Ok(Some(deadline));
            }
            store::record_capture_decision(tx, &id, CaptureDecision::Expire)?;
            Ok(None)
        })
        .await?;
    if let Some(at_ms) = step {
        return Err(JobError::Later {
            at_ms,
            why: format!("the authorization of checkout {checkout_id} waits for capture"),
        });
    }
    settle(ctx, checkout_id).await
}

/// When the first uncaptured authorization of these orders expires (unix ms).
fn deadline_ms(orders: &[Order]) -> Option<i64> {
    orders
        .iter()
        .filter(|o| o.status == OrderStatus::Authorized)
        .filter_map(|o| o.capture_before.as_deref())
        .filter_map(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
        .map(|at| at.timestamp_millis())
        .min()
}

fn expiring_message(checkout_id: &str, orders: &[Order]) -> String {
    let authorized: Vec<String> = orders
        .iter()
        .filter(|o| o.status == OrderStatus::Authorized)
        .map(|o| format!("{} {}", format_minor(o.amount.amount_minor(), o.amount.currency()), o.amount.currency()))
        .collect();
    let before = orders.iter().filter_map(|o| o.capture_before.clone()).min().unwrap_or_default();
    format!(
        "checkout {checkout_id} holds an uncaptured authorization ({}) that expires at {before}: capture it \
         (POST /v1/checkouts/{checkout_id}/capture) or void it; uncaptured, its orders end FAILED \
         authorization_expired and the buyer's money is released",
        authorized.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(amount: i64, capture: Option<i64>) -> Order {
        Order { capture_minor: capture, ..Order::for_tests("s", amount, "USD", OrderStatus::Authorized) }
    }

    #[test]
    fn a_capture_made_outside_till_is_shared_in_proportion_and_adds_up() {
        let (a, b, c) = (order(2500, None), order(1000, None), order(1, None));
        let live = [&a, &b, &c];
        assert_eq!(shares_of(&live, 3501), vec![2500, 1000, 1], "all of it");
        let shares = shares_of(&live, 1750);
        assert_eq!(shares.iter().sum::<i64>(), 1750);
        assert!(shares.iter().zip([2500, 1000, 1]).all(|(s, a)| *s <= a), "{shares:?}");
        let (p, q) = (order(2500, Some(2000)), order(1000, Some(0)));
        assert_eq!(shares_of(&[&p, &q], 2000), vec![2000, 0], "the shop's plan when it adds up");
        assert_eq!(shares_of(&[&p, &q], 3500), vec![2500, 1000], "else what the PSP took, shared");
    }

    #[test]
    fn a_capture_amount_is_a_decimal_of_the_currency_or_zero() {
        let usd = Currency::parse("USD").unwrap();
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(parse_take("20.00", usd), Ok(2000));
        assert_eq!(parse_take("0", usd), Ok(0));
        assert_eq!(parse_take("0.00", usd), Ok(0));
        assert_eq!(parse_take("0", jpy), Ok(0));
        for bad in ["0.000", "-1.00", "", ".", "0.", "1.001", "abc"] {
            assert!(parse_take(bad, usd).is_err(), "{bad:?}");
        }
        assert!(parse_take("0.0", jpy).is_err());
    }

    #[test]
    fn the_same_capture_asked_again_is_recognised_and_another_is_not() {
        let (a, b) = (order(2500, Some(2000)), order(1000, Some(1000)));
        let orders = [a.clone(), b.clone()];
        let ask = |list: &[(&Order, &str)]| CaptureAsk {
            orders: list.iter().map(|(o, amount)| (o.payment_order_id.to_string(), amount.to_string())).collect(),
        };
        assert!(same_plan(&orders, &ask(&[(&a, "20.00")])), "b not named: in full");
        assert!(same_plan(&orders, &ask(&[(&a, "20.00"), (&b, "10.00")])));
        assert!(!same_plan(&orders, &ask(&[])), "a in full is another capture");
        assert!(!same_plan(&orders, &ask(&[(&a, "20.00"), (&b, "5.00")])));
    }
}
