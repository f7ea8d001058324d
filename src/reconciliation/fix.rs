//! The automatic fix of `missing_in_till`: the PSP has a movement till has
//! not booked as done (a lost webhook, a job still waiting for its retry): a
//! charge, a refund or a transfer. Ask the PSP, apply its answer through the
//! normal state machine (so wallet, ledger and merchant webhooks follow),
//! then classify the line again. PSP calls happen between transactions,
//! never inside one.

use super::model::{Class, Decision, RecordKind, TillRecord};
use super::store::{self, StoredRow};
use super::{booking, matching};
use crate::context::Ctx;
use crate::db::Tx;
use crate::payments::complete::{self, ApplyError};
use crate::payments::execute;
use crate::payments::store as payments_store;
use crate::psp::PspError;
use crate::{payouts, refunds};

/// Open `missing_in_till` lines worked on per run; the rest wait for the next run.
pub const MAX_FIXES_PER_RUN: u32 = 1_000;

/// How the PSP's truth for a line can be fetched and applied.
enum Plan {
    /// A hosted checkout still EXECUTING: read its session.
    Checkout {
        checkout_id: String,
        session_id: String,
    },
    /// A token order still EXECUTING: read its payment intent.
    Order {
        payment_order_id: String,
        intent_id: String,
    },
    /// A charge no till record matched: read the intent and see what its metadata names.
    LookUpIntent {
        intent_id: String,
    },
    /// A refund still PENDING in till: read it at the PSP.
    Refund {
        refund_id: String,
        psp_refund_id: String,
    },
    /// A payout still PENDING or IN_TRANSIT in till: read its transfer.
    Payout {
        payout_id: String,
        transfer_id: String,
    },
    /// A refund or transfer till never stored the PSP id of: read it, and see
    /// which of till's refunds or payouts its metadata names.
    LookUpRefund {
        psp_refund_id: String,
    },
    LookUpTransfer {
        transfer_id: String,
    },
    /// A dispute (or its reversal) till has not booked: read the dispute at
    /// the PSP and apply it (its rows made, its money booked).
    Dispute {
        psp_dispute_id: String,
    },
    /// Nothing till can do by itself.
    Nothing(String),
}

/// Tries every open `missing_in_till` line; returns how many became matched.
pub async fn fix_open(ctx: &Ctx, run_id: i64) -> anyhow::Result<i64> {
    let open = ctx.db.run(|tx| store::open_missing_in_till(tx, MAX_FIXES_PER_RUN)).await?;
    let mut fixed = 0;
    for (item_id, stored, decision) in open {
        let plan = ctx
            .db
            .run({
                let (stored, decision) = (stored.clone(), decision.clone());
                move |tx| plan(tx, &stored, &decision)
            })
            .await?;
        let outcome = apply(ctx, plan).await;
        if rematch(ctx, run_id, item_id, stored, outcome).await? {
            fixed += 1;
        }
    }
    Ok(fixed)
}

fn plan(tx: &Tx, stored: &StoredRow, decision: &Decision) -> anyhow::Result<Plan> {
    let row = &stored.row;
    if decision.rule.ends_with("/failed_in_till") {
        return Ok(Plan::Nothing(
            "till holds this record as FAILED (a final state) but the PSP moved the money: \
             a person must refund or correct it"
                .into(),
        ));
    }
    Ok(match decision.record.as_ref() {
        Some(TillRecord { kind: RecordKind::Checkout, id, .. }) => {
            match payments_store::find_event_head(tx, id)?.and_then(|h| h.psp_session_id) {
                Some(session_id) => Plan::Checkout { checkout_id: id.clone(), session_id },
                None => Plan::Nothing(format!("checkout {id} has no PSP session id to ask about")),
            }
        }
        Some(TillRecord { kind: RecordKind::PaymentOrder, id, .. }) => match &row.payment_intent_id {
            Some(intent_id) => Plan::Order { payment_order_id: id.clone(), intent_id: intent_id.clone() },
            None => Plan::Nothing("the line names no payment intent to ask about".into()),
        },
        Some(TillRecord { kind: RecordKind::Refund, id, .. }) => match &row.source_id {
            Some(psp_refund_id) => Plan::Refund { refund_id: id.clone(), psp_refund_id: psp_refund_id.clone() },
            None => Plan::Nothing("the line names no PSP refund to ask about".into()),
        },
        Some(TillRecord { kind: RecordKind::Payout, id, .. }) => match &row.source_id {
            Some(transfer_id) => Plan::Payout { payout_id: id.clone(), transfer_id: transfer_id.clone() },
            None => Plan::Nothing("the line names no PSP transfer to ask about".into()),
        },
        Some(TillRecord { kind: kind @ (RecordKind::BankPayout | RecordKind::PspFee), .. }) => {
            Plan::Nothing(format!("a {} is booked from the file; nothing to ask the PSP", kind.as_str()))
        }
        Some(TillRecord { kind: RecordKind::Dispute | RecordKind::DisputeReversal, id, .. }) => {
            Plan::Dispute { psp_dispute_id: id.clone() }
        }
        None => match (row.reporting_category.as_str(), &row.payment_intent_id, &row.source_id) {
            ("charge", Some(intent_id), _) => Plan::LookUpIntent { intent_id: intent_id.clone() },
            ("dispute" | "dispute_reversal", _, Some(id)) => Plan::Dispute { psp_dispute_id: id.clone() },
            ("refund", _, Some(id)) => Plan::LookUpRefund { psp_refund_id: id.clone() },
            ("transfer", _, Some(id)) => Plan::LookUpTransfer { transfer_id: id.clone() },
            _ => Plan::Nothing("till has no record this line could be about".into()),
        },
    })
}

/// Carries out a plan; the text says what happened, for the decision's `fix`.
async fn apply(ctx: &Ctx, plan: Plan) -> String {
    match plan {
        Plan::Nothing(why) => why,
        Plan::Checkout { checkout_id, session_id } => apply_session(ctx, &checkout_id, &session_id).await,
        Plan::Order { payment_order_id, intent_id } => apply_order(ctx, &payment_order_id, &intent_id).await,
        Plan::LookUpIntent { intent_id } => look_up_intent(ctx, &intent_id).await,
        Plan::Refund { refund_id, psp_refund_id } => apply_refund(ctx, &refund_id, &psp_refund_id).await,
        Plan::Payout { payout_id, transfer_id } => apply_payout(ctx, &payout_id, &transfer_id).await,
        Plan::LookUpRefund { psp_refund_id } => look_up_refund(ctx, &psp_refund_id).await,
        Plan::LookUpTransfer { transfer_id } => look_up_transfer(ctx, &transfer_id).await,
        Plan::Dispute { psp_dispute_id } => match crate::disputes::sync(ctx, &psp_dispute_id).await {
            Ok(()) => format!("asked the PSP: dispute {psp_dispute_id} applied"),
            Err(e) => format!("dispute {psp_dispute_id} could not be applied: {e}"),
        },
    }
}

async fn look_up_refund(ctx: &Ctx, psp_refund_id: &str) -> String {
    let psp = match ctx.psp.retrieve_refund(psp_refund_id, psp_refund_id).await {
        Ok(psp) => psp,
        Err(e) => return psp_failed(&e),
    };
    match psp.metadata.get("refund_id") {
        Some(refund_id) if matches!(refunds::get(ctx, refund_id).await, Ok(Some(_))) => {
            apply_refund(ctx, refund_id, psp_refund_id).await
        }
        _ => format!("the PSP's refund {psp_refund_id} names no refund till knows"),
    }
}

async fn look_up_transfer(ctx: &Ctx, transfer_id: &str) -> String {
    let transfer = match ctx.psp.retrieve_transfer(transfer_id, transfer_id).await {
        Ok(transfer) => transfer,
        Err(e) => return psp_failed(&e),
    };
    match transfer.metadata.get("payout_id") {
        Some(payout_id) if payout_exists(ctx, payout_id).await => apply_payout(ctx, payout_id, transfer_id).await,
        _ => format!("the PSP's transfer {transfer_id} names no payout till knows"),
    }
}

/// Does till hold this payout? (Through the payouts' own query.)
async fn payout_exists(ctx: &Ctx, payout_id: &str) -> bool {
    let id = payout_id.to_string();
    matches!(ctx.db.run(move |tx| payouts::store::load(tx, &id)).await, Ok(Some(_)))
}

async fn apply_refund(ctx: &Ctx, refund_id: &str, psp_refund_id: &str) -> String {
    let psp = match ctx.psp.retrieve_refund(psp_refund_id, refund_id).await {
        Ok(psp) => psp,
        Err(e) => return psp_failed(&e),
    };
    match refunds::apply(ctx, refund_id, &psp.id, &psp.status, psp.failure_reason.as_deref()).await {
        Ok(()) => format!("asked the PSP: refund {psp_refund_id} is {}; applied to refund {refund_id}", psp.status),
        Err(why) => {
            format!("refund {psp_refund_id} ({}) could not be applied: {why}", psp.status)
        }
    }
}

async fn apply_payout(ctx: &Ctx, payout_id: &str, transfer_id: &str) -> String {
    let transfer = match ctx.psp.retrieve_transfer(transfer_id, payout_id).await {
        Ok(transfer) => transfer,
        Err(e) => return psp_failed(&e),
    };
    let status = transfer.status.clone().unwrap_or_else(|| "created".into());
    match payouts::apply(ctx, payout_id, &transfer).await {
        Ok(()) => format!("asked the PSP: transfer {transfer_id} is {status}; applied to payout {payout_id}"),
        Err(why) => {
            format!("transfer {transfer_id} ({status}) could not be applied: {why}")
        }
    }
}

async fn apply_session(ctx: &Ctx, checkout_id: &str, session_id: &str) -> String {
    let session = match ctx.psp.retrieve_checkout_session(session_id, checkout_id).await {
        Ok(session) => session,
        Err(e) => return psp_failed(&e),
    };
    let outcome = session.outcome();
    match complete::apply_checkout_session(ctx, session).await {
        Ok(applied) => format!(
            "asked the PSP: session {session_id} is {outcome:?}; applied ({} order(s) succeeded, {} failed)",
            applied.succeeded, applied.failed
        ),
        Err(ApplyError::Internal(e)) => format!("applying session {session_id} failed: {e:#}"),
        Err(refused) => format!("the PSP's session {session_id} could not be applied: {refused}"),
    }
}

async fn apply_order(ctx: &Ctx, payment_order_id: &str, intent_id: &str) -> String {
    let intent = match ctx.psp.retrieve_payment_intent(intent_id, payment_order_id).await {
        Ok(intent) => intent,
        Err(e) => return psp_failed(&e),
    };
    let status = intent.status.clone();
    match execute::apply_intent(ctx, payment_order_id, intent).await {
        Ok(()) => format!("asked the PSP: payment intent {intent_id} is {status}; applied to order {payment_order_id}"),
        Err(why) => {
            format!("payment intent {intent_id} ({status}) could not be applied: {why}")
        }
    }
}

/// The line names an intent till never stored (the file may lack metadata):
/// the PSP's intent carries the metadata till set when it created it.
async fn look_up_intent(ctx: &Ctx, intent_id: &str) -> String {
    let intent = match ctx.psp.retrieve_payment_intent(intent_id, intent_id).await {
        Ok(intent) => intent,
        Err(e) => return psp_failed(&e),
    };
    let order_id = intent.metadata.get("payment_order_id").cloned();
    let checkout_id = intent.metadata.get("checkout_id").cloned();
    let known = {
        let (order_id, checkout_id) = (order_id.clone(), checkout_id.clone());
        ctx.db
            .run(move |tx| -> anyhow::Result<(bool, Option<String>)> {
                let order = match &order_id {
                    Some(id) => payments_store::load_order(tx, id)?.is_some(),
                    None => false,
                };
                let session = match &checkout_id {
                    Some(id) => payments_store::find_event_head(tx, id)?.and_then(|h| h.psp_session_id),
                    None => None,
                };
                Ok((order, session))
            })
            .await
    };
    match (known, order_id, checkout_id) {
        (Err(e), _, _) => format!("reading till's records failed: {e:#}"),
        (Ok((true, _)), Some(order_id), _) => {
            let status = intent.status.clone();
            match execute::apply_intent(ctx, &order_id, intent).await {
                Ok(()) => format!("the PSP's intent {intent_id} ({status}) names order {order_id}; applied"),
                Err(why) => {
                    format!("intent {intent_id} names order {order_id} but could not be applied: {why}")
                }
            }
        }
        (Ok((_, Some(session_id))), _, Some(checkout_id)) => apply_session(ctx, &checkout_id, &session_id).await,
        (Ok(_), _, _) => format!("the PSP's payment intent {intent_id} names nothing till knows"),
    }
}

fn psp_failed(e: &PspError) -> String {
    match e {
        PspError::Unknown(why) => format!("the PSP did not answer ({why}); the next run asks again"),
        PspError::Refused { .. } | PspError::Rejected { .. } => format!("the PSP refused: {e}"),
    }
}

/// Classifies the line again after the fix and stores the new decision,
/// booking what it now calls for. Returns whether it is now matched.
async fn rematch(ctx: &Ctx, run_id: i64, item_id: i64, stored: StoredRow, fix: String) -> anyhow::Result<bool> {
    ctx.db
        .write(move |tx| -> anyhow::Result<bool> {
            let decision = matching::classify(tx, &stored, Some(item_id))?;
            // Another run (the CLI beside the server) may have decided it meanwhile.
            if !store::update_item(tx, item_id, &decision, &fix)? {
                return Ok(false);
            }
            let booked = booking::book_line(tx, &stored.row, &decision)?;
            if let Some(record) = decision.record.as_ref().filter(|_| decision.class.claims_record()) {
                let found = format!("found at line {} ({})", stored.row.line, stored.row.balance_transaction_id);
                store::resolve_missing_in_psp(tx, record.kind, &record.id, &found)?;
            }
            store::add_to_run(tx, run_id, store::RunCounter::FeesBooked, booked.fees)?;
            store::add_to_run(tx, run_id, store::RunCounter::PayoutsBooked, booked.payouts)?;
            let fixed = decision.class == Class::Matched;
            if fixed {
                store::add_to_run(tx, run_id, store::RunCounter::AutoFixed, 1)?;
            }
            Ok(fixed)
        })
        .await
}
