//! Events the PSP sends to `POST /webhooks/psp`: verify the signature, store the event once, re-read
//! the object from the PSP (a webhook body is a hint, never the truth), then
//! apply it through the payment state machine. This module owns `psp_events`.

use anyhow::Context;

use crate::context::Ctx;
use crate::db::{Tx, params};
use crate::payments::capture::{self, HostedIntent};
use crate::payments::complete::{self, ApplyError};
use crate::payments::execute;
use crate::payments::sync::{self, SyncError};
use crate::psp::PspError;
use crate::psp::types::{Event, PaymentIntent};
use crate::psp::webhook_signature::{self, SignatureError};
use crate::queue::JobError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("the body is not a PSP event: {0}")]
    Malformed(String),
    /// The PSP could not be asked; the event stays unprocessed and the PSP
    /// retries it.
    #[error("could not confirm the event with the PSP: {0}")]
    PspUnavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    Applied,
    /// What it is about was already final in till's books.
    AlreadyFinal,
    Duplicate,
    Ignored(String),
}

pub async fn ingest(ctx: &Ctx, signature: Option<&str>, body: &[u8]) -> Result<Ingested, IngestError> {
    let psp = &ctx.settings.psp;
    webhook_signature::verify(
        signature,
        body,
        &psp.webhook_secret,
        psp.webhook_tolerance_seconds,
        chrono::Utc::now().timestamp(),
    )?;
    let event: Event = serde_json::from_slice(body).map_err(|e| IngestError::Malformed(e.to_string()))?;
    let outcome = match prior(ctx, &event).await? {
        Prior::Processed => {
            count_delivery(ctx, &event.id).await?;
            return Ok(Ingested::Duplicate);
        }
        // What the event is about is final in our books already (the usual
        // case for token charges, whose answer came with the charge).
        Prior::Settled => Ok(Ingested::AlreadyFinal),
        Prior::New => apply(ctx, &event).await,
    };
    let (processed, note) = match &outcome {
        // Not ours, or not consistent with our books: retrying will not help;
        // the event is kept with the reason for a person to look at.
        Ok(Ingested::Ignored(reason)) => (true, Some(reason.clone())),
        Ok(_) => (true, None),
        // Left unprocessed: the PSP delivers it again.
        Err(e) => (false, Some(format!("{e:#}"))),
    };
    store_event(ctx, &event, body, processed, note).await?;
    outcome
}

async fn apply(ctx: &Ctx, event: &Event) -> Result<Ingested, IngestError> {
    match event.kind.as_str() {
        "checkout.session.completed" | "checkout.session.expired" | "checkout.session.async_payment_succeeded" => {
            let session_id =
                event.object_id().ok_or_else(|| IngestError::Malformed("event without data.object.id".into()))?;
            let session = match ctx.psp.retrieve_checkout_session(session_id, session_id).await {
                Ok(session) => session,
                Err(e @ (PspError::Unknown(_) | PspError::Rejected { .. })) => {
                    return Err(IngestError::PspUnavailable(e.to_string()));
                }
                Err(refused @ PspError::Refused { .. }) => {
                    return Ok(Ingested::Ignored(refused.to_string()));
                }
            };
            match complete::apply_checkout_session(ctx, session).await {
                Ok(_) => Ok(Ingested::Applied),
                Err(ApplyError::Internal(e)) => Err(IngestError::Internal(e)),
                Err(ApplyError::PspUnavailable(why)) => Err(IngestError::PspUnavailable(why)),
                Err(other) => {
                    tracing::error!(event = %event.id, error = %other, "PSP event not applied");
                    Ok(Ingested::Ignored(other.to_string()))
                }
            }
        }
        "payment_intent.succeeded"
        | "payment_intent.payment_failed"
        | "payment_intent.amount_capturable_updated"
        | "payment_intent.canceled" => apply_intent_event(ctx, event).await,
        "refund.updated" => apply_refund_event(ctx, event).await,
        "transfer.created" | "transfer.updated" | "transfer.reversed" => apply_transfer_event(ctx, event).await,
        "charge.dispute.created"
        | "charge.dispute.updated"
        | "charge.dispute.closed"
        | "charge.dispute.funds_withdrawn"
        | "charge.dispute.funds_reinstated" => apply_dispute_event(ctx, event).await,
        other => Ok(Ingested::Ignored(format!("event type {other} is not handled"))),
    }
}

/// A token order's intent: re-read it, and apply it to the order that the
/// PSP's own copy names (the event's body is only a hint of which intent).
async fn apply_intent_event(ctx: &Ctx, event: &Event) -> Result<Ingested, IngestError> {
    let Some(intent_id) = event.object_id() else {
        return Err(IngestError::Malformed("payment intent event without data.object.id".into()));
    };
    let intent = match ctx.psp.retrieve_payment_intent(intent_id, intent_id).await {
        Ok(intent) => intent,
        Err(e @ (PspError::Unknown(_) | PspError::Rejected { .. })) => {
            return Err(IngestError::PspUnavailable(e.to_string()));
        }
        Err(refused @ PspError::Refused { .. }) => {
            return Ok(Ingested::Ignored(refused.to_string()));
        }
    };
    let Some(order_id) = intent.metadata.get("payment_order_id").cloned() else {
        return apply_hosted_intent(ctx, intent).await;
    };
    match execute::apply_intent(ctx, &order_id, intent).await {
        Ok(()) => Ok(Ingested::Applied),
        Err(JobError::Retry(reason) | JobError::Later { why: reason, .. }) => Ok(Ingested::Ignored(reason)),
        Err(JobError::Final(reason)) => {
            tracing::error!(event = %event.id, %reason, "PSP event not applied");
            Ok(Ingested::Ignored(reason))
        }
    }
}

/// A hosted checkout's intent. An automatic checkout's payment is told by
/// its session's events; a manual one's authorization, capture and
/// release by its intent's (its session only says the buyer finished).
async fn apply_hosted_intent(ctx: &Ctx, intent: PaymentIntent) -> Result<Ingested, IngestError> {
    let intent_id = intent.id.clone();
    let Some(checkout_id) = intent.metadata.get("checkout_id").cloned() else {
        return Ok(Ingested::Ignored(format!("payment intent {intent_id} is of no checkout of ours")));
    };
    match capture::apply_hosted_intent(ctx, &checkout_id, intent).await {
        Ok(HostedIntent::Applied) => Ok(Ingested::Applied),
        Ok(HostedIntent::Automatic) => {
            Ok(Ingested::Ignored(format!("payment intent {intent_id}: its checkout.session event carries it")))
        }
        // Only the session can say this intent is the checkout's payment.
        Ok(HostedIntent::NotRecorded) => match sync::sync_now(ctx, &checkout_id).await {
            Ok(_) => Ok(Ingested::Applied),
            Err(SyncError::PspUnavailable(why)) => Err(IngestError::PspUnavailable(why)),
            Err(SyncError::Internal(e)) => Err(IngestError::Internal(e)),
            Err(other) => Ok(Ingested::Ignored(other.to_string())),
        },
        Err(JobError::Retry(why) | JobError::Later { why, .. }) => Err(IngestError::PspUnavailable(why)),
        Err(JobError::Final(reason)) => {
            tracing::error!(intent = %intent_id, %reason, "PSP event not applied");
            Ok(Ingested::Ignored(reason))
        }
    }
}

/// A refund moved at the PSP: re-read it and apply it as the refund job would.
async fn apply_refund_event(ctx: &Ctx, event: &Event) -> Result<Ingested, IngestError> {
    let Some(psp_id) = event.object_id() else {
        return Err(IngestError::Malformed("refund event without data.object.id".into()));
    };
    let refund = match ctx.psp.retrieve_refund(psp_id, psp_id).await {
        Ok(refund) => refund,
        Err(e @ (PspError::Unknown(_) | PspError::Rejected { .. })) => {
            return Err(IngestError::PspUnavailable(e.to_string()));
        }
        Err(refused @ PspError::Refused { .. }) => return Ok(Ingested::Ignored(refused.to_string())),
    };
    let ours = match refund.metadata.get("refund_id") {
        Some(id) => Some(id.clone()),
        None => {
            let psp_id = psp_id.to_string();
            ctx.db.run(move |tx| crate::refunds::store::by_psp_id(tx, &psp_id)).await?
        }
    };
    let Some(refund_id) = ours else { return Ok(Ingested::Ignored(format!("refund {psp_id} is not one of ours"))) };
    match crate::refunds::apply(ctx, &refund_id, &refund.id, &refund.status, refund.failure_reason.as_deref()).await {
        Ok(()) => Ok(Ingested::Applied),
        Err(e) => Ok(Ingested::Ignored(e.to_string())),
    }
}

/// A dispute opened or moved at the PSP: re-read it and apply it (its rows
/// made the first time, its money booked once as the PSP's copy shows it).
async fn apply_dispute_event(ctx: &Ctx, event: &Event) -> Result<Ingested, IngestError> {
    let Some(psp_id) = event.object_id() else {
        return Err(IngestError::Malformed("dispute event without data.object.id".into()));
    };
    let dispute = match ctx.psp.retrieve_dispute(psp_id, psp_id).await {
        Ok(dispute) => dispute,
        Err(e @ (PspError::Unknown(_) | PspError::Rejected { .. })) => {
            return Err(IngestError::PspUnavailable(e.to_string()));
        }
        Err(refused @ PspError::Refused { .. }) => return Ok(Ingested::Ignored(refused.to_string())),
    };
    match crate::disputes::apply_psp(ctx, dispute).await {
        Ok(()) => Ok(Ingested::Applied),
        Err(crate::disputes::DisputeError::Internal(e)) => Err(IngestError::Internal(e)),
        Err(other) => {
            tracing::warn!(event = %event.id, error = %other, "PSP dispute event not applied");
            Ok(Ingested::Ignored(other.to_string()))
        }
    }
}

/// A payout's transfer moved at the PSP: re-read it and apply it.
async fn apply_transfer_event(ctx: &Ctx, event: &Event) -> Result<Ingested, IngestError> {
    let Some(psp_id) = event.object_id() else {
        return Err(IngestError::Malformed("transfer event without data.object.id".into()));
    };
    let transfer = match ctx.psp.retrieve_transfer(psp_id, psp_id).await {
        Ok(t) => t,
        Err(e @ (PspError::Unknown(_) | PspError::Rejected { .. })) => {
            return Err(IngestError::PspUnavailable(e.to_string()));
        }
        Err(refused @ PspError::Refused { .. }) => return Ok(Ingested::Ignored(refused.to_string())),
    };
    let ours = match transfer.metadata.get("payout_id") {
        Some(id) => Some(id.clone()),
        None => {
            let psp_id = psp_id.to_string();
            ctx.db.run(move |tx| crate::payouts::store::by_transfer(tx, &psp_id)).await?
        }
    };
    let Some(payout_id) = ours else { return Ok(Ingested::Ignored(format!("transfer {psp_id} is not one of ours"))) };
    match crate::payouts::apply(ctx, &payout_id, &transfer).await {
        Ok(()) => Ok(Ingested::Applied),
        Err(e) => Ok(Ingested::Ignored(e.to_string())),
    }
}

enum Prior {
    /// This event was processed before: a duplicate delivery.
    Processed,
    /// What it is about is already final in till's books.
    Settled,
    New,
}

/// What till already knows of the event, in one read. It goes through the
/// writer, whose page cache is warm, rather than a pooled reader that would
/// reload its cache after every write.
async fn prior(ctx: &Ctx, event: &Event) -> anyhow::Result<Prior> {
    let id = event.id.clone();
    let subject = subject_of(event);
    ctx.db
        .write(move |tx| -> anyhow::Result<Prior> {
            let processed: Option<Option<String>> =
                tx.query_opt("SELECT processed_at FROM psp_events WHERE event_id = $1", params![id], |r| r.get(0))?;
            if matches!(processed, Some(Some(_))) {
                return Ok(Prior::Processed);
            }
            let settled = match &subject {
                Some(subject) => settled(tx, subject)?,
                None => false,
            };
            Ok(if settled { Prior::Settled } else { Prior::New })
        })
        .await
}

async fn count_delivery(ctx: &Ctx, event_id: &str) -> anyhow::Result<()> {
    let id = event_id.to_string();
    ctx.db
        .write(move |tx| -> anyhow::Result<()> {
            tx.execute("UPDATE psp_events SET deliveries = deliveries + 1 WHERE event_id = $1", params![id])?;
            Ok(())
        })
        .await
}

/// What in till's books an event is about, by till's own id.
enum Subject {
    /// A hosted checkout, by its PSP session.
    Session(String),
    Order(String),
    Refund(String),
    Payout(String),
}

/// The subject of an event whose type has a "final already?" shortcut.
fn subject_of(event: &Event) -> Option<Subject> {
    let object = &event.data.object;
    let meta = |k: &str| object.pointer(&format!("/metadata/{k}")).and_then(|v| v.as_str()).map(str::to_string);
    let id = event.object_id().unwrap_or_default().to_string();
    match event.kind.split('.').next().unwrap_or_default() {
        "checkout" => Some(Subject::Session(id)),
        "payment_intent" => meta("payment_order_id").map(Subject::Order),
        "refund" => meta("refund_id").map(Subject::Refund),
        "transfer" => meta("payout_id").map(Subject::Payout),
        _ => None,
    }
}

/// Whether the subject is final in till's books, asked of its owner.
fn settled(tx: &Tx, subject: &Subject) -> anyhow::Result<bool> {
    Ok(match subject {
        Subject::Session(session_id) => crate::payments::store::is_session_done(tx, session_id)?,
        Subject::Order(order_id) => {
            crate::payments::store::load_order(tx, order_id)?.is_some_and(|o| o.status.is_final())
        }
        Subject::Refund(refund_id) => crate::refunds::store::status(tx, refund_id)?.is_some_and(|s| s.is_final()),
        Subject::Payout(payout_id) => crate::payouts::store::status(tx, payout_id)?.is_some_and(|s| s.is_final()),
    })
}

/// Stores the event with how it was handled (one write). A crash before
/// this leaves nothing stored: the PSP delivers the event again, and
/// applying it again changes nothing.
async fn store_event(
    ctx: &Ctx,
    event: &Event,
    body: &[u8],
    processed: bool,
    note: Option<String>,
) -> anyhow::Result<()> {
    let (id, kind, object_id) = (event.id.clone(), event.kind.clone(), event.object_id().map(str::to_string));
    let payload = String::from_utf8_lossy(body).into_owned();
    ctx.db
        .write(move |tx| -> anyhow::Result<()> {
            let now = crate::db::now();
            let processed_at = processed.then(|| now.clone());
            tx.execute(
                "INSERT INTO psp_events (event_id, event_type, object_id, payload, received_at, processed_at, last_error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (event_id) DO UPDATE SET deliveries = psp_events.deliveries + 1,
                     processed_at = COALESCE(psp_events.processed_at, excluded.processed_at), last_error = excluded.last_error",
                params![id, kind, object_id, payload, now, processed_at, note],
            )
            .context("storing a PSP event")?;
            Ok(())
        })
        .await
}
