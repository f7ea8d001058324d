//! `POST /v1/payments` for the hosted page: store first, then register the
//! session at the PSP, then record what the PSP said. The checkout id makes
//! the whole call idempotent, across concurrent requests and crashes.

use actix_web::http::StatusCode;

use crate::context::Ctx;
use crate::http::errors::ApiError;
use crate::payments::complete::fail_order;
use crate::payments::model::{NewCheckout, OrderStatus, PaymentMethod};
use crate::payments::store::{self, CheckoutView};
use crate::payments::{Policy, notify};
use crate::psp::{CheckoutSessionRequest, LineItem, PspError};
use crate::queue::{self, JobKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    Replayed,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("checkout {0} exists with a different request")]
    DifferentRequest(String),
    #[error("payment order id at orders[{0}] is already used by another checkout")]
    OrderIdTaken(usize),
    #[error("the PSP refused the checkout: {0}")]
    PspRefused(String),
    #[error("the PSP did not answer: {0}")]
    PspUnavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> ApiError {
        match e {
            CreateError::DifferentRequest(id) => ApiError::idempotency(
                StatusCode::UNPROCESSABLE_ENTITY,
                "checkout_id_reused",
                format!("checkout_id {id} was already used with a different request body"),
            ),
            CreateError::OrderIdTaken(i) => ApiError::invalid(
                "payment_order_id_taken",
                format!("orders[{i}].payment_order_id is already used by another checkout"),
                format!("orders[{i}].payment_order_id"),
            ),
            CreateError::PspRefused(msg) => {
                ApiError::psp(StatusCode::BAD_GATEWAY, "psp_refused", format!("the PSP refused the checkout: {msg}"))
            }
            CreateError::PspUnavailable(msg) => ApiError::psp(
                StatusCode::SERVICE_UNAVAILABLE,
                "psp_unavailable",
                format!("the PSP could not be reached ({msg}); send the same request again to resume"),
            ),
            CreateError::Internal(e) => ApiError::internal(&e),
        }
    }
}

/// Creates the checkout, or returns the one already made by an identical request.
pub async fn create_checkout(
    ctx: &Ctx,
    api_key_id: &str,
    new: NewCheckout,
) -> Result<(CheckoutView, Created), CreateError> {
    let checkout_id = new.checkout_id.to_string();
    // Identical concurrent requests queue here; only the first talks to the PSP.
    let _guard = ctx.checkout_locks.lock(&checkout_id).await;
    let hash = new.request_hash();
    let max_attempts = ctx.settings.queue.max_attempts;
    // The view is read in the same transaction (on the writer's warm page
    // cache, which is cheaper than a reader's cold one under load).
    let (created, needs_session, view) = {
        let (key, new, hash) = (api_key_id.to_string(), new.clone(), hash.clone());
        ctx.db
            .write(move |tx| -> Result<_, CreateError> {
                if let Some(head) = store::find_event_head(tx, new.checkout_id.as_str())? {
                    if head.request_hash != hash || head.api_key_id != key {
                        return Err(CreateError::DifferentRequest(new.checkout_id.to_string()));
                    }
                    // A refused or finished checkout is not sent to the PSP again.
                    let needs_session = head.psp_session_id.is_none() && !head.is_payment_done;
                    return Ok((Created::Replayed, needs_session, store::load_checkout(tx, new.checkout_id.as_str())?));
                }
                if let Some(i) = store::insert_checkout(tx, &key, &new, &hash)? {
                    return Err(CreateError::OrderIdTaken(i));
                }
                // Token orders are charged by the executor; its jobs commit with the orders.
                if let PaymentMethod::Token { .. } = new.payment_method {
                    for order in &new.orders {
                        queue::enqueue(tx, JobKind::ChargeOrder, order.payment_order_id.as_str(), 0, max_attempts)?;
                    }
                }
                let needs_session = matches!(new.payment_method, PaymentMethod::HostedPage { .. });
                Ok((Created::New, needs_session, store::load_checkout(tx, new.checkout_id.as_str())?))
            })
            .await?
    };
    ctx.queue_wake.notify_one();
    if needs_session && let PaymentMethod::HostedPage { success_url, cancel_url } = &new.payment_method {
        register_session(ctx, &new, success_url, cancel_url).await?;
        return Ok((read_checkout(ctx, &checkout_id).await?, created));
    }
    let view = view.ok_or_else(|| CreateError::Internal(anyhow::anyhow!("checkout {checkout_id} vanished")))?;
    Ok((view, created))
}

/// Asks the PSP for a hosted session (idempotent on the checkout id, so a
/// retry after a crash gets the same session) and records it.
async fn register_session(
    ctx: &Ctx,
    new: &NewCheckout,
    success_url: &str,
    cancel_url: &str,
) -> Result<(), CreateError> {
    let expires_at = chrono::Utc::now().timestamp() + ctx.settings.payments.checkout_expires_minutes * 60;
    let request = CheckoutSessionRequest {
        checkout_id: new.checkout_id.to_string(),
        success_url: success_url.to_string(),
        cancel_url: cancel_url.to_string(),
        expires_at,
        line_items: new
            .orders
            .iter()
            .map(|o| LineItem {
                name: format!("Order {} (seller {})", o.payment_order_id, o.seller_id),
                currency: o.amount.currency().stripe_code(),
                unit_amount: o.amount.amount_minor(),
            })
            .collect(),
    };
    let checkout_id = new.checkout_id.to_string();
    let order_ids: Vec<String> = new.orders.iter().map(|o| o.payment_order_id.to_string()).collect();
    // When the session must have ended, ask the PSP in case its webhook is lost.
    let sync_delay_ms = (expires_at - chrono::Utc::now().timestamp() + 60) * 1000;
    let max_attempts = ctx.settings.queue.max_attempts;
    match ctx.psp.create_checkout_session(&request).await {
        Ok(session) => {
            let url = session.url.clone().unwrap_or_default();
            ctx.db
                .write(move |tx| -> Result<(), CreateError> {
                    tx.execute(
                        "UPDATE payment_events SET psp_session_id = ?2, redirect_url = ?3, updated_at = ?4
                         WHERE checkout_id = ?1 AND psp_session_id IS NULL",
                        rusqlite::params![checkout_id, session.id, url, crate::db::now()],
                    )
                    .map_err(anyhow::Error::from)?;
                    for id in &order_ids {
                        store::transition_order(
                            tx,
                            id,
                            OrderStatus::NotStarted,
                            OrderStatus::Executing,
                            None,
                            "hosted checkout session registered at the PSP",
                        )?;
                    }
                    queue::enqueue(tx, JobKind::SyncCheckout, &checkout_id, sync_delay_ms, max_attempts)?;
                    Ok(())
                })
                .await
        }
        Err(PspError::Refused { code, message, .. }) => {
            let policy = Policy::of(&ctx.settings);
            ctx.db
                .write(move |tx| -> Result<(), CreateError> {
                    let reason = format!("PSP refused the session: {code}");
                    for id in &order_ids {
                        fail_order(tx, id, OrderStatus::NotStarted, "psp_refused", &reason, policy)?;
                    }
                    notify::checkout_progress(tx, &checkout_id, policy)?;
                    Ok(())
                })
                .await?;
            Err(CreateError::PspRefused(message))
        }
        // Never guessed FAILED: the orders stay NOT_STARTED and the same
        // request (same idempotency key at the PSP) resumes it.
        Err(PspError::Unknown(reason)) => Err(CreateError::PspUnavailable(reason)),
    }
}

pub async fn read_checkout(ctx: &Ctx, checkout_id: &str) -> Result<CheckoutView, CreateError> {
    let id = checkout_id.to_string();
    ctx.db
        .run(move |conn| store::load_checkout(conn, &id))
        .await?
        .ok_or_else(|| CreateError::Internal(anyhow::anyhow!("checkout {checkout_id} vanished")))
}
