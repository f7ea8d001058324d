//! Disputes (chargebacks, SPEC §3.6a): a cardholder disputes a charge, and
//! the PSP takes the money back, with a fee. till learns of a dispute from
//! the PSP's event, re-read from the PSP as every event is, and keeps one
//! dispute per order the disputed charge paid (a hosted checkout's one
//! charge pays all its orders: the disputed amount is shared among them in
//! proportion to what each still holds, and the first bears the fee).
//!
//! Each movement is booked once, when the PSP's own copy shows it (its
//! balance transactions): the withdrawal out of `assets:psp_balance`, the
//! amount from the seller's wallet (its share; the platform gives back its
//! commission) when `disputes.seller_liable`, else from the platform
//! (`expenses:disputes`), and the fee to `expenses:dispute_fees`; a won
//! dispute's reinstatement reverses the amount. A wallet may go below zero
//! this way: the seller owes it, later pay-ins repay it, and no payout is
//! made meanwhile (`till check` says so, rather than forbid it).
//!
//! The shop answers once, while the dispute needs a response: with its
//! evidence (`POST /v1/disputes/{id}/evidence`, sent as
//! `evidence[uncategorized_text]` and submitted) or by accepting it
//! (`/accept`). The answer is recorded first, with the PSP request it calls
//! for fixed and a job to send it (outbox); the API call sends it at once.
//! A refund of a disputed order is refused while its dispute is open (and
//! once it is lost: the cardholder has the money back already).
//! This module owns `disputes`.

pub mod store;

use std::fmt;

use serde::Serialize;

use crate::alerts;
use crate::context::Ctx;
use crate::db::Tx;
use crate::events;
use crate::ledger::{self, Posting};
use crate::money::{Currency, format_minor};
use crate::payments::store::RefundableOrder;
use crate::psp::requests::{self, PspRequest};
use crate::psp::types::Dispute;
use crate::psp::{DisputeResponse, DisputeResponseRequest, PspError};
use crate::queue::{self, JobError, JobKind};
use crate::wallet;

pub use store::DisputeView;

/// The alert a new dispute raises, with its evidence deadline (subject: the PSP's dispute).
pub const OPENED_ALERT: &str = "dispute_opened";
/// Longest evidence text (Stripe's limit on `uncategorized_text`).
pub const MAX_EVIDENCE_CHARS: usize = 20_000;
/// The response job waits this long before it sends what the API call is
/// sending at once: it is there for a crash or an unknown outcome.
const RESPONSE_JOB_DELAY_MS: i64 = 5_000;

/// Where a dispute is: `needs_response → under_review → won | lost`, or
/// `accepted` (the shop gave it up); won, lost and accepted are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisputeStatus {
    NeedsResponse,
    UnderReview,
    Won,
    Lost,
    Accepted,
}

impl DisputeStatus {
    pub const ALL: [DisputeStatus; 5] = [
        DisputeStatus::NeedsResponse,
        DisputeStatus::UnderReview,
        DisputeStatus::Won,
        DisputeStatus::Lost,
        DisputeStatus::Accepted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DisputeStatus::NeedsResponse => "needs_response",
            DisputeStatus::UnderReview => "under_review",
            DisputeStatus::Won => "won",
            DisputeStatus::Lost => "lost",
            DisputeStatus::Accepted => "accepted",
        }
    }

    pub fn parse(s: &str) -> Option<DisputeStatus> {
        DisputeStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    // Written without a `_` arm so a new state must be placed on purpose.
    pub fn is_final(self) -> bool {
        match self {
            DisputeStatus::Won | DisputeStatus::Lost | DisputeStatus::Accepted => true,
            DisputeStatus::NeedsResponse | DisputeStatus::UnderReview => false,
        }
    }

    /// The one transition function of a dispute: forward only, and a
    /// closed dispute never moves again.
    pub fn can_move_to(self, to: DisputeStatus) -> bool {
        match (self, to) {
            (DisputeStatus::NeedsResponse, DisputeStatus::UnderReview)
            | (DisputeStatus::NeedsResponse | DisputeStatus::UnderReview, DisputeStatus::Won | DisputeStatus::Lost)
            | (DisputeStatus::NeedsResponse, DisputeStatus::Accepted) => true,
            (DisputeStatus::NeedsResponse, DisputeStatus::NeedsResponse)
            | (DisputeStatus::UnderReview, DisputeStatus::NeedsResponse | DisputeStatus::UnderReview)
            | (DisputeStatus::UnderReview, DisputeStatus::Accepted)
            | (DisputeStatus::Won | DisputeStatus::Lost | DisputeStatus::Accepted, _) => false,
        }
    }

    /// The PSP's status in till's words: Stripe's inquiries (`warning_…`)
    /// read as the dispute they may become; a lost dispute the shop
    /// accepted is `accepted`; an inquiry closed without a chargeback, or
    /// one prevented, is won (the shop keeps the money).
    pub fn of_psp(status: &str, response: Option<DisputeResponseKind>) -> Option<DisputeStatus> {
        Some(match status {
            "needs_response" | "warning_needs_response" => DisputeStatus::NeedsResponse,
            "under_review" | "warning_under_review" => DisputeStatus::UnderReview,
            "won" | "warning_closed" | "prevented" => DisputeStatus::Won,
            "lost" if response == Some(DisputeResponseKind::Accept) => DisputeStatus::Accepted,
            "lost" => DisputeStatus::Lost,
            _ => return None,
        })
    }
}

impl fmt::Display for DisputeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The shop's one answer to a dispute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisputeResponseKind {
    Evidence,
    Accept,
}

impl DisputeResponseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DisputeResponseKind::Evidence => "evidence",
            DisputeResponseKind::Accept => "accept",
        }
    }

    pub fn parse(s: &str) -> Option<DisputeResponseKind> {
        [DisputeResponseKind::Evidence, DisputeResponseKind::Accept].into_iter().find(|k| k.as_str() == s)
    }
}

crate::sql_as_text!(DisputeStatus, |s: &DisputeStatus| s.as_str(), DisputeStatus::parse);
crate::sql_as_text!(DisputeResponseKind, |k: &DisputeResponseKind| k.as_str(), DisputeResponseKind::parse);

#[derive(Debug, thiserror::Error)]
pub enum DisputeError {
    #[error("no dispute {0}")]
    NotFound(String),
    /// A PSP dispute of a charge till has no paid order for.
    #[error("{0}")]
    NotOurs(String),
    /// The dispute does not take this answer now, and the message says why.
    #[error("{0}")]
    Refused(String),
    #[error("text {0}")]
    BadEvidence(String),
    #[error("the PSP did not answer: {0}")]
    PspUnavailable(String),
    #[error("the PSP refused: {0}")]
    Psp(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What the dispute rules need from the settings.
#[derive(Debug, Clone, Copy)]
struct Rules {
    seller_liable: bool,
    webhook_attempts: u32,
}

impl Rules {
    fn of(ctx: &Ctx) -> Rules {
        Rules {
            seller_liable: ctx.settings.disputes.seller_liable,
            webhook_attempts: ctx.settings.webhooks.max_attempts,
        }
    }
}

/// Applies a dispute just read from the PSP (never a webhook's copy of it):
/// its rows are made the first time, its status and deadline kept current,
/// and its withdrawal and reinstatement booked once each.
pub async fn apply_psp(ctx: &Ctx, dispute: Dispute) -> Result<(), DisputeError> {
    let rules = Rules::of(ctx);
    ctx.db.write(move |tx| apply_in_tx(tx, &dispute, rules)).await
}

fn apply_in_tx(tx: &Tx, d: &Dispute, rules: Rules) -> Result<(), DisputeError> {
    let mut rows = store::rows_of_psp(tx, &d.id)?;
    if rows.is_empty() {
        open(tx, d, rules)?;
        rows = store::rows_of_psp(tx, &d.id)?;
    }
    let response = rows.first().and_then(|r| r.response);
    let status = DisputeStatus::of_psp(&d.status, response)
        .ok_or_else(|| anyhow::anyhow!("dispute {} has a status till does not know: {}", d.id, d.status))?;
    if let Some(due) = d.due_by().and_then(unix_to_rfc3339) {
        store::set_due_by(tx, &d.id, &due)?;
    }
    if let Some((_, fee)) = d.withdrawal() {
        for (i, row) in rows.iter().enumerate() {
            let fee = if i == 0 { fee } else { 0 };
            if store::mark_withdrawn(tx, &row.dispute_id, fee)? {
                book(tx, row, fee, false)?;
            }
        }
    }
    if d.reinstatement().is_some() {
        for row in &rows {
            if store::mark_reinstated(tx, &row.dispute_id)? {
                book(tx, row, 0, true)?;
            }
        }
    }
    if store::set_status(tx, &d.id, status, None)? > 0 && status.is_final() {
        for row in store::rows_of_psp(tx, &d.id)? {
            events::emit(tx, "dispute.closed", &row.dispute_id, &DisputeView::from(&row), rules.webhook_attempts)?;
        }
        alerts::resolve(tx, OPENED_ALERT, &d.id, &format!("the dispute closed: {status}"))?;
    }
    Ok(())
}

/// The rows of a new PSP dispute: one per paid order of the disputed
/// charge, each with its part of the amount; the shop is told, and a
/// person alerted with the evidence deadline.
fn open(tx: &Tx, d: &Dispute, rules: Rules) -> Result<(), DisputeError> {
    let not_ours = || DisputeError::NotOurs(format!("dispute {} is of no paid order of ours", d.id));
    let intent = d.payment_intent.clone().ok_or_else(not_ours)?;
    let orders = crate::payments::store::paid_by_intent(tx, &intent)?;
    let first = orders.first().ok_or_else(not_ours)?;
    let currency = first.order.amount.currency();
    if !d.currency.eq_ignore_ascii_case(currency.code()) {
        return Err(anyhow::anyhow!("dispute {} is in {}, its orders in {currency}", d.id, d.currency).into());
    }
    let due = d.due_by().and_then(unix_to_rfc3339);
    let status = DisputeStatus::of_psp(&d.status, None).unwrap_or(DisputeStatus::NeedsResponse);
    let reason = d.reason.clone().unwrap_or_else(|| "general".into());
    let mut opened = Vec::new();
    for (part, (paid, amount)) in orders.iter().zip(shares(&orders, d.amount)).filter(|(_, a)| *a > 0).enumerate() {
        let (seller_part, commission_part) = liable_parts(paid, amount, rules.seller_liable);
        // Time-ordered, as the list is.
        let dispute_id = uuid::Uuid::now_v7().to_string();
        store::insert(
            tx,
            &store::NewDispute {
                dispute_id: &dispute_id,
                psp_dispute_id: &d.id,
                part: part as i64,
                payment_order_id: paid.order.payment_order_id.as_str(),
                checkout_id: paid.order.checkout_id.as_str(),
                seller_id: paid.order.seller_id.as_str(),
                payment_intent_id: &intent,
                amount_minor: amount,
                currency,
                seller_liable: rules.seller_liable,
                seller_part_minor: seller_part,
                commission_part_minor: commission_part,
                reason: &reason,
                status,
                evidence_due_by: due.clone(),
            },
        )?;
        opened.push(dispute_id);
    }
    for id in &opened {
        let row = store::load_row(tx, id)?.ok_or_else(|| anyhow::anyhow!("dispute {id} vanished"))?;
        events::emit(tx, "dispute.created", id, &DisputeView::from(&row), rules.webhook_attempts)?;
    }
    let message = format!(
        "the cardholder disputes {} {currency} of payment intent {intent} (orders: {}; reason: {reason}); \
         send evidence before {} (POST /v1/disputes/{{id}}/evidence) or accept it",
        format_minor(d.amount, currency),
        orders.iter().map(|o| o.order.payment_order_id.to_string()).collect::<Vec<_>>().join(", "),
        due.as_deref().unwrap_or("the PSP's deadline")
    );
    alerts::raise(tx, OPENED_ALERT, &d.id, &message)?;
    Ok(())
}

/// The disputed amount shared among the orders its charge paid, in
/// proportion to what each still holds (its charge less its refunds),
/// rounded down, the remainder a minor unit each to the first orders; no
/// order's part exceeds what it charged.
fn shares(orders: &[RefundableOrder], amount_minor: i64) -> Vec<i64> {
    let held: Vec<i64> = orders.iter().map(|o| (o.order.charged_minor() - o.order.refunded_minor).max(0)).collect();
    let caps: Vec<i64> = orders.iter().map(|o| o.order.charged_minor()).collect();
    crate::money::share_in_proportion(amount_minor, &held, &caps)
}

/// Who bears an order's part of a dispute: (the seller's part, the
/// platform's commission given back), both zero when the platform bears it
/// all. The commission given back is the order's commission rate of the
/// part, rounded half up, as a refund's is.
fn liable_parts(paid: &RefundableOrder, amount: i64, seller_liable: bool) -> (i64, i64) {
    if !seller_liable {
        return (0, 0);
    }
    let charged = i128::from(paid.order.charged_minor().max(1));
    let commission = i128::from(paid.order.charged_minor() - paid.seller_amount_minor).max(0);
    let commission_part = ((2 * commission * i128::from(amount) + charged) / (2 * charged)) as i64;
    let commission_part = commission_part.min(amount);
    (amount - commission_part, commission_part)
}

/// The withdrawal of one row (its amount, and the fee it bears), or the
/// reinstatement of its amount; with the seller's wallet, in one posting
/// each (source `dispute` / `dispute_reversal`, the row's id: booked once).
fn book(tx: &Tx, row: &store::DisputeRow, fee_minor: i64, reinstated: bool) -> anyhow::Result<()> {
    let sign = if reinstated { -1 } else { 1 };
    let platform_part = row.amount_minor - row.seller_part_minor - row.commission_part_minor;
    let mut entries: Vec<(String, i64)> = Vec::new();
    let mut add = |account: String, amount: i64| {
        if amount != 0 {
            entries.push((account, amount));
        }
    };
    add(ledger::seller_account(&row.seller_id), sign * row.seller_part_minor);
    add(ledger::COMMISSION.to_string(), sign * row.commission_part_minor);
    add(ledger::DISPUTES.to_string(), sign * platform_part);
    add(ledger::DISPUTE_FEES.to_string(), fee_minor);
    add(ledger::PSP_BALANCE.to_string(), -sign * row.amount_minor - fee_minor);
    let (source_type, what) =
        if reinstated { ("dispute_reversal", "reinstated (won) dispute") } else { ("dispute", "dispute withdrawal") };
    let description = format!("{what} {} ({}) of order {}", row.dispute_id, row.psp_dispute_id, row.payment_order_id);
    let posting = Posting { source_type, source_id: &row.dispute_id, currency: row.currency, description, entries };
    ledger::post_transaction(tx, &posting).map_err(|e| anyhow::anyhow!("{e}"))?;
    if row.seller_part_minor > 0 {
        crate::payouts::store::ensure_seller(tx, &row.seller_id)?;
        wallet::credit_wallet(tx, &row.seller_id, row.currency, -sign * row.seller_part_minor)?;
        wallet::assert_matches_ledger(tx, &row.seller_id, row.currency)?;
    }
    Ok(())
}

fn unix_to_rfc3339(unix_s: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(unix_s, 0).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The shop's answer to a dispute, as the API takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Evidence(String),
    Accept,
}

impl Answer {
    fn kind(&self) -> DisputeResponseKind {
        match self {
            Answer::Evidence(_) => DisputeResponseKind::Evidence,
            Answer::Accept => DisputeResponseKind::Accept,
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            Answer::Evidence(text) => Some(text),
            Answer::Accept => None,
        }
    }
}

/// Evidence text as the PSP takes it: 1 to [`MAX_EVIDENCE_CHARS`]
/// characters, line breaks and tabs allowed, no other control characters.
pub fn parse_evidence(text: &str) -> Result<Answer, DisputeError> {
    if text.trim().is_empty() {
        return Err(DisputeError::BadEvidence("must not be empty".into()));
    }
    if text.chars().count() > MAX_EVIDENCE_CHARS {
        return Err(DisputeError::BadEvidence(format!("is longer than {MAX_EVIDENCE_CHARS} characters")));
    }
    if text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(DisputeError::BadEvidence("must not hold control characters other than line breaks".into()));
    }
    Ok(Answer::Evidence(text.to_string()))
}

/// `POST /v1/disputes/{id}/evidence` and `/accept`: records the shop's one
/// answer (the same answer again is sent again), then sends it to the PSP
/// and applies the dispute it answers with.
pub async fn answer(ctx: &Ctx, dispute_id: &str, answer: Answer) -> Result<DisputeView, DisputeError> {
    let (id, attempts) = (dispute_id.to_string(), ctx.settings.queue.max_attempts);
    let psp_id = ctx.db.write(move |tx| record_answer(tx, &id, &answer, attempts)).await?;
    ctx.queue_wake.notify_one();
    send_answer(ctx, &psp_id).await.map_err(|e| match e {
        JobError::Retry(why) | JobError::Later { why, .. } => DisputeError::PspUnavailable(why),
        JobError::Final(why) => DisputeError::Psp(why),
    })?;
    get(ctx, dispute_id).await?.ok_or_else(|| DisputeError::NotFound(dispute_id.to_string()))
}

fn record_answer(tx: &Tx, dispute_id: &str, answer: &Answer, attempts: u32) -> Result<String, DisputeError> {
    let row = store::load_row(tx, dispute_id)?.ok_or_else(|| DisputeError::NotFound(dispute_id.to_string()))?;
    match row.response {
        Some(kind) if kind == answer.kind() && row.evidence_text.as_deref() == answer.text() => {
            return Ok(row.psp_dispute_id);
        }
        Some(kind) => {
            return Err(DisputeError::Refused(format!(
                "this dispute was answered already ({}); it takes one answer",
                kind.as_str()
            )));
        }
        None => {}
    }
    if row.status != DisputeStatus::NeedsResponse {
        return Err(DisputeError::Refused(format!(
            "this dispute is {}: it takes evidence or an acceptance only while it needs a response",
            row.status
        )));
    }
    if !store::record_response(tx, &row.psp_dispute_id, answer.kind(), answer.text())? {
        return Err(DisputeError::Refused("another answer to this dispute was just recorded".into()));
    }
    queue::enqueue(tx, JobKind::SendDisputeResponse, &row.psp_dispute_id, RESPONSE_JOB_DELAY_MS, attempts)?;
    Ok(row.psp_dispute_id)
}

/// The response job (and the API call's own sending): the recorded answer
/// of a PSP dispute, sent while the dispute still waits for it, and the
/// dispute the PSP answers with applied. A refusal (the dispute no longer
/// takes an answer: closed, or past its deadline) is answered by reading
/// the dispute: its state is what happened.
pub async fn send_answer(ctx: &Ctx, psp_dispute_id: &str) -> Result<(), JobError> {
    let id = psp_dispute_id.to_string();
    let request = ctx.db.write(move |tx| answer_request(tx, &id)).await?;
    let Some(request) = request else { return Ok(()) };
    let dispute = match ctx.psp.respond_to_dispute(&request).await {
        Ok(dispute) => dispute,
        Err(PspError::Refused { .. }) => match ctx.psp.retrieve_dispute(psp_dispute_id, psp_dispute_id).await {
            Ok(dispute) => dispute,
            Err(PspError::Unknown(why)) => return Err(JobError::Retry(why)),
            Err(e) => return Err(JobError::Final(e.to_string())),
        },
        Err(rejected @ PspError::Rejected { .. }) => return Err(JobError::Final(rejected.to_string())),
        Err(PspError::Unknown(why)) => return Err(JobError::Retry(why)),
    };
    match apply_psp(ctx, dispute).await {
        Ok(()) => Ok(()),
        Err(DisputeError::Internal(e)) => Err(e.into()),
        Err(other) => Err(JobError::Final(other.to_string())),
    }
}

/// The PSP request of a dispute's recorded answer (fixed the first time),
/// while the dispute still needs it.
fn answer_request(tx: &Tx, psp_dispute_id: &str) -> anyhow::Result<Option<PspRequest>> {
    let rows = store::rows_of_psp(tx, psp_dispute_id)?;
    let Some(row) = rows.first().filter(|r| r.status == DisputeStatus::NeedsResponse) else { return Ok(None) };
    let response = match (row.response, &row.evidence_text) {
        (Some(DisputeResponseKind::Evidence), Some(text)) => DisputeResponse::Evidence(text.clone()),
        (Some(DisputeResponseKind::Accept), _) => DisputeResponse::Accept,
        (Some(DisputeResponseKind::Evidence), None) | (None, _) => return Ok(None),
    };
    let request = DisputeResponseRequest { psp_dispute_id: psp_dispute_id.to_string(), response }.build();
    Ok(Some(requests::fix(tx, request)?))
}

/// Re-reads a PSP dispute and applies it (reconciliation's fix of a lost event).
pub async fn sync(ctx: &Ctx, psp_dispute_id: &str) -> Result<(), DisputeError> {
    let dispute = match ctx.psp.retrieve_dispute(psp_dispute_id, psp_dispute_id).await {
        Ok(d) => d,
        Err(PspError::Unknown(why)) => return Err(DisputeError::PspUnavailable(why)),
        Err(e) => return Err(DisputeError::Psp(e.to_string())),
    };
    apply_psp(ctx, dispute).await
}

pub async fn get(ctx: &Ctx, dispute_id: &str) -> anyhow::Result<Option<DisputeView>> {
    let id = dispute_id.to_string();
    ctx.db.run(move |tx| store::load(tx, &id)).await
}

/// The dispute that stops a refund of the order, if one does (its id and status).
pub fn blocking_refund(tx: &Tx, payment_order_id: &str) -> anyhow::Result<Option<(String, DisputeStatus)>> {
    store::blocking_refund(tx, payment_order_id)
}

/// What a seller owes of disputes in a currency (its wallet may be below
/// zero by as much).
pub fn seller_debt_minor(tx: &Tx, seller_id: &str, currency: Currency) -> anyhow::Result<i64> {
    store::seller_debt_minor(tx, seller_id, currency)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::model::{Order, OrderStatus};

    fn paid(captured: i64, seller_amount: i64, refunded: i64) -> RefundableOrder {
        let order = Order { refunded_minor: refunded, ..Order::for_tests("s", captured, "USD", OrderStatus::Success) };
        RefundableOrder { order, seller_amount_minor: seller_amount }
    }

    #[test]
    fn a_dispute_is_shared_by_what_each_order_still_holds_and_adds_up() {
        let orders = [paid(2500, 2500, 0), paid(1000, 1000, 500), paid(1, 1, 0)];
        assert_eq!(shares(&orders, 3001), vec![2500, 500, 1], "all that is held");
        let half = shares(&orders, 1500);
        assert_eq!(half.iter().sum::<i64>(), 1500);
        assert!(half[0] > half[1]);
        assert_eq!(shares(&[paid(1000, 1000, 0)], 5000), vec![1000], "never more than the order charged");
    }

    #[test]
    fn the_seller_bears_its_share_and_the_platform_gives_back_its_commission() {
        // 10 % commission on 10.05: 1.01 taken; a dispute of all of it gives all of it back.
        assert_eq!(liable_parts(&paid(1005, 904, 0), 1005, true), (904, 101));
        assert_eq!(liable_parts(&paid(1005, 904, 0), 1005, false), (0, 0), "the platform bears it all");
        assert_eq!(liable_parts(&paid(2500, 2500, 0), 1000, true), (1000, 0));
    }

    #[test]
    fn a_dispute_moves_forward_once_and_reads_the_psps_words() {
        use DisputeStatus::*;
        let legal = [
            (NeedsResponse, UnderReview),
            (NeedsResponse, Won),
            (NeedsResponse, Lost),
            (NeedsResponse, Accepted),
            (UnderReview, Won),
            (UnderReview, Lost),
        ];
        for from in DisputeStatus::ALL {
            assert_eq!(DisputeStatus::parse(from.as_str()), Some(from));
            for to in DisputeStatus::ALL {
                assert_eq!(from.can_move_to(to), legal.contains(&(from, to)), "{from} -> {to}");
            }
        }
        assert_eq!(DisputeStatus::of_psp("warning_needs_response", None), Some(NeedsResponse));
        assert_eq!(DisputeStatus::of_psp("lost", Some(DisputeResponseKind::Accept)), Some(Accepted));
        assert_eq!(DisputeStatus::of_psp("lost", Some(DisputeResponseKind::Evidence)), Some(Lost));
        assert_eq!(DisputeStatus::of_psp("charge_refunded", None), None);
    }

    #[test]
    fn evidence_is_text_within_the_psps_limits() {
        assert!(parse_evidence("Shipped 2026-12-01, tracking 1Z999.\nSigned for by K. Lee.").is_ok());
        for bad in ["", "   ", "a\u{0}b", "\u{7}bell"] {
            assert!(parse_evidence(bad).is_err(), "{bad:?}");
        }
        assert!(parse_evidence(&"x".repeat(MAX_EVIDENCE_CHARS + 1)).is_err());
    }
}
