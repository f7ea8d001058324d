//! `POST /v1/payments` for the hosted page: store first, then register the
//! session at the PSP, then record what the PSP said. The checkout id makes
//! the whole call idempotent, across concurrent requests and crashes.

use crate::context::Ctx;
use crate::payments::model::{CaptureMethod, NewCheckout, PaymentMethod};
use crate::payments::session;
use crate::payments::store::{self, CheckoutView};
use crate::psp::requests::{self};
use crate::psp::{CheckoutSessionRequest, LineItem};
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

impl From<session::SessionError> for CreateError {
    fn from(e: session::SessionError) -> CreateError {
        match e {
            session::SessionError::Refused(why) => CreateError::PspRefused(why),
            session::SessionError::Unavailable(why) => CreateError::PspUnavailable(why),
            session::SessionError::Internal(e) => CreateError::Internal(e),
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
    // A new session would expire then; a session already asked for keeps
    // the request first stored, whatever the clock says now.
    let expires_at = chrono::Utc::now().timestamp() + ctx.settings.payments.checkout_expires_minutes * 60;
    let suffix = ctx.psp.statement_descriptor_suffix();
    // The view is read in the same transaction (on the writer's warm page
    // cache, which is cheaper than a reader's cold one under load).
    let (created, session, view) = {
        let (key, new, hash) = (api_key_id.to_string(), new.clone(), hash.clone());
        ctx.db
            .write(move |tx| -> Result<_, CreateError> {
                let created = match store::find_event_head(tx, new.checkout_id.as_str())? {
                    Some(head) if head.request_hash != hash || head.api_key_id != key => {
                        return Err(CreateError::DifferentRequest(new.checkout_id.to_string()));
                    }
                    // A finished checkout, or one whose session is known, is not sent again.
                    Some(head) if head.psp_session_id.is_some() || head.is_payment_done => {
                        return Ok((Created::Replayed, None, store::checkout_view(tx, new.checkout_id.as_str())?));
                    }
                    Some(_) => Created::Replayed,
                    None => {
                        if let Some(i) = store::insert_checkout(tx, &key, &new, &hash)? {
                            return Err(CreateError::OrderIdTaken(i));
                        }
                        // Token orders are charged by the executor; its jobs commit with the orders.
                        if let PaymentMethod::Token { .. } = new.payment_method {
                            for order in &new.orders {
                                let id = order.payment_order_id.as_str();
                                queue::enqueue(tx, JobKind::ChargeOrder, id, 0, max_attempts)?;
                            }
                        }
                        Created::New
                    }
                };
                let session = match session_request(&new, expires_at, suffix.clone()) {
                    Some(request) => Some(requests::fix(tx, request.build())?),
                    None => None,
                };
                Ok((created, session, store::checkout_view(tx, new.checkout_id.as_str())?))
            })
            .await?
    };
    ctx.queue_wake.notify_one();
    if let Some(session) = session {
        let order_ids: Vec<String> = new.orders.iter().map(|o| o.payment_order_id.to_string()).collect();
        session::register(ctx, &checkout_id, &order_ids, &session).await?;
        return Ok((read_checkout(ctx, &checkout_id).await?, created));
    }
    let view = view.ok_or_else(|| CreateError::Internal(anyhow::anyhow!("checkout {checkout_id} vanished")))?;
    Ok((view, created))
}

/// The hosted session a checkout asks the PSP for (None for token payments).
fn session_request(
    new: &NewCheckout,
    expires_at: i64,
    statement_descriptor_suffix: Option<String>,
) -> Option<CheckoutSessionRequest> {
    let PaymentMethod::HostedPage { success_url, cancel_url } = &new.payment_method else { return None };
    Some(CheckoutSessionRequest {
        checkout_id: new.checkout_id.to_string(),
        success_url: success_url.clone(),
        cancel_url: cancel_url.clone(),
        expires_at,
        line_items: new
            .orders
            .iter()
            .map(|o| LineItem {
                // What the buyer reads on the hosted page: the order's own
                // description, else the checkout's, else till's ids.
                name: match o.description.as_ref().or(new.description.as_ref()) {
                    Some(description) => description.as_str().to_string(),
                    None => format!("Order {} (seller {})", o.payment_order_id, o.seller_id),
                },
                currency: o.amount.currency().stripe_code(),
                unit_amount: o.amount.amount_minor(),
            })
            .collect(),
        statement_descriptor_suffix,
        metadata: new.metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        manual_capture: new.capture_method == CaptureMethod::Manual,
    })
}

pub async fn read_checkout(ctx: &Ctx, checkout_id: &str) -> Result<CheckoutView, CreateError> {
    let id = checkout_id.to_string();
    ctx.db
        .run(move |tx| store::checkout_view(tx, &id))
        .await?
        .ok_or_else(|| CreateError::Internal(anyhow::anyhow!("checkout {checkout_id} vanished")))
}
