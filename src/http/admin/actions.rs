//! The dashboard's actions (POST): each goes through the same core function
//! as the API, under the form's idempotency key, recorded in
//! `admin_actions` with the staff member who did it, and answers with a
//! redirect to the page it came from (`?action=ID` shows the outcome).
//! Manual capture's and disputes' actions are in `capture` and `disputes`.

pub mod capture;
pub mod disputes;

use crate::events::{EndpointChange, EndpointError, EndpointView};
use std::future::Future;

use actix_web::{HttpResponse, web};
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::admin::actions::{self, Begin, BeginError, NewAction};
use crate::admin::sessions;
use crate::admin::views::{ops, payments as payment_views};
use crate::context::Ctx;
use crate::http::admin::auth::{Posted, Staff};
use crate::http::admin::errors::AdminError;
use crate::money::Currency;
use crate::payments::model::SellerId;
use crate::payouts::{self, NewPayout, PayoutError};
use crate::reconciliation::{self, ImportError, ResolveError, Source};
use crate::refunds::{self, NewRefund, RefundError};

pub const MAX_NOTE_CHARS: usize = 500;

/// An action that did what it was asked: what it created, what the staff member is told.
struct Done {
    result_id: Option<String>,
    message: String,
}

impl Done {
    fn new(result_id: Option<String>, message: String) -> Done {
        Done { result_id, message }
    }
}

/// An action that did not.
enum Refusal {
    /// The core function said no, for a reason the staff member can act on.
    Refused(String),
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for Refusal {
    fn from(e: anyhow::Error) -> Refusal {
        Refusal::Internal(e)
    }
}

/// How an action ended.
type Outcome = Result<Done, Refusal>;

/// One submitted dashboard form: the action it asks for, on what, with
/// which fields (those that define the request), and the page it came from.
struct Form<'a> {
    staff: &'a Staff,
    key: &'a str,
    action: &'static str,
    subject: String,
    fields: &'a [(&'static str, &'a str)],
    back: String,
}

impl Form<'_> {
    fn new_action(&self) -> NewAction {
        NewAction {
            key: self.key.to_string(),
            staff_email: self.staff.email().to_string(),
            action: self.action.to_string(),
            subject_id: self.subject.clone(),
            fields: self.fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }
}

/// What every dashboard action does around its own work: records the form
/// under its key in the audit trail (a form seen before is shown, not done
/// again), runs `act` once, records how it ended, and redirects back to the
/// form's page showing the outcome.
async fn perform(ctx: &Ctx, form: Form<'_>, act: impl Future<Output = Outcome>) -> Result<HttpResponse, AdminError> {
    let new = form.new_action();
    let id = match ctx.db.write(move |tx| actions::begin(tx, &new)).await {
        Ok(Begin::Seen(id)) => return Ok(back_to(&form.back, id)),
        Ok(Begin::Run(id)) => id,
        Err(BeginError::Internal(e)) => return Err(e.into()),
        Err(e) => return Err(AdminError::BadRequest(e.to_string())),
    };
    let (ok, result_id, message) = match act.await {
        Ok(Done { result_id, message }) => (true, result_id, message),
        Err(Refusal::Refused(message)) => (false, None, message),
        Err(Refusal::Internal(e)) => {
            tracing::error!(error = format!("{e:#}"), action = form.action, "admin action failed");
            (false, None, "An internal error occurred; it has been logged. Nothing was changed by this form.".into())
        }
    };
    tracing::info!(action = form.action, subject = form.subject, staff = form.staff.email(), ok, "admin action");
    ctx.db.write(move |tx| actions::finish(tx, id, ok, result_id.as_deref(), &message)).await?;
    Ok(back_to(&form.back, id))
}

fn back_to(back: &str, action_id: i64) -> HttpResponse {
    HttpResponse::SeeOther().insert_header(("Location", format!("{back}?action={action_id}"))).finish()
}

fn note(raw: &str) -> Result<String, Refusal> {
    let note = raw.trim();
    if note.is_empty() {
        return Err(Refusal::Refused("Write a note saying what was done or why.".into()));
    }
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(Refusal::Refused(format!("The note is longer than {MAX_NOTE_CHARS} characters.")));
    }
    Ok(note.to_string())
}

fn non_empty(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

#[derive(Deserialize)]
pub struct RefundForm {
    key: String,
    payment_order_id: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reason: String,
}

/// `POST /admin/refunds`: a (partial) refund through `refunds::create`.
pub async fn refund(ctx: web::Data<Ctx>, posted: Posted<RefundForm>) -> Result<HttpResponse, AdminError> {
    let (staff, f) = (posted.staff, posted.form);
    let order_id = f.payment_order_id.trim().to_string();
    let lookup = order_id.clone();
    let checkout = ctx.db.run(move |tx| payment_views::checkout_of(tx, &lookup)).await?;
    let checkout = checkout.ok_or_else(|| AdminError::NotFound(format!("No payment order '{order_id}'.")))?;
    let fields = [("amount", f.amount.as_str()), ("reason", f.reason.as_str())];
    let back = format!("/admin/payments/{checkout}");
    let form = Form { staff: &staff, key: &f.key, action: "refund", subject: order_id.clone(), fields: &fields, back };
    perform(&ctx, form, async {
        let reason = non_empty(&f.reason);
        if reason.as_ref().is_some_and(|r| r.chars().count() > refunds::MAX_REASON_LEN) {
            return Err(Refusal::Refused(format!("The reason is longer than {} characters.", refunds::MAX_REASON_LEN)));
        }
        let amount = refunds::parse_amount(non_empty(&f.amount).as_deref())
            .map_err(|e| Refusal::Refused(format!("Refund refused: {e}.")))?;
        let new =
            NewRefund { payment_order_id: order_id.clone(), amount, reason, created_by: staff.email().to_string() };
        let r = refunds::create(&ctx, new).await.map_err(|e| match e {
            RefundError::Internal(e) => Refusal::Internal(e),
            e => Refusal::Refused(format!("Refund refused: {e}.")),
        })?;
        let message =
            format!("Refund of {} {} created ({}); it is sent to the PSP next.", r.amount, r.currency, r.status);
        Ok(Done::new(Some(r.refund_id), message))
    })
    .await
}

#[derive(Deserialize)]
pub struct PayoutForm {
    key: String,
    seller_id: String,
    currency: String,
    #[serde(default)]
    amount: String,
}

/// `POST /admin/payouts`: a payout through `payouts::create`.
pub async fn payout(ctx: web::Data<Ctx>, posted: Posted<PayoutForm>) -> Result<HttpResponse, AdminError> {
    let (staff, f) = (posted.staff, posted.form);
    let seller = SellerId::parse(f.seller_id.trim())
        .ok_or_else(|| AdminError::BadRequest(format!("'{}' is not a seller id", f.seller_id)))?;
    let currency = Currency::parse(f.currency.trim()).map_err(|e| AdminError::BadRequest(e.to_string()))?;
    let fields = [("currency", currency.code()), ("amount", f.amount.as_str())];
    let back = format!("/admin/sellers/{seller}");
    let form = Form {
        staff: &staff,
        key: &f.key,
        action: "payout",
        subject: seller.as_str().to_string(),
        fields: &fields,
        back,
    };
    perform(&ctx, form, async {
        let new = NewPayout {
            seller_id: seller.as_str().to_string(),
            currency: Some(currency),
            amount: non_empty(&f.amount),
            created_by: staff.email().to_string(),
        };
        let p = payouts::create(&ctx, new).await.map_err(|e| match e {
            PayoutError::Internal(e) => Refusal::Internal(e),
            e => Refusal::Refused(format!("Payout refused: {e}.")),
        })?;
        let message = format!("Payout of {} {} to {} created ({}).", p.amount, p.currency, p.destination, p.status);
        Ok(Done::new(Some(p.payout_id), message))
    })
    .await
}

#[derive(Deserialize)]
pub struct JobForm {
    key: String,
    #[serde(default)]
    note: String,
}

/// `POST /admin/jobs/{id}/retry`: a dead letter back to the queue (`queue::retry_dead`).
pub async fn retry_job(
    ctx: web::Data<Ctx>,
    path: web::Path<i64>,
    posted: Posted<JobForm>,
) -> Result<HttpResponse, AdminError> {
    let (staff, f, job_id) = (posted.staff, posted.form, path.into_inner());
    let subject = format!("job:{job_id}");
    let form =
        Form { staff: &staff, key: &f.key, action: "retry_job", subject, fields: &[], back: "/admin/jobs".into() };
    let by = staff.email().to_string();
    perform(&ctx, form, async {
        if !ctx.db.write(move |tx| crate::queue::retry_dead(tx, job_id, &by)).await? {
            return Err(Refusal::Refused(format!("Job {job_id} is not a dead letter (any more).")));
        }
        ctx.queue_wake.notify_one();
        Ok(Done::new(None, format!("Job {job_id} is queued again with fresh attempts.")))
    })
    .await
}

/// `POST /admin/jobs/{id}/discard`: a dead letter set aside with a note (`queue::discard_dead`).
pub async fn discard_job(
    ctx: web::Data<Ctx>,
    path: web::Path<i64>,
    posted: Posted<JobForm>,
) -> Result<HttpResponse, AdminError> {
    let (staff, f, job_id) = (posted.staff, posted.form, path.into_inner());
    let fields = [("note", f.note.as_str())];
    let subject = format!("job:{job_id}");
    let form = Form {
        staff: &staff,
        key: &f.key,
        action: "discard_job",
        subject,
        fields: &fields,
        back: "/admin/jobs".into(),
    };
    let by = staff.email().to_string();
    perform(&ctx, form, async {
        let note = note(&f.note)?;
        if !ctx.db.write(move |tx| crate::queue::discard_dead(tx, job_id, &by, &note)).await? {
            return Err(Refusal::Refused(format!("Job {job_id} is not a dead letter that can be discarded.")));
        }
        Ok(Done::new(None, format!("Job {job_id} is discarded; it will not run.")))
    })
    .await
}

#[derive(Deserialize)]
pub struct ResolveForm {
    key: String,
    #[serde(default)]
    note: String,
}

/// `POST /admin/alerts/{id}/resolve`: through `alerts::resolve`, with a note.
pub async fn resolve_alert(
    ctx: web::Data<Ctx>,
    path: web::Path<i64>,
    posted: Posted<ResolveForm>,
) -> Result<HttpResponse, AdminError> {
    let (staff, f, alert_id) = (posted.staff, posted.form, path.into_inner());
    let fields = [("note", f.note.as_str())];
    let subject = format!("alert:{alert_id}");
    let back = "/admin/alerts".to_string();
    let form = Form { staff: &staff, key: &f.key, action: "resolve_alert", subject, fields: &fields, back };
    let by = staff.email().to_string();
    perform(&ctx, form, async {
        let resolution = format!("{} — {by}", note(&f.note)?);
        let resolved = ctx
            .db
            .write(move |tx| -> anyhow::Result<Option<bool>> {
                let Some((kind, subject, status)) = ops::alert_key(tx, alert_id)? else {
                    return Ok(None);
                };
                if status != "open" {
                    return Ok(Some(false));
                }
                Ok(Some(crate::alerts::resolve(tx, &kind, &subject, &resolution)?))
            })
            .await?;
        match resolved {
            Some(true) => Ok(Done::new(None, format!("Alert {alert_id} is resolved."))),
            Some(false) => Err(Refusal::Refused(format!("Alert {alert_id} was already resolved."))),
            None => Err(Refusal::Refused(format!("There is no alert {alert_id}."))),
        }
    })
    .await
}

/// `POST /admin/reconciliation/exceptions/{id}/resolve`: through
/// `reconciliation::resolve_exception`, with a note.
pub async fn resolve_exception(
    ctx: web::Data<Ctx>,
    path: web::Path<i64>,
    posted: Posted<ResolveForm>,
) -> Result<HttpResponse, AdminError> {
    let (staff, f, item_id) = (posted.staff, posted.form, path.into_inner());
    let fields = [("note", f.note.as_str())];
    let subject = format!("exception:{item_id}");
    let back = "/admin/reconciliation".to_string();
    let form = Form { staff: &staff, key: &f.key, action: "resolve_exception", subject, fields: &fields, back };
    perform(&ctx, form, async {
        let note = note(&f.note)?;
        let e = reconciliation::resolve_exception(&ctx, item_id, note, staff.email().to_string()).await.map_err(
            |e| match e {
                ResolveError::Internal(e) => Refusal::Internal(e),
                e => Refusal::Refused(format!("{}.", capitalized(&e.to_string()))),
            },
        )?;
        Ok(Done::new(Some(e.id.to_string()), format!("Exception {item_id} ({}) is resolved.", e.class)))
    })
    .await
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

/// A settlement file as the upload form sends it.
struct Upload {
    key: String,
    name: String,
    bytes: Vec<u8>,
}

async fn read_text(field: &mut actix_multipart::Field) -> Result<String, AdminError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| AdminError::BadRequest(format!("reading the form: {e}")))?;
        if bytes.len() + chunk.len() > 1024 {
            return Err(AdminError::BadRequest("a form field is too long".into()));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| AdminError::BadRequest("a form field is not UTF-8".into()))
}

/// Reads the upload form. The CSRF token must come before the file (the
/// form puts it first), so a forged upload is refused before it is read.
async fn read_upload(
    staff: &Staff,
    form: &mut actix_multipart::Multipart,
    max_bytes: usize,
) -> Result<Upload, AdminError> {
    let (mut csrf_ok, mut key, mut file) = (false, String::new(), None);
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| AdminError::BadRequest(format!("reading the form: {e}")))?;
        match field.name().unwrap_or_default() {
            "csrf" => csrf_ok = sessions::csrf_matches(&staff.session, &read_text(&mut field).await?),
            "key" => key = read_text(&mut field).await?,
            "file" if !csrf_ok => return Err(AdminError::Csrf),
            "file" => {
                let name: String = field
                    .content_disposition()
                    .and_then(|c| c.get_filename())
                    .map(|n| n.chars().filter(|c| !c.is_control()).take(255).collect())
                    .filter(|n: &String| !n.trim().is_empty())
                    .unwrap_or_else(|| "upload.csv".into());
                let mut bytes = Vec::new();
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(|e| AdminError::BadRequest(format!("reading the file: {e}")))?;
                    if bytes.len() + chunk.len() > max_bytes {
                        return Err(AdminError::BadRequest(format!(
                            "the file is larger than {max_bytes} bytes (reconciliation.max_file_bytes)"
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                file = Some((name, bytes));
            }
            _ => {
                read_text(&mut field).await?;
            }
        }
    }
    if !csrf_ok {
        return Err(AdminError::Csrf);
    }
    let (name, bytes) = file.ok_or_else(|| AdminError::BadRequest("choose a settlement file to upload".into()))?;
    Ok(Upload { key, name, bytes })
}

/// `POST /admin/reconciliation/files`: a settlement file through
/// `reconciliation::import_file` (which itself imports a file once).
pub async fn upload_settlement_file(
    ctx: web::Data<Ctx>,
    staff: Staff,
    mut form: actix_multipart::Multipart,
) -> Result<HttpResponse, AdminError> {
    let upload = read_upload(&staff, &mut form, ctx.settings.reconciliation.max_file_bytes).await?;
    let sha256 = hex::encode(Sha256::digest(&upload.bytes));
    let fields = [("file_sha256", sha256.as_str())];
    let back = "/admin/reconciliation".to_string();
    let (key, name, bytes) = (upload.key, upload.name, upload.bytes);
    let subject = name.clone();
    let form = Form { staff: &staff, key: &key, action: "upload_settlement_file", subject, fields: &fields, back };
    perform(&ctx, form, async {
        let s = reconciliation::import_file(&ctx, bytes, name.clone(), Source::Upload, None).await.map_err(
            |e| match e {
                ImportError::Invalid(e) => Refusal::Refused(format!("The settlement file was refused: {e}")),
                ImportError::Psp(e) => Refusal::Internal(anyhow::anyhow!("{e}")),
                ImportError::Internal(e) => Refusal::Internal(e),
            },
        )?;
        let message = if s.already_imported {
            format!("{name} was imported before (run {}); nothing changed.", s.run.id)
        } else {
            format!(
                "{name} imported as run {}: {} line(s), {} fixed automatically, {} open exception(s).",
                s.run.id, s.run.rows_total, s.run.auto_fixed, s.run.open_exceptions
            )
        };
        Ok(Done::new(Some(s.run.id.to_string()), message))
    })
    .await
}

#[derive(Deserialize)]
pub struct KeyForm {
    key: String,
}

/// `POST /admin/webhooks/{id}/{disable|enable|rotate}`: through the events
/// module's endpoint verbs. A rotated secret is shown once, in the outcome.
pub async fn endpoint_action(
    ctx: web::Data<Ctx>,
    path: web::Path<(String, String)>,
    posted: Posted<KeyForm>,
) -> Result<HttpResponse, AdminError> {
    let (staff, f, (endpoint_id, verb)) = (posted.staff, posted.form, path.into_inner());
    let action = match verb.as_str() {
        "disable" => "disable_webhook_endpoint",
        "enable" => "enable_webhook_endpoint",
        "rotate" => "rotate_webhook_secret",
        _ => return Err(AdminError::BadRequest(format!("no action {verb} on a webhook endpoint"))),
    };
    let back = "/admin/webhooks".to_string();
    let form = Form { staff: &staff, key: &f.key, action, subject: endpoint_id.clone(), fields: &[], back };
    let by = format!("by {}", staff.email());
    perform(&ctx, form, async {
        let id = endpoint_id.clone();
        let done = ctx
            .db
            .write(move |tx| -> Result<EndpointView, EndpointError> {
                match verb.as_str() {
                    "rotate" => crate::events::endpoints::rotate_secret(tx, &id),
                    _ => {
                        let change = EndpointChange { disabled: Some(verb == "disable"), ..Default::default() };
                        crate::events::endpoints::update_endpoint(tx, &id, &change, &by)
                    }
                }
            })
            .await;
        match done {
            Ok(e) => Ok(Done::new(
                Some(e.id.clone()),
                match e.secret {
                    Some(secret) => {
                        format!("Endpoint {} has a new secret (the old one signs beside it for 24 h): {secret}", e.id)
                    }
                    None => format!("Endpoint {} is {}.", e.id, e.status),
                },
            )),
            Err(EndpointError::NotFound(id)) => Err(Refusal::Refused(format!("There is no webhook endpoint {id}."))),
            Err(e) => Err(Refusal::Internal(anyhow::anyhow!(e))),
        }
    })
    .await
}

#[derive(Deserialize)]
pub struct ResendForm {
    key: String,
    endpoint_id: String,
}

/// `POST /admin/events/{id}/resend`: the event again to one endpoint (same `webhook-id`).
pub async fn resend_event(
    ctx: web::Data<Ctx>,
    path: web::Path<String>,
    posted: Posted<ResendForm>,
) -> Result<HttpResponse, AdminError> {
    let (staff, f, event_id) = (posted.staff, posted.form, path.into_inner());
    let fields = [("endpoint_id", f.endpoint_id.as_str())];
    let back = "/admin/webhooks".to_string();
    let form =
        Form { staff: &staff, key: &f.key, action: "resend_event", subject: event_id.clone(), fields: &fields, back };
    let attempts = ctx.settings.webhooks.max_attempts;
    perform(&ctx, form, async {
        let (id, endpoint) = (event_id.clone(), f.endpoint_id.clone());
        let sent = ctx.db.write(move |tx| crate::events::resend(tx, &id, Some(&endpoint), attempts)).await;
        match sent {
            Ok(_) => {
                ctx.queue_wake.notify_one();
                Ok(Done::new(Some(event_id.clone()), format!("Event {event_id} is sent again to {}.", f.endpoint_id)))
            }
            Err(crate::events::ResendError::Internal(e)) => Err(Refusal::Internal(e)),
            Err(e) => Err(Refusal::Refused(format!("Not sent: {e}."))),
        }
    })
    .await
}
