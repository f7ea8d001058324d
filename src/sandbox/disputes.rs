//! Disputes (chargebacks) as Stripe's test mode makes them. The charge of
//! the dispute test card (`4000000000000259`, `pm_card_createDispute`) is
//! disputed as `fraudulent` by the ticker `[sandbox] dispute_after_ms` after
//! it is captured; opening the dispute withdraws its amount (what the intent
//! received and has not refunded) and the dispute fee from the balance.
//!
//! The state machine is Stripe's: `needs_response` (or
//! `warning_needs_response`, which the sandbox never makes) → `under_review`
//! once evidence is submitted → `won` or `lost`, decided by the ticker about
//! [`DECIDE_DELAY_MS`] later on the evidence, as Stripe's test mode decides:
//! `uncategorized_text` = [`WINNING_EVIDENCE`] wins (the amount is given
//! back, without the fee), [`LOSING_EVIDENCE`] loses, anything else stays
//! under review. Closing (accepting) it or letting `due_by` pass without a
//! submission loses it. `won` and `lost` are final. Every transition is
//! guarded in SQL and sends its events in its transaction.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::Shared;
use super::balance::{self, BalanceTransaction, Category, Entry};
use super::error::{StripeError, truncate};
use super::events;
use super::ids::{new_id, now_ms, now_s};
use super::params::{Metadata, Params};
use super::payment_intents;
use super::reply::Reply;
use super::sql;

/// Evidence is due this many days after a dispute is opened (Stripe: 7 to 21).
pub const RESPONSE_DAYS: i64 = 7;
const SECONDS_PER_DAY: i64 = 86_400;
/// Submitted evidence is decided this long after it is submitted.
pub const DECIDE_DELAY_MS: i64 = 500;
/// Stripe's longest `evidence[uncategorized_text]`.
pub const MAX_EVIDENCE_CHARS: usize = 20_000;
pub const WINNING_EVIDENCE: &str = "winning_evidence";
pub const LOSING_EVIDENCE: &str = "losing_evidence";
const DEFAULT_LIMIT: i64 = 10;
const MAX_LIMIT: i64 = 100;
/// Stripe's evidence fields. The sandbox keeps only `uncategorized_text`;
/// the others are always null and refused on update.
const EVIDENCE_KEYS: [&str; 27] = [
    "access_activity_log",
    "billing_address",
    "cancellation_policy",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_communication",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "customer_signature",
    "duplicate_charge_documentation",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "receipt",
    "refund_policy",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "service_documentation",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_documentation",
    "shipping_tracking_number",
    "uncategorized_file",
    "uncategorized_text",
];
const TEXT_KEY: &str = "uncategorized_text";
/// The statuses awaiting the merchant's response: evidence may be staged or submitted.
const AWAITING_SQL: &str = "'warning_needs_response', 'needs_response'";
/// The statuses a dispute may be closed (accepted) from.
const OPEN_SQL: &str = "'warning_needs_response', 'needs_response', 'under_review'";

#[derive(Debug, Clone, Serialize)]
pub struct Dispute {
    pub id: String,
    pub object: &'static str,
    pub amount: i64,
    pub balance_transactions: Vec<BalanceTransaction>,
    pub charge: String,
    pub created: i64,
    pub currency: String,
    pub evidence: BTreeMap<&'static str, Option<String>>,
    pub evidence_details: EvidenceDetails,
    pub is_charge_refundable: bool,
    pub livemode: bool,
    pub metadata: Metadata,
    pub payment_intent: String,
    pub reason: String,
    pub status: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvidenceDetails {
    pub due_by: i64,
    pub has_evidence: bool,
    /// The sandbox sets it when `due_by` passed without a submission.
    pub past_due: bool,
    pub submission_count: i64,
}

impl Dispute {
    fn text(&self) -> Option<&str> {
        self.evidence.get(TEXT_KEY).and_then(|t| t.as_deref())
    }
}

#[derive(Serialize)]
struct List {
    object: &'static str,
    data: Vec<Dispute>,
    has_more: bool,
    url: &'static str,
}

/// How a dispute closes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Closing {
    /// `POST /v1/disputes/{id}/close`: lost.
    Accepted,
    /// `due_by` passed without a submission: lost.
    PastDue {
        now_s: i64,
    },
    LosingEvidence,
    WinningEvidence,
}

/// Opens the due dispute of a captured dispute test card's charge:
/// `needs_response`, the withdrawal of the amount and the fee, events
/// `charge.dispute.created` and `charge.dispute.funds_withdrawn`. Nothing
/// when it was opened already or nothing is left to dispute (all refunded).
pub fn open(conn: &Connection, shared: &Shared, pi_id: &str, now_ms: i64) -> anyhow::Result<Option<String>> {
    let Some((intent, amount)) = payment_intents::take_due_dispute(conn, pi_id, now_ms)? else {
        return Ok(None);
    };
    let charge = intent.latest_charge.clone().ok_or_else(|| anyhow::anyhow!("payment intent {pi_id} has no charge"))?;
    if amount <= 0 {
        tracing::debug!(payment_intent = pi_id, "nothing left to dispute: refunded in full");
        return Ok(None);
    }
    let id = new_id("du_");
    let created = now_s();
    conn.execute(
        "INSERT INTO disputes (id, seq, payment_intent, charge, amount, currency, reason, status, metadata,
             due_by, created)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM disputes), ?2, ?3, ?4, ?5, 'fraudulent',
             'needs_response', '{}', ?6, ?7)",
        params![id, pi_id, charge, amount, intent.currency, created + RESPONSE_DAYS * SECONDS_PER_DAY, created],
    )?;
    let description = format!("Chargeback withdrawal for {charge}");
    balance::book(
        conn,
        &Entry {
            created,
            currency: &intent.currency,
            amount: -amount,
            fee: balance::major_fee_minor(shared.settings.dispute_fee, &intent.currency)?,
            category: Category::Dispute,
            source_id: &id,
            payment_intent: Some(pi_id),
            description: Some(&description),
            payment_metadata: &intent.metadata,
        },
    )?;
    let dispute = load_required(conn, &id)?;
    events::emit(conn, shared, "charge.dispute.created", &dispute)?;
    events::emit(conn, shared, "charge.dispute.funds_withdrawn", &dispute)?;
    Ok(Some(id))
}

/// Whether the intent's charge has a dispute that was not won: it cannot be refunded.
pub fn blocks_refund(conn: &Connection, pi_id: &str) -> anyhow::Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM disputes WHERE payment_intent = ?1 AND status <> 'won')",
        [pi_id],
        |r| r.get(0),
    )?)
}

/// `GET /v1/disputes/{id}`.
pub fn retrieve(conn: &Connection, id: &str) -> Result<Reply, StripeError> {
    Reply::ok(&load_or_404(conn, id)?)
}

/// `GET /v1/disputes` (`payment_intent`, `charge`, `limit` 1 to 100 (10),
/// `starting_after`): newest first, Stripe's list.
pub fn list(conn: &Connection, query: &Params) -> Result<Reply, StripeError> {
    query.only(&["payment_intent", "charge", "limit", "starting_after"])?;
    let limit = query.opt_i64("limit")?.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(StripeError::invalid(
            "parameter_invalid_integer",
            "limit",
            format!("Invalid limit: must be between 1 and {MAX_LIMIT}."),
        ));
    }
    let before_seq = match query.opt_str("starting_after")? {
        Some(after) => Some(seq_of(conn, &after)?),
        None => None,
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT id FROM disputes
             WHERE (?1 IS NULL OR payment_intent = ?1) AND (?2 IS NULL OR charge = ?2) AND (?3 IS NULL OR seq < ?3)
             ORDER BY seq DESC LIMIT ?4",
        )
        .map_err(anyhow::Error::from)?;
    let ids = stmt
        .query_map(params![query.opt_str("payment_intent")?, query.opt_str("charge")?, before_seq, limit + 1], |r| {
            r.get::<_, String>(0)
        })
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(anyhow::Error::from)?;
    let has_more = ids.len() as i64 > limit;
    let data = ids.iter().take(limit as usize).map(|id| load_required(conn, id)).collect::<anyhow::Result<_>>()?;
    Reply::ok(&List { object: "list", data, has_more, url: "/v1/disputes" })
}

fn seq_of(conn: &Connection, id: &str) -> Result<i64, StripeError> {
    let seq = conn
        .query_row("SELECT seq FROM disputes WHERE id = ?1", [id], |r| r.get(0))
        .optional()
        .map_err(anyhow::Error::from)?;
    seq.ok_or_else(|| StripeError::InvalidRequest {
        code: Some("resource_missing"),
        param: Some("starting_after".into()),
        message: format!("No such dispute: '{}'", truncate(id, 80)),
    })
}

/// `POST /v1/disputes/{id}` (`evidence[uncategorized_text]`, `metadata[]`,
/// `submit`, default true as on Stripe): only while the dispute awaits a
/// response. Staged evidence leaves the status; submitted evidence puts the
/// dispute `under_review`, decided a moment later. Event `charge.dispute.updated`.
pub fn update(conn: &Connection, shared: &Shared, id: &str, params: Params) -> Result<Reply, StripeError> {
    params.only(&["evidence", "metadata", "submit"])?;
    let text = parse_evidence(&params)?;
    let submit = params.opt_bool("submit")?.unwrap_or(true);
    let patch = params.metadata_patch("metadata")?;
    let dispute = load_or_404(conn, id)?;
    if !matches!(dispute.status.as_str(), "needs_response" | "warning_needs_response") {
        return Err(not_updatable(&dispute.status));
    }
    let metadata = patch.apply(&dispute.metadata, "metadata")?;
    Reply::ok(&stage(conn, shared, id, text, submit, &metadata)?)
}

/// `evidence[…]`: `Some(text)` when `uncategorized_text` was sent (`None`
/// inside: sent empty, unset), `None` when it was not.
fn parse_evidence(params: &Params) -> Result<Option<Option<String>>, StripeError> {
    let Some(evidence) = params.child("evidence")? else {
        return Ok(None);
    };
    if let Some(other) = EVIDENCE_KEYS.iter().find(|k| **k != TEXT_KEY && evidence.has(k)) {
        let name = evidence.name(other);
        return Err(StripeError::invalid(
            "parameter_invalid",
            &name,
            format!("The sandbox keeps only evidence[{TEXT_KEY}]; {name} is not supported."),
        ));
    }
    evidence.only(&[TEXT_KEY])?;
    if !evidence.has(TEXT_KEY) {
        return Ok(None);
    }
    let text = evidence.opt_str(TEXT_KEY)?;
    if text.as_ref().is_some_and(|t| t.chars().count() > MAX_EVIDENCE_CHARS) {
        let name = evidence.name(TEXT_KEY);
        return Err(StripeError::invalid(
            "parameter_invalid",
            &name,
            format!("{name} can be at most {MAX_EVIDENCE_CHARS} characters."),
        ));
    }
    Ok(Some(text))
}

fn not_updatable(status: &str) -> StripeError {
    if status == "under_review" {
        return StripeError::unexpected_state(
            "dispute_already_submitted",
            "This dispute's evidence has already been submitted (status under_review): it can no longer be updated.",
        );
    }
    StripeError::unexpected_state(
        "dispute_already_closed",
        format!("This dispute is already closed (status {status}): it can no longer be updated."),
    )
}

/// Stores the evidence and metadata; with `submit`, → `under_review`.
fn stage(
    conn: &Connection,
    shared: &Shared,
    id: &str,
    text: Option<Option<String>>,
    submit: bool,
    metadata: &Metadata,
) -> anyhow::Result<Dispute> {
    let changed = conn.execute(
        &format!(
            "UPDATE disputes SET uncategorized_text = CASE WHEN ?2 THEN ?3 ELSE uncategorized_text END,
                 metadata = ?4, status = CASE WHEN ?5 THEN 'under_review' ELSE status END,
                 submission_count = submission_count + ?5, decide_at_ms = CASE WHEN ?5 THEN ?6 END
             WHERE id = ?1 AND status IN ({AWAITING_SQL})"
        ),
        params![
            id,
            text.is_some(),
            text.flatten(),
            serde_json::to_string(metadata)?,
            submit,
            now_ms() + DECIDE_DELAY_MS
        ],
    )?;
    anyhow::ensure!(changed == 1, "dispute {id} stopped awaiting a response while being updated");
    let dispute = load_required(conn, id)?;
    events::emit(conn, shared, "charge.dispute.updated", &dispute)?;
    Ok(dispute)
}

/// `POST /v1/disputes/{id}/close`: accepting the dispute → `lost`.
pub fn close(conn: &Connection, shared: &Shared, id: &str, params: Params) -> Result<Reply, StripeError> {
    params.only(&[])?;
    let dispute = load_or_404(conn, id)?;
    match close_as(conn, shared, id, Closing::Accepted)? {
        Some(closed) => Reply::ok(&closed),
        None => Err(StripeError::unexpected_state(
            "dispute_already_closed",
            format!("This dispute is already closed (status {}).", dispute.status),
        )),
    }
}

/// Disputes under review whose evidence is due to be decided, at most `limit`.
pub fn due_for_decision(conn: &Connection, now_ms: i64, limit: i64) -> anyhow::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM disputes WHERE decide_at_ms IS NOT NULL AND decide_at_ms <= ?1
         ORDER BY decide_at_ms LIMIT ?2",
    )?;
    let ids = stmt.query_map(params![now_ms, limit], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

/// Decides submitted evidence as Stripe's test mode does: won, lost, or
/// (any other text) under review for good.
pub fn decide(conn: &Connection, shared: &Shared, id: &str) -> anyhow::Result<()> {
    let Some(dispute) = load(conn, id)? else {
        return Ok(());
    };
    let closing = match dispute.text().map(str::trim) {
        Some(WINNING_EVIDENCE) => Closing::WinningEvidence,
        Some(LOSING_EVIDENCE) => Closing::LosingEvidence,
        _ => {
            conn.execute("UPDATE disputes SET decide_at_ms = NULL WHERE id = ?1 AND status = 'under_review'", [id])?;
            return Ok(());
        }
    };
    close_as(conn, shared, id, closing)?;
    Ok(())
}

/// Disputes still awaiting a response past `due_by`, at most `limit`.
pub fn past_due(conn: &Connection, now_s: i64, limit: i64) -> anyhow::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id FROM disputes WHERE status IN ({AWAITING_SQL}) AND due_by <= ?1 ORDER BY due_by LIMIT ?2"
    ))?;
    let ids = stmt.query_map(params![now_s, limit], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

/// A dispute left without a response past `due_by` → `lost`, `past_due`.
pub fn close_past_due(conn: &Connection, shared: &Shared, id: &str, now_s: i64) -> anyhow::Result<()> {
    close_as(conn, shared, id, Closing::PastDue { now_s })?;
    Ok(())
}

/// → `won` (the amount given back: a `dispute_reversal` line, event
/// `charge.dispute.funds_reinstated`) or `lost`, then `charge.dispute.closed`;
/// `None` if the dispute was not in a state `closing` applies to.
fn close_as(conn: &Connection, shared: &Shared, id: &str, closing: Closing) -> anyhow::Result<Option<Dispute>> {
    let (status, guard, past_due) = match closing {
        Closing::Accepted => ("lost", format!("status IN ({OPEN_SQL})"), false),
        Closing::PastDue { now_s } => ("lost", format!("status IN ({AWAITING_SQL}) AND due_by <= {now_s}"), true),
        Closing::LosingEvidence => ("lost", "status = 'under_review' AND decide_at_ms IS NOT NULL".into(), false),
        Closing::WinningEvidence => ("won", "status = 'under_review' AND decide_at_ms IS NOT NULL".into(), false),
    };
    let changed = conn.execute(
        &format!(
            "UPDATE disputes SET status = ?2, decide_at_ms = NULL, past_due = MAX(past_due, ?3)
             WHERE id = ?1 AND {guard}"
        ),
        params![id, status, past_due],
    )?;
    if changed == 0 {
        return Ok(None);
    }
    if closing == Closing::WinningEvidence {
        reinstate(conn, shared, id)?;
    }
    let dispute = load_required(conn, id)?;
    events::emit(conn, shared, "charge.dispute.closed", &dispute)?;
    Ok(Some(dispute))
}

/// A won dispute's amount back in the balance (the fee is not returned, as on Stripe).
fn reinstate(conn: &Connection, shared: &Shared, id: &str) -> anyhow::Result<()> {
    let dispute = load_required(conn, id)?;
    let intent = payment_intents::load_required(conn, &dispute.payment_intent)?;
    let description = format!("Chargeback reversal for {}", dispute.charge);
    balance::book(
        conn,
        &Entry {
            created: now_s(),
            currency: &dispute.currency,
            amount: dispute.amount,
            fee: 0,
            category: Category::DisputeReversal,
            source_id: id,
            payment_intent: Some(&dispute.payment_intent),
            description: Some(&description),
            payment_metadata: &intent.metadata,
        },
    )?;
    let dispute = load_required(conn, id)?;
    events::emit(conn, shared, "charge.dispute.funds_reinstated", &dispute)?;
    Ok(())
}

fn load_or_404(conn: &Connection, id: &str) -> Result<Dispute, StripeError> {
    load(conn, id)?.ok_or_else(|| StripeError::no_such("dispute", id, Some("dispute")))
}

fn load_required(conn: &Connection, id: &str) -> anyhow::Result<Dispute> {
    load(conn, id)?.ok_or_else(|| anyhow::anyhow!("dispute {id} vanished"))
}

fn load(conn: &Connection, id: &str) -> anyhow::Result<Option<Dispute>> {
    let dispute = conn
        .query_row(
            "SELECT id, payment_intent, charge, amount, currency, reason, status, uncategorized_text, metadata,
                    submission_count, past_due, due_by, created
             FROM disputes WHERE id = ?1",
            [id],
            from_row,
        )
        .optional()?;
    let Some(mut dispute) = dispute else {
        return Ok(None);
    };
    dispute.balance_transactions = balance::for_source(conn, &dispute.id)?;
    Ok(Some(dispute))
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Dispute> {
    let text: Option<String> = r.get(7)?;
    let has_evidence = text.is_some();
    let mut evidence: BTreeMap<&'static str, Option<String>> = EVIDENCE_KEYS.iter().map(|k| (*k, None)).collect();
    evidence.insert(TEXT_KEY, text);
    Ok(Dispute {
        id: r.get(0)?,
        object: "dispute",
        amount: r.get(3)?,
        balance_transactions: Vec::new(),
        charge: r.get(2)?,
        created: r.get(12)?,
        currency: r.get(4)?,
        evidence,
        evidence_details: EvidenceDetails {
            due_by: r.get(11)?,
            has_evidence,
            past_due: r.get(10)?,
            submission_count: r.get(9)?,
        },
        is_charge_refundable: false,
        livemode: false,
        metadata: sql::json(r, 8)?,
        payment_intent: r.get(1)?,
        reason: r.get(5)?,
        status: r.get(6)?,
    })
}
