//! `POST /admin/checkouts/{id}/capture` and `/void`: a manual checkout's
//! authorization captured (all, or part of each order) or released, through
//! `payments::capture`, as the API does it.

use actix_web::{HttpResponse, web};

use super::{Done, Form, KeyForm, Outcome, Refusal, capitalized, perform};
use crate::admin::format;
use crate::admin::views::payments as payment_views;
use crate::context::Ctx;
use crate::http::admin::auth::Posted;
use crate::http::admin::errors::AdminError;
use crate::payments::capture::{self, CaptureAsk, CaptureError};
use crate::payments::store::CheckoutView;

/// The capture form's field of one order's amount: `amount_{payment_order_id}`.
const AMOUNT_FIELD: &str = "amount_";

/// A 404 for a checkout that does not exist, before anything is recorded.
async fn existing(ctx: &Ctx, checkout_id: &str) -> Result<(), AdminError> {
    let lookup = checkout_id.to_string();
    let found = ctx.db.run(move |tx| payment_views::checkout_of(tx, &lookup)).await?;
    match found {
        Some(id) if id == checkout_id => Ok(()),
        _ => Err(AdminError::NotFound(format!("No checkout has the id '{checkout_id}'."))),
    }
}

/// The capture form, read: its key, and the orders given an amount (an
/// order left empty is captured in full, as the API does with an order it
/// does not list).
fn read_capture_form(pairs: Vec<(String, String)>) -> (String, CaptureAsk) {
    let mut key = String::new();
    let mut orders = Vec::new();
    for (name, value) in pairs {
        if name == "key" {
            key = value;
        } else if let Some(order) = name.strip_prefix(AMOUNT_FIELD) {
            let amount = value.trim();
            if !amount.is_empty() {
                orders.push((order.to_string(), amount.to_string()));
            }
        }
    }
    (key, CaptureAsk { orders })
}

/// `POST /admin/checkouts/{id}/capture`.
pub async fn capture(
    ctx: web::Data<Ctx>,
    path: web::Path<String>,
    posted: Posted<Vec<(String, String)>>,
) -> Result<HttpResponse, AdminError> {
    let (staff, checkout_id) = (posted.staff, path.into_inner());
    existing(&ctx, &checkout_id).await?;
    let (key, ask) = read_capture_form(posted.form);
    if ask.orders.len() > capture::MAX_CAPTURE_ORDERS {
        return Err(AdminError::BadRequest(format!("a capture names at most {} orders", capture::MAX_CAPTURE_ORDERS)));
    }
    let plan: String = ask.orders.iter().map(|(id, amount)| format!("{id}={amount};")).collect();
    let fields = [("orders", plan.as_str())];
    let back = format!("/admin/payments/{checkout_id}");
    let subject = checkout_id.clone();
    let form = Form { staff: &staff, key: &key, action: "capture_checkout", subject, fields: &fields, back };
    perform(&ctx, form, async {
        let asked = ask.clone();
        match capture::capture(&ctx, &checkout_id, ask).await {
            Ok(view) => Ok(Done::new(Some(checkout_id.clone()), captured_message(&view))),
            Err(e) => settled_or_refused(e, "capture", &asked),
        }
    })
    .await
}

/// `POST /admin/checkouts/{id}/void`.
pub async fn void(
    ctx: web::Data<Ctx>,
    path: web::Path<String>,
    posted: Posted<KeyForm>,
) -> Result<HttpResponse, AdminError> {
    let (staff, f, checkout_id) = (posted.staff, posted.form, path.into_inner());
    existing(&ctx, &checkout_id).await?;
    let back = format!("/admin/payments/{checkout_id}");
    let subject = checkout_id.clone();
    let form = Form { staff: &staff, key: &f.key, action: "void_checkout", subject, fields: &[], back };
    perform(&ctx, form, async {
        match capture::void(&ctx, &checkout_id).await {
            Ok(_) => Ok(Done::new(
                Some(checkout_id.clone()),
                "Checkout voided: the buyer's authorization is released, nothing is charged, and its orders are \
                 FAILED (canceled)."
                    .into(),
            )),
            Err(e) => settled_or_refused(e, "void", &CaptureAsk::default()),
        }
    })
    .await
}

/// What a capture did to each order: "1f0c7a0e… 20.00 of 25.00 USD".
fn captured_message(view: &CheckoutView) -> String {
    let parts: Vec<String> = view
        .orders
        .iter()
        .map(|o| {
            let id = format::short_id(&o.payment_order_id);
            match (o.status.as_str(), &o.amount_captured) {
                ("SUCCESS", Some(taken)) if *taken != o.amount => {
                    format!("{id} {taken} of {} {}", o.amount, o.currency)
                }
                ("SUCCESS", _) => format!("{id} {} {} in full", o.amount, o.currency),
                ("FAILED", _) if o.failure_code.as_deref() == Some("canceled") => format!("{id} released"),
                (status, _) => format!("{id} {status} {}", o.failure_code.as_deref().unwrap_or_default()),
            }
        })
        .collect();
    format!("Checkout captured: {}. What was not captured is released to the buyer.", parts.join("; ").trim_end())
}

/// A capture or void that did not end now: recorded and still being sent
/// (done: its job carries it out), or refused with the core's reason.
fn settled_or_refused(e: CaptureError, what: &str, ask: &CaptureAsk) -> Outcome {
    let refused = |m: String| Err(Refusal::Refused(m));
    match e {
        CaptureError::PspUnavailable(why) => Ok(Done::new(
            None,
            format!(
                "The {what} is recorded, but the PSP did not answer ({why}); till carries it out shortly. \
                 Reload this page in a minute."
            ),
        )),
        CaptureError::Psp(why) => refused(format!("The PSP refused the {what}: {why}.")),
        CaptureError::NotFound(id) => refused(format!("There is no checkout {id}.")),
        CaptureError::Refused(m) | CaptureError::NotVoidable(m) => refused(format!("{}.", capitalized(&m))),
        CaptureError::BadOrder { index, why, .. } => match ask.orders.get(index) {
            Some((id, amount)) => {
                refused(format!("Nothing was captured: {amount} for order {} {why}.", format::short_id(id)))
            }
            None => refused(format!("Nothing was captured: {why}.")),
        },
        CaptureError::Internal(e) => Err(Refusal::Internal(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capture_form_lists_only_the_orders_given_an_amount() {
        let pairs = [("csrf", "t"), ("key", "k1"), ("amount_o1", " 20.00 "), ("amount_o2", ""), ("amount_o3", "0")];
        let (key, ask) = read_capture_form(pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect());
        assert_eq!(key, "k1");
        assert_eq!(ask.orders, vec![("o1".to_string(), "20.00".to_string()), ("o3".to_string(), "0".to_string())]);
    }
}
