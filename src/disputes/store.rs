//! SQL of disputes: the only code that writes `disputes`.

use anyhow::Context;
use serde::Serialize;

use crate::db::{Row, Tx, params};
use crate::disputes::{DisputeResponseKind, DisputeStatus};
use crate::money::{Currency, format_minor};

/// A new dispute row: one order's part of a PSP dispute.
pub struct NewDispute<'a> {
    pub dispute_id: &'a str,
    pub psp_dispute_id: &'a str,
    /// Its place among the PSP dispute's orders; part 0 bears the fee.
    pub part: i64,
    pub payment_order_id: &'a str,
    pub checkout_id: &'a str,
    pub seller_id: &'a str,
    pub payment_intent_id: &'a str,
    pub amount_minor: i64,
    pub currency: Currency,
    pub seller_liable: bool,
    pub seller_part_minor: i64,
    pub commission_part_minor: i64,
    pub reason: &'a str,
    pub status: DisputeStatus,
    pub evidence_due_by: Option<String>,
}

pub fn insert(tx: &Tx, d: &NewDispute) -> anyhow::Result<()> {
    let now = crate::db::now();
    tx.execute(
        "INSERT INTO disputes (dispute_id, psp_dispute_id, payment_order_id, checkout_id, seller_id, payment_intent_id,
                               amount_minor, currency, seller_liable, seller_part_minor, commission_part_minor,
                               reason, status, evidence_due_by, created_at, updated_at, part)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16)",
        params![
            d.dispute_id,
            d.psp_dispute_id,
            d.payment_order_id,
            d.checkout_id,
            d.seller_id,
            d.payment_intent_id,
            d.amount_minor,
            d.currency,
            d.seller_liable,
            d.seller_part_minor,
            d.commission_part_minor,
            d.reason,
            d.status,
            d.evidence_due_by,
            now,
            d.part
        ],
    )
    .context("storing a dispute")?;
    Ok(())
}

/// A dispute row as the core works with it.
#[derive(Debug, Clone)]
pub struct DisputeRow {
    pub dispute_id: String,
    pub psp_dispute_id: String,
    pub part: i64,
    pub payment_order_id: String,
    pub checkout_id: String,
    pub seller_id: String,
    pub payment_intent_id: String,
    pub amount_minor: i64,
    pub fee_minor: i64,
    pub currency: Currency,
    pub seller_liable: bool,
    pub seller_part_minor: i64,
    pub commission_part_minor: i64,
    pub reason: String,
    pub status: DisputeStatus,
    pub evidence_due_by: Option<String>,
    pub response: Option<DisputeResponseKind>,
    pub evidence_text: Option<String>,
    pub responded_at: Option<String>,
    pub withdrawn_at: Option<String>,
    pub reinstated_at: Option<String>,
    pub closed_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str = "dispute_id, psp_dispute_id, payment_order_id, checkout_id, seller_id, payment_intent_id,
    amount_minor, fee_minor, currency, seller_liable, seller_part_minor, commission_part_minor, reason, status,
    evidence_due_by, response, evidence_text, responded_at, withdrawn_at, reinstated_at, closed_at, created_at,
    updated_at, part";

fn from_row(r: &Row) -> anyhow::Result<DisputeRow> {
    Ok(DisputeRow {
        dispute_id: r.get(0)?,
        psp_dispute_id: r.get(1)?,
        payment_order_id: r.get(2)?,
        checkout_id: r.get(3)?,
        seller_id: r.get(4)?,
        payment_intent_id: r.get(5)?,
        amount_minor: r.get(6)?,
        fee_minor: r.get(7)?,
        currency: r.get(8)?,
        seller_liable: r.get(9)?,
        seller_part_minor: r.get(10)?,
        commission_part_minor: r.get(11)?,
        reason: r.get(12)?,
        status: r.get(13)?,
        evidence_due_by: r.get(14)?,
        response: r.get(15)?,
        evidence_text: r.get(16)?,
        responded_at: r.get(17)?,
        withdrawn_at: r.get(18)?,
        reinstated_at: r.get(19)?,
        closed_at: r.get(20)?,
        created_at: r.get(21)?,
        updated_at: r.get(22)?,
        part: r.get(23)?,
    })
}

pub fn load_row(tx: &Tx, dispute_id: &str) -> anyhow::Result<Option<DisputeRow>> {
    tx.query_opt(&format!("SELECT {COLUMNS} FROM disputes WHERE dispute_id = $1"), params![dispute_id], from_row)
}

/// The rows of one PSP dispute (one per order its charge paid), in order
/// of their parts: the fee-bearing first.
pub fn rows_of_psp(tx: &Tx, psp_dispute_id: &str) -> anyhow::Result<Vec<DisputeRow>> {
    tx.query_map(
        &format!("SELECT {COLUMNS} FROM disputes WHERE psp_dispute_id = $1 ORDER BY part"),
        params![psp_dispute_id],
        from_row,
    )
}

/// The disputes of an order, oldest first.
pub fn rows_of_order(tx: &Tx, payment_order_id: &str) -> anyhow::Result<Vec<DisputeRow>> {
    tx.query_map(
        &format!("SELECT {COLUMNS} FROM disputes WHERE payment_order_id = $1 ORDER BY created_at, dispute_id"),
        params![payment_order_id],
        from_row,
    )
}

/// Moves every row of a PSP dispute to `to`, from a state it may leave
/// for it (a stale answer never moves a dispute back), with the PSP's
/// deadline. Returns how many rows moved.
pub fn set_status(tx: &Tx, psp_dispute_id: &str, to: DisputeStatus, due_by: Option<&str>) -> anyhow::Result<usize> {
    let from: Vec<&str> =
        DisputeStatus::ALL.iter().filter(|s| s.can_move_to(to)).map(|s| s.as_str()).collect::<Vec<_>>();
    let now = crate::db::now();
    let closed = to.is_final().then_some(now.as_str());
    let mut moved = 0;
    for status in from {
        moved += tx.execute(
            "UPDATE disputes SET status = $2, evidence_due_by = COALESCE($3, evidence_due_by),
                    closed_at = COALESCE(closed_at, $4), updated_at = $5
             WHERE psp_dispute_id = $1 AND status = $6",
            params![psp_dispute_id, to, due_by, closed, now, status],
        )?;
    }
    Ok(moved)
}

/// The PSP's deadline for evidence, kept current on every row.
pub fn set_due_by(tx: &Tx, psp_dispute_id: &str, due_by: &str) -> anyhow::Result<()> {
    tx.execute(
        "UPDATE disputes SET evidence_due_by = $2 WHERE psp_dispute_id = $1 AND evidence_due_by IS DISTINCT FROM $2",
        params![psp_dispute_id, due_by],
    )?;
    Ok(())
}

/// Records the shop's one answer on every row of the PSP dispute, unless it
/// answered before or the dispute no longer takes one. Returns whether it did.
pub fn record_response(
    tx: &Tx,
    psp_dispute_id: &str,
    response: DisputeResponseKind,
    evidence_text: Option<&str>,
) -> anyhow::Result<bool> {
    let changed = tx.execute(
        "UPDATE disputes SET response = $2, evidence_text = $3, responded_at = $4, updated_at = $4
         WHERE psp_dispute_id = $1 AND response IS NULL AND status = 'needs_response'",
        params![psp_dispute_id, response, evidence_text, crate::db::now()],
    )?;
    Ok(changed > 0)
}

/// Marks the row's money withdrawn by the PSP, with the fee it bears
/// (once). Returns whether it was marked now: then it is booked.
pub fn mark_withdrawn(tx: &Tx, dispute_id: &str, fee_minor: i64) -> anyhow::Result<bool> {
    let changed = tx.execute(
        "UPDATE disputes SET withdrawn_at = $2, fee_minor = $3, updated_at = $2
         WHERE dispute_id = $1 AND withdrawn_at IS NULL",
        params![dispute_id, crate::db::now(), fee_minor],
    )?;
    Ok(changed == 1)
}

/// Marks the row's money reinstated by the PSP (a won dispute; once).
pub fn mark_reinstated(tx: &Tx, dispute_id: &str) -> anyhow::Result<bool> {
    let changed = tx.execute(
        "UPDATE disputes SET reinstated_at = $2, updated_at = $2
         WHERE dispute_id = $1 AND withdrawn_at IS NOT NULL AND reinstated_at IS NULL",
        params![dispute_id, crate::db::now()],
    )?;
    Ok(changed == 1)
}

/// The dispute that stops a refund of the order, if one does: one still
/// open, or lost (its money is gone to the cardholder already).
pub fn blocking_refund(tx: &Tx, payment_order_id: &str) -> anyhow::Result<Option<(String, DisputeStatus)>> {
    tx.query_opt(
        "SELECT dispute_id, status FROM disputes
         WHERE payment_order_id = $1 AND status IN ('needs_response', 'under_review', 'lost', 'accepted')
         ORDER BY created_at LIMIT 1",
        params![payment_order_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// What the seller owes of disputes in `currency`: its shares of the
/// amounts withdrawn and not reinstated.
pub fn seller_debt_minor(tx: &Tx, seller_id: &str, currency: Currency) -> anyhow::Result<i64> {
    tx.query_value(
        "SELECT COALESCE(SUM(seller_part_minor), 0) FROM disputes
         WHERE seller_id = $1 AND currency = $2 AND withdrawn_at IS NOT NULL AND reinstated_at IS NULL",
        params![seller_id, currency],
    )
}

/// What a PSP dispute adds up to in till's books: its amount, its fee,
/// whether its withdrawal and reinstatement are booked, and its status.
pub struct DisputeTotal {
    pub amount_minor: i64,
    pub fee_minor: i64,
    pub currency: String,
    pub withdrawn: bool,
    pub reinstated: bool,
    pub status: DisputeStatus,
}

pub fn total_of_psp(tx: &Tx, psp_dispute_id: &str) -> anyhow::Result<Option<DisputeTotal>> {
    let rows = rows_of_psp(tx, psp_dispute_id)?;
    let Some(first) = rows.first() else { return Ok(None) };
    Ok(Some(DisputeTotal {
        amount_minor: rows.iter().map(|r| r.amount_minor).sum(),
        fee_minor: rows.iter().map(|r| r.fee_minor).sum(),
        currency: first.currency.code().to_string(),
        withdrawn: rows.iter().all(|r| r.withdrawn_at.is_some()),
        reinstated: rows.iter().all(|r| r.reinstated_at.is_some()),
        status: first.status,
    }))
}

/// A PSP dispute's movement booked by till: its withdrawal, or its reinstatement.
pub struct BookedMovement {
    pub psp_dispute_id: String,
    pub reinstatement: bool,
    pub amount_minor: i64,
    pub currency: String,
    pub at: String,
}

/// PSP disputes whose withdrawal (or reinstatement) was booked in [`from`, `before`).
pub fn booked_between(tx: &Tx, from: &str, before: &str) -> anyhow::Result<Vec<BookedMovement>> {
    tx.query_map(
        "SELECT psp_dispute_id, 0, SUM(amount_minor), MIN(currency), MIN(withdrawn_at) FROM disputes
         WHERE withdrawn_at IS NOT NULL GROUP BY psp_dispute_id
         HAVING MIN(withdrawn_at) >= $1 AND MIN(withdrawn_at) < $2
         UNION ALL
         SELECT psp_dispute_id, 1, SUM(amount_minor), MIN(currency), MIN(reinstated_at) FROM disputes
         WHERE reinstated_at IS NOT NULL GROUP BY psp_dispute_id
         HAVING MIN(reinstated_at) >= $1 AND MIN(reinstated_at) < $2",
        params![from, before],
        |r| {
            Ok(BookedMovement {
                psp_dispute_id: r.get(0)?,
                reinstatement: r.get(1)?,
                amount_minor: r.get(2)?,
                currency: r.get(3)?,
                at: r.get(4)?,
            })
        },
    )
}

/// A dispute as the API shows it (and its events carry it).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DisputeView {
    /// till's id (a UUID) of this order's part of the PSP's dispute.
    pub dispute_id: String,
    /// The PSP's dispute (`du_…`); a hosted checkout's dispute is shared by its orders.
    pub psp_dispute_id: String,
    pub payment_order_id: String,
    pub checkout_id: String,
    pub seller_id: String,
    /// This order's part of the disputed amount.
    pub amount: String,
    pub currency: String,
    /// The PSP's dispute fee this order's part bears (the platform's expense).
    pub fee: String,
    /// The cardholder's reason, as the PSP gives it (`fraudulent`, …).
    pub reason: String,
    pub status: DisputeStatus,
    /// Evidence must reach the PSP by then.
    pub evidence_due_by: Option<String>,
    /// Whether the seller's wallet bore the seller's share (`disputes.seller_liable`).
    pub seller_liable: bool,
    /// What the seller's wallet gave up of it (given back if the dispute is won).
    pub seller_amount: String,
    /// The shop's answer: `evidence` or `accept`; null until it answered.
    pub response: Option<DisputeResponseKind>,
    pub evidence_text: Option<String>,
    pub responded_at: Option<String>,
    /// When the PSP took the money, and when it gave it back (won).
    pub withdrawn_at: Option<String>,
    pub reinstated_at: Option<String>,
    pub closed_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&DisputeRow> for DisputeView {
    fn from(d: &DisputeRow) -> DisputeView {
        let money = |minor: i64| format_minor(minor, d.currency);
        DisputeView {
            dispute_id: d.dispute_id.clone(),
            psp_dispute_id: d.psp_dispute_id.clone(),
            payment_order_id: d.payment_order_id.clone(),
            checkout_id: d.checkout_id.clone(),
            seller_id: d.seller_id.clone(),
            amount: money(d.amount_minor),
            currency: d.currency.code().to_string(),
            fee: money(d.fee_minor),
            reason: d.reason.clone(),
            status: d.status,
            evidence_due_by: d.evidence_due_by.clone(),
            seller_liable: d.seller_liable,
            seller_amount: money(d.seller_part_minor),
            response: d.response,
            evidence_text: d.evidence_text.clone(),
            responded_at: d.responded_at.clone(),
            withdrawn_at: d.withdrawn_at.clone(),
            reinstated_at: d.reinstated_at.clone(),
            closed_at: d.closed_at.clone(),
            created_at: d.created_at.clone(),
            updated_at: d.updated_at.clone(),
        }
    }
}

pub fn load(tx: &Tx, dispute_id: &str) -> anyhow::Result<Option<DisputeView>> {
    Ok(load_row(tx, dispute_id)?.as_ref().map(DisputeView::from))
}

pub struct DisputeFilter {
    pub status: Option<DisputeStatus>,
    pub payment_order_id: Option<String>,
    pub starting_after: Option<String>,
    pub limit: u32,
}

/// Newest first, by (created_at, dispute_id); a cursor that names no
/// dispute gives an empty page.
pub fn list(tx: &Tx, f: &DisputeFilter) -> anyhow::Result<(Vec<DisputeView>, bool)> {
    let cursor: Option<(String, String)> = match &f.starting_after {
        None => None,
        Some(id) => {
            let at =
                tx.query_opt("SELECT created_at, dispute_id FROM disputes WHERE dispute_id = $1", params![id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            let Some(at) = at else { return Ok((Vec::new(), false)) };
            Some(at)
        }
    };
    let (after_at, after_id) = cursor.unzip();
    let rows = tx.query_map(
        &format!(
            "SELECT {COLUMNS} FROM disputes
             WHERE (CAST($1 AS TEXT) IS NULL OR status = $1) AND (CAST($2 AS TEXT) IS NULL OR payment_order_id = $2)
               AND (CAST($3 AS TEXT) IS NULL OR created_at < $3 OR (created_at = $3 AND dispute_id < $4))
             ORDER BY created_at DESC, dispute_id DESC LIMIT $5"
        ),
        params![f.status, f.payment_order_id, after_at, after_id, i64::from(f.limit) + 1],
        from_row,
    )?;
    let has_more = rows.len() > f.limit as usize;
    Ok((rows.iter().take(f.limit as usize).map(DisputeView::from).collect(), has_more))
}

/// How many disputes are in each status (the metrics and the dashboard read it).
pub fn count_by_status(tx: &Tx) -> anyhow::Result<Vec<(String, i64)>> {
    tx.query_map("SELECT status, COUNT(*) FROM disputes GROUP BY status", params![], |r| Ok((r.get(0)?, r.get(1)?)))
}
