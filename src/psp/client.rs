//! The HTTP client for Stripe's API. Every call carries the pinned
//! `Stripe-Version` (`psp.api_version`) and is recorded in `psp_calls` with
//! it (after it returns, never inside a business transaction). Errors are
//! classified: a decline or a 4xx is final; a timeout, 429, 5xx or broken
//! connection leaves the outcome unknown, and the caller must ask again.

use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use anyhow::Context;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use crate::config::PspSettings;
use crate::db::{Db, params};
use crate::psp::requests::PspRequest;
use crate::psp::types::{
    CheckoutSession, Dispute, PaymentIntent, Refund, ReportRun, StripeError, StripeErrorBody, Transfer,
};

#[derive(Debug, Clone, thiserror::Error)]
pub enum PspError {
    /// The PSP answered and refused the payment, refund or transfer itself
    /// (a decline, a payment method it does not take, an object in a state
    /// that forbids it): asking again will not change it.
    #[error("PSP refused ({status}): {code}: {message}")]
    Refused { status: u16, code: String, decline_code: Option<String>, message: String },
    /// The PSP refused till's *request*, not the payment: its parameters
    /// conflict with an earlier use of the idempotency key, are malformed,
    /// or till's credentials are wrong. Nothing is known of the object; an
    /// order, refund or payout is never failed for it. A person must look.
    #[error("PSP rejected the request ({status}): {code}: {message}")]
    Rejected { status: u16, code: String, message: String },
    /// No answer we can trust (timeout, 409, 429, 5xx, connection): the
    /// request may or may not have taken effect.
    #[error("PSP outcome unknown: {0}")]
    Unknown(String),
}

#[derive(Clone)]
pub struct PspClient {
    http: reqwest::Client,
    api_base: String,
    /// Stripe serves file contents from a host of their own (`files.stripe.com`).
    files_base: String,
    secret_key: String,
    /// Sent as `Stripe-Version` with every request (a default header of `http`).
    api_version: String,
    /// `statement_descriptor_suffix` of every charge; `None`: not sent.
    statement_descriptor_suffix: Option<String>,
    calls: CallLog,
}

pub struct LineItem {
    pub name: String,
    pub currency: String,
    pub unit_amount: i64,
}

pub struct CheckoutSessionRequest {
    pub checkout_id: String,
    pub success_url: String,
    pub cancel_url: String,
    pub expires_at: i64,
    pub line_items: Vec<LineItem>,
    /// `psp.statement_descriptor_suffix`, if set.
    pub statement_descriptor_suffix: Option<String>,
    /// The shop's metadata of the checkout: on the session and its
    /// PaymentIntent, beside till's `checkout_id`.
    pub metadata: Vec<(String, String)>,
    /// Manual: the buyer's payment is only authorized, captured later.
    pub manual_capture: bool,
}

pub struct TransferRequest {
    pub payout_id: String,
    pub seller_id: String,
    pub amount_minor: i64,
    /// Lower case, as Stripe writes it.
    pub currency: String,
    pub destination: String,
}

pub struct RefundRequest {
    pub refund_id: String,
    pub payment_order_id: String,
    pub payment_intent: String,
    pub amount_minor: i64,
}

/// A report run over [`interval_start`, `interval_end`) in unix seconds.
pub struct ReportRunRequest {
    pub report_type: String,
    pub interval_start: i64,
    pub interval_end: i64,
    /// The columns wanted, in their order; Stripe's defaults leave some out
    /// (the `payment_metadata[…]` ones), so ask for each one read.
    pub columns: Vec<String>,
}

pub struct PaymentIntentRequest {
    pub payment_order_id: String,
    pub checkout_id: String,
    pub seller_id: String,
    pub amount_minor: i64,
    /// Lower case, as Stripe writes it.
    pub currency: String,
    pub payment_method: String,
    /// `psp.statement_descriptor_suffix`, if set.
    pub statement_descriptor_suffix: Option<String>,
    /// The shop's words on the charge; None: "order {payment_order_id}".
    pub description: Option<String>,
    /// The shop's metadata, beside till's own keys.
    pub metadata: Vec<(String, String)>,
    /// Manual: the charge is only authorized, captured later.
    pub manual_capture: bool,
}

/// `POST /v1/payment_intents/{id}/capture`: takes `amount_to_capture` of an
/// authorized intent and releases the rest. Idempotent on `idempotency_key`
/// (`capture-{checkout or order}`), so a capture asked again after a
/// timeout is the same capture.
pub struct CaptureRequest {
    pub payment_intent: String,
    pub amount_to_capture: i64,
    pub idempotency_key: String,
    pub subject_id: String,
}

/// The shop's answer to a dispute: its evidence, submitted
/// (`POST /v1/disputes/{id}` with `evidence[uncategorized_text]` and
/// `submit=true`), or its acceptance (`POST /v1/disputes/{id}/close`).
/// Idempotent on the dispute: it is answered once.
pub enum DisputeResponse {
    Evidence(String),
    Accept,
}

pub struct DisputeResponseRequest {
    pub psp_dispute_id: String,
    pub response: DisputeResponse,
}

impl DisputeResponseRequest {
    pub fn build(&self) -> PspRequest {
        let id = encode_path(&self.psp_dispute_id);
        let (path, key, form) = match &self.response {
            DisputeResponse::Evidence(text) => (
                format!("/v1/disputes/{id}"),
                format!("evidence-{id}"),
                vec![("evidence[uncategorized_text]".to_string(), text.clone()), ("submit".into(), "true".into())],
            ),
            DisputeResponse::Accept => (format!("/v1/disputes/{id}/close"), format!("accept-{id}"), Vec::new()),
        };
        PspRequest { path, idempotency_key: key, subject_id: self.psp_dispute_id.clone(), form }
    }
}

/// `POST /v1/payment_intents/{id}/cancel`: releases an authorized intent.
pub struct CancelIntentRequest {
    pub payment_intent: String,
    /// Stripe's `cancellation_reason` (`requested_by_customer`, `abandoned`, …).
    pub reason: &'static str,
    pub idempotency_key: String,
    pub subject_id: String,
}

impl CaptureRequest {
    pub fn build(&self) -> PspRequest {
        PspRequest {
            path: format!("/v1/payment_intents/{}/capture", encode_path(&self.payment_intent)),
            idempotency_key: self.idempotency_key.clone(),
            subject_id: self.subject_id.clone(),
            form: vec![("amount_to_capture".into(), self.amount_to_capture.to_string())],
        }
    }
}

impl CancelIntentRequest {
    pub fn build(&self) -> PspRequest {
        PspRequest {
            path: format!("/v1/payment_intents/{}/cancel", encode_path(&self.payment_intent)),
            idempotency_key: self.idempotency_key.clone(),
            subject_id: self.subject_id.clone(),
            form: vec![("cancellation_reason".into(), self.reason.into())],
        }
    }
}

/// The longest line item name Stripe takes; a longer description is cut
/// there (with an ellipsis) on its way to the PSP, and kept whole in till.
pub const MAX_LINE_ITEM_NAME_CHARS: usize = 250;

/// `text` cut to at most `max` characters, an ellipsis ending a cut one.
pub fn shortened(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

impl CheckoutSessionRequest {
    /// The session's parameters, idempotent on the checkout id.
    pub fn build(&self) -> PspRequest {
        let mut form: Vec<(String, String)> = vec![
            ("mode".into(), "payment".into()),
            ("success_url".into(), self.success_url.clone()),
            ("cancel_url".into(), self.cancel_url.clone()),
            ("client_reference_id".into(), self.checkout_id.clone()),
            ("expires_at".into(), self.expires_at.to_string()),
            ("metadata[checkout_id]".into(), self.checkout_id.clone()),
            ("payment_intent_data[metadata][checkout_id]".into(), self.checkout_id.clone()),
        ];
        for (key, value) in &self.metadata {
            form.push((format!("metadata[{key}]"), value.clone()));
            form.push((format!("payment_intent_data[metadata][{key}]"), value.clone()));
        }
        if let Some(suffix) = &self.statement_descriptor_suffix {
            form.push(("payment_intent_data[statement_descriptor_suffix]".into(), suffix.clone()));
        }
        if self.manual_capture {
            form.push(("payment_intent_data[capture_method]".into(), "manual".into()));
        }
        for (i, item) in self.line_items.iter().enumerate() {
            let p = format!("line_items[{i}]");
            form.push((format!("{p}[price_data][currency]"), item.currency.clone()));
            form.push((format!("{p}[price_data][unit_amount]"), item.unit_amount.to_string()));
            form.push((
                format!("{p}[price_data][product_data][name]"),
                shortened(&item.name, MAX_LINE_ITEM_NAME_CHARS),
            ));
            form.push((format!("{p}[quantity]"), "1".into()));
        }
        PspRequest {
            path: "/v1/checkout/sessions".into(),
            idempotency_key: session_key(&self.checkout_id),
            subject_id: self.checkout_id.clone(),
            form,
        }
    }
}

/// The idempotency key of a checkout's session.
pub fn session_key(checkout_id: &str) -> String {
    format!("checkout-{checkout_id}")
}

impl PaymentIntentRequest {
    /// The charge's parameters, idempotent on the order id. Confirmed on
    /// the server with no buyer to send anywhere, so it takes no payment
    /// method that redirects: without `allow_redirects=never` a current
    /// Stripe account refuses the confirmation for want of a `return_url`.
    pub fn build(&self) -> PspRequest {
        let mut form: Vec<(String, String)> = vec![
            ("amount".into(), self.amount_minor.to_string()),
            ("currency".into(), self.currency.clone()),
            ("payment_method".into(), self.payment_method.clone()),
            ("confirm".into(), "true".into()),
            ("automatic_payment_methods[enabled]".into(), "true".into()),
            ("automatic_payment_methods[allow_redirects]".into(), "never".into()),
            (
                "description".into(),
                self.description.clone().unwrap_or_else(|| format!("order {}", self.payment_order_id)),
            ),
            ("metadata[payment_order_id]".into(), self.payment_order_id.clone()),
            ("metadata[checkout_id]".into(), self.checkout_id.clone()),
            ("metadata[seller_id]".into(), self.seller_id.clone()),
        ];
        form.extend(self.metadata.iter().map(|(key, value)| (format!("metadata[{key}]"), value.clone())));
        if let Some(suffix) = &self.statement_descriptor_suffix {
            form.push(("statement_descriptor_suffix".into(), suffix.clone()));
        }
        if self.manual_capture {
            form.push(("capture_method".into(), "manual".into()));
        }
        PspRequest {
            path: "/v1/payment_intents".into(),
            idempotency_key: self.payment_order_id.clone(),
            subject_id: self.payment_order_id.clone(),
            form,
        }
    }
}

impl RefundRequest {
    /// The refund's parameters, idempotent on till's refund id.
    pub fn build(&self) -> PspRequest {
        let form: Vec<(String, String)> = vec![
            ("payment_intent".into(), self.payment_intent.clone()),
            ("amount".into(), self.amount_minor.to_string()),
            ("metadata[refund_id]".into(), self.refund_id.clone()),
            ("metadata[payment_order_id]".into(), self.payment_order_id.clone()),
        ];
        PspRequest {
            path: "/v1/refunds".into(),
            idempotency_key: self.refund_id.clone(),
            subject_id: self.refund_id.clone(),
            form,
        }
    }
}

impl TransferRequest {
    /// The transfer's parameters, idempotent on the payout id.
    pub fn build(&self) -> PspRequest {
        let form: Vec<(String, String)> = vec![
            ("amount".into(), self.amount_minor.to_string()),
            ("currency".into(), self.currency.clone()),
            ("destination".into(), self.destination.clone()),
            ("description".into(), format!("payout {}", self.payout_id)),
            ("metadata[payout_id]".into(), self.payout_id.clone()),
            ("metadata[seller_id]".into(), self.seller_id.clone()),
        ];
        PspRequest {
            path: "/v1/transfers".into(),
            idempotency_key: self.payout_id.clone(),
            subject_id: self.payout_id.clone(),
            form,
        }
    }
}

impl PspClient {
    /// A client of the PSP at `api_base` (the embedded sandbox's address when
    /// `psp.api_base` is empty), with the keys, version and options of `psp`.
    pub fn new(api_base: &str, psp: &PspSettings, db: Db) -> anyhow::Result<PspClient> {
        let mut headers = reqwest::header::HeaderMap::new();
        let version = reqwest::header::HeaderValue::from_str(&psp.api_version)
            .with_context(|| format!("psp.api_version '{}' is not a header value", psp.api_version))?;
        headers.insert("Stripe-Version", version);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(psp.request_timeout_ms))
            .connect_timeout(Duration::from_millis(psp.request_timeout_ms.min(5_000)))
            .pool_max_idle_per_host(64)
            .user_agent(concat!("till/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .build()
            .context("building the PSP HTTP client")?;
        let api_base = api_base.trim_end_matches('/').to_string();
        let files_base = match psp.files_base.trim_end_matches('/') {
            "" => api_base.clone(),
            base => base.to_string(),
        };
        Ok(PspClient {
            http,
            files_base,
            api_base,
            secret_key: psp.secret_key.clone(),
            api_version: psp.api_version.clone(),
            statement_descriptor_suffix: Some(psp.statement_descriptor_suffix.clone()).filter(|s| !s.is_empty()),
            calls: CallLog::spawn(db),
        })
    }

    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// What every charge's statement descriptor ends with (`psp.statement_descriptor_suffix`).
    pub fn statement_descriptor_suffix(&self) -> Option<String> {
        self.statement_descriptor_suffix.clone()
    }

    /// `POST /v1/checkout/sessions`, as fixed by [`CheckoutSessionRequest::build`].
    pub async fn create_checkout_session(&self, req: &PspRequest) -> Result<CheckoutSession, PspError> {
        self.post_fixed(req).await
    }

    /// `POST /v1/checkout/sessions/{id}/expire`: no buyer can pay it after this.
    pub async fn expire_checkout_session(
        &self,
        session_id: &str,
        checkout_id: &str,
    ) -> Result<CheckoutSession, PspError> {
        let path = format!("/v1/checkout/sessions/{}/expire", encode_path(session_id));
        let key = format!("expire-{checkout_id}");
        self.post(&path, &[], Some(&key), checkout_id).await
    }

    /// `GET /v1/checkout/sessions/{id}`: the PSP's word on a session.
    pub async fn retrieve_checkout_session(
        &self,
        session_id: &str,
        subject_id: &str,
    ) -> Result<CheckoutSession, PspError> {
        let path = format!("/v1/checkout/sessions/{}", encode_path(session_id));
        self.send(self.http.get(self.url(&path)), "GET", &path, None, subject_id).await
    }

    /// `POST /v1/payment_intents` with `confirm=true`, as fixed by
    /// [`PaymentIntentRequest::build`]: charges one order. The order id is the
    /// idempotency key, so asking again after a timeout returns the first
    /// answer instead of charging twice.
    pub async fn create_payment_intent(&self, req: &PspRequest) -> Result<PaymentIntent, PspError> {
        self.post_fixed(req).await
    }

    /// `GET /v1/payment_intents/{id}`.
    pub async fn retrieve_payment_intent(&self, id: &str, subject_id: &str) -> Result<PaymentIntent, PspError> {
        let path = format!("/v1/payment_intents/{}", encode_path(id));
        self.send(self.http.get(self.url(&path)), "GET", &path, None, subject_id).await
    }

    /// `POST /v1/payment_intents/{id}/capture` or `/cancel`, as fixed by
    /// [`CaptureRequest::build`] or [`CancelIntentRequest::build`].
    pub async fn settle_authorization(&self, req: &PspRequest) -> Result<PaymentIntent, PspError> {
        self.post_fixed(req).await
    }

    /// `GET /v1/disputes/{id}`: the PSP's word on a dispute.
    pub async fn retrieve_dispute(&self, id: &str, subject_id: &str) -> Result<Dispute, PspError> {
        let path = format!("/v1/disputes/{}", encode_path(id));
        self.send(self.http.get(self.url(&path)), "GET", &path, None, subject_id).await
    }

    /// The shop's answer to a dispute, as fixed by [`DisputeResponseRequest::build`].
    pub async fn respond_to_dispute(&self, req: &PspRequest) -> Result<Dispute, PspError> {
        self.post_fixed(req).await
    }

    /// `POST /v1/refunds`, as fixed by [`RefundRequest::build`].
    pub async fn create_refund(&self, req: &PspRequest) -> Result<Refund, PspError> {
        self.post_fixed(req).await
    }

    /// `GET /v1/refunds/{id}`.
    pub async fn retrieve_refund(&self, id: &str, subject_id: &str) -> Result<Refund, PspError> {
        let path = format!("/v1/refunds/{}", encode_path(id));
        self.send(self.http.get(self.url(&path)), "GET", &path, None, subject_id).await
    }

    /// `POST /v1/transfers`, as fixed by [`TransferRequest::build`]: pays a seller out.
    pub async fn create_transfer(&self, req: &PspRequest) -> Result<Transfer, PspError> {
        self.post_fixed(req).await
    }

    /// `GET /v1/transfers/{id}`.
    pub async fn retrieve_transfer(&self, id: &str, subject_id: &str) -> Result<Transfer, PspError> {
        let path = format!("/v1/transfers/{}", encode_path(id));
        self.send(self.http.get(self.url(&path)), "GET", &path, None, subject_id).await
    }

    /// Sends a stored request: its parameters exactly, under its idempotency key.
    async fn post_fixed<T: DeserializeOwned>(&self, req: &PspRequest) -> Result<T, PspError> {
        self.post(&req.path, &req.form, Some(&req.idempotency_key), &req.subject_id).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &[(String, String)],
        idempotency_key: Option<&str>,
        subject_id: &str,
    ) -> Result<T, PspError> {
        let mut builder = self.http.post(self.url(path)).form(form);
        if let Some(key) = idempotency_key {
            builder = builder.header("Idempotency-Key", key);
        }
        self.send(builder, "POST", path, idempotency_key, subject_id).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        builder: reqwest::RequestBuilder,
        method: &str,
        path: &str,
        idempotency_key: Option<&str>,
        subject_id: &str,
    ) -> Result<T, PspError> {
        let started = Instant::now();
        let result = builder.bearer_auth(&self.secret_key).send().await;
        let (status, outcome) = match result {
            Ok(resp) => {
                let status = resp.status();
                (Some(status.as_u16()), classify(status, resp.bytes().await))
            }
            Err(e) => (None, Err(PspError::Unknown(describe_reqwest(&e)))),
        };
        let summary = match &outcome {
            Ok(_) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        observe_call(method, path, status, &outcome, started);
        self.record_call(subject_id, method, path, idempotency_key, status, summary, started).await;
        outcome.and_then(|bytes| {
            serde_json::from_slice(&bytes)
                .map_err(|e| PspError::Unknown(format!("unreadable PSP answer to {method} {path}: {e}")))
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.api_base, path)
    }

    /// `POST /v1/reporting/report_runs`: asks the PSP to run a report. No
    /// idempotency key: a run changes nothing but itself, and asking again
    /// for a day whose run failed must start a new run, not replay the old one.
    pub async fn create_report_run(&self, req: &ReportRunRequest, subject_id: &str) -> Result<ReportRun, PspError> {
        let mut form: Vec<(String, String)> = vec![
            ("report_type".into(), req.report_type.clone()),
            ("parameters[interval_start]".into(), req.interval_start.to_string()),
            ("parameters[interval_end]".into(), req.interval_end.to_string()),
        ];
        for (i, column) in req.columns.iter().enumerate() {
            form.push((format!("parameters[columns][{i}]"), column.clone()));
        }
        self.post("/v1/reporting/report_runs", &form, None, subject_id).await
    }

    /// `GET /v1/reporting/report_runs/{id}`.
    pub async fn retrieve_report_run(&self, id: &str, subject_id: &str) -> Result<ReportRun, PspError> {
        let path = format!("/v1/reporting/report_runs/{}", encode_path(id));
        self.send(self.http.get(self.url(&path)), "GET", &path, None, subject_id).await
    }

    /// `GET /v1/files/{id}/contents` at `files_base`: a file's bytes, refused
    /// rather than read past `max_bytes`. The URL is built from the file's id,
    /// never taken from an answer, so the secret key only goes to the hosts
    /// configured.
    pub async fn download_file(&self, file_id: &str, max_bytes: usize, subject_id: &str) -> Result<Vec<u8>, PspError> {
        let path = format!("/v1/files/{}/contents", encode_path(file_id));
        let url = format!("{}{path}", self.files_base);
        let started = Instant::now();
        let (status, outcome) = match self.http.get(url).bearer_auth(&self.secret_key).send().await {
            Ok(resp) if resp.status().is_success() => {
                (Some(resp.status().as_u16()), read_at_most(resp, max_bytes).await)
            }
            Ok(resp) => {
                let status = resp.status();
                let body = read_at_most(resp, MAX_ERROR_BODY_BYTES).await.map(Bytes::from);
                (Some(status.as_u16()), body.and_then(|b| classify(status, Ok(b))).map(|b| b.to_vec()))
            }
            Err(e) => (None, Err(PspError::Unknown(describe_reqwest(&e)))),
        };
        let summary = match &outcome {
            Ok(bytes) => format!("ok ({} bytes)", bytes.len()),
            Err(e) => e.to_string(),
        };
        observe_call("GET", &path, status, &outcome, started);
        self.record_call(subject_id, "GET", &path, None, status, summary, started).await;
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_call(
        &self,
        subject_id: &str,
        method: &str,
        path: &str,
        idempotency_key: Option<&str>,
        status: Option<u16>,
        outcome: String,
        started: Instant,
    ) {
        self.calls.record(CallRow {
            subject_id: subject_id.to_string(),
            method: method.to_string(),
            path: path.to_string(),
            idempotency_key: idempotency_key.map(str::to_string),
            api_version: self.api_version.clone(),
            status,
            outcome,
            duration_ms: started.elapsed().as_millis() as i64,
            at: crate::db::now(),
        });
    }
}

/// A PSP call in the metrics (`till_psp_calls_total`, its latency) and,
/// when the PSP did not answer or refused till's request, a warning: a
/// decline is the PSP's answer about a card, not a failure of the call.
fn observe_call<T>(method: &str, path: &str, status: Option<u16>, outcome: &Result<T, PspError>, started: Instant) {
    let operation = operation(method, path);
    let kind = match outcome {
        Ok(_) => "ok",
        Err(PspError::Refused { .. }) => "refused",
        Err(PspError::Rejected { .. }) => "rejected",
        Err(PspError::Unknown(_)) => "unknown",
    };
    let m = &crate::metrics::METRICS;
    m.psp_calls.with_label_values(&[operation.as_str(), kind]).inc();
    m.psp_duration.with_label_values(&[operation.as_str()]).observe(started.elapsed().as_secs_f64());
    if let Err(e @ (PspError::Rejected { .. } | PspError::Unknown(_))) = outcome {
        tracing::warn!(%operation, status, error = %e, "PSP call failed");
    }
}

/// A call's method and path with its ids written `{id}`
/// (`POST /v1/refunds`, `GET /v1/payment_intents/{id}`), so that the
/// metrics have one series per operation, not per object.
fn operation(method: &str, path: &str) -> String {
    const WORDS: [&str; 16] = [
        "v1",
        "checkout",
        "sessions",
        "expire",
        "payment_intents",
        "refunds",
        "transfers",
        "reporting",
        "report_runs",
        "files",
        "contents",
        "capture",
        "cancel",
        "webhook_endpoints",
        "disputes",
        "close",
    ];
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> =
        path.split('/').map(|s| if s.is_empty() || WORDS.contains(&s) { s } else { "{id}" }).collect();
    format!("{method} {}", segments.join("/"))
}

/// One row of `psp_calls`.
struct CallRow {
    subject_id: String,
    method: String,
    path: String,
    idempotency_key: Option<String>,
    /// The `Stripe-Version` the call carried.
    api_version: String,
    status: Option<u16>,
    outcome: String,
    duration_ms: i64,
    at: String,
}

/// The audit log of PSP calls, written in batches by a background task so
/// that it costs the payment path no write of its own. It is secondary: a
/// full buffer drops rows (counted in the logs) rather than slow payments,
/// and the last moments before a crash may be missing from it.
#[derive(Clone)]
struct CallLog {
    rows: tokio::sync::mpsc::Sender<CallRow>,
}

impl CallLog {
    const BUFFER: usize = 65_536;
    const BATCH: usize = 2_048;

    fn spawn(db: Db) -> CallLog {
        let (rows, rx) = tokio::sync::mpsc::channel(Self::BUFFER);
        tokio::spawn(Self::run(db, rx));
        CallLog { rows }
    }

    fn record(&self, row: CallRow) {
        if self.rows.try_send(row).is_err() {
            tracing::warn!("the PSP call log is full; a call was not recorded");
        }
    }

    async fn run(db: Db, mut rx: tokio::sync::mpsc::Receiver<CallRow>) {
        let mut batch = Vec::with_capacity(Self::BATCH);
        while rx.recv_many(&mut batch, Self::BATCH).await > 0 {
            let rows = std::mem::take(&mut batch);
            let written: anyhow::Result<()> = db
                .write(move |tx| {
                    for r in &rows {
                        tx.execute(
                            "INSERT INTO psp_calls (subject_id, method, path, idempotency_key, http_status,
                                                    outcome, duration_ms, at, api_version)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                            params![
                                r.subject_id,
                                r.method,
                                r.path,
                                r.idempotency_key,
                                r.status,
                                r.outcome,
                                r.duration_ms,
                                r.at,
                                r.api_version
                            ],
                        )?;
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = written {
                tracing::warn!(error = format!("{e:#}"), "could not record PSP calls");
            }
        }
    }
}

fn classify(status: StatusCode, body: reqwest::Result<Bytes>) -> Result<Bytes, PspError> {
    let body = body.map_err(|e| PspError::Unknown(describe_reqwest(&e)))?;
    if status.is_success() {
        return Ok(body);
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(PspError::Unknown(format!("PSP answered {status}")));
    }
    let parsed: Option<StripeErrorBody> = serde_json::from_slice(&body).ok();
    let error = parsed.map(|b| b.error);
    // A 409 is an idempotent request still running at the PSP: ask again later.
    if status == StatusCode::CONFLICT {
        return Err(PspError::Unknown("PSP is still processing the same idempotency key".into()));
    }
    let code = error
        .as_ref()
        .and_then(|e| e.code.clone().or(e.kind.clone()))
        .unwrap_or_else(|| format!("http_{}", status.as_u16()));
    let message = error.as_ref().and_then(|e| e.message.clone()).unwrap_or_else(|| format!("PSP answered {status}"));
    if is_about_the_request(status, error.as_ref()) {
        return Err(PspError::Rejected { status: status.as_u16(), code, message });
    }
    Err(PspError::Refused { status: status.as_u16(), code, decline_code: error.and_then(|e| e.decline_code), message })
}

/// Whether a 4xx refuses till's request rather than the payment, refund or
/// transfer: wrong credentials, an idempotency key reused with other
/// parameters, or a malformed request. A card error, an error about the
/// payment method, and an error with a code about the object (an unknown
/// charge, an amount above what is left, …) are the PSP's word on it.
fn is_about_the_request(status: StatusCode, error: Option<&StripeError>) -> bool {
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return true;
    }
    let Some(e) = error else { return status != StatusCode::PAYMENT_REQUIRED };
    match e.kind.as_deref() {
        Some("card_error") => false,
        Some("idempotency_error" | "authentication_error") => true,
        _ if e.param.as_deref().is_some_and(|p| p.starts_with("payment_method")) => false,
        _ => match e.code.as_deref() {
            None => true,
            Some(code) => code.starts_with("parameter_") || code == "url_invalid" || code == "secret_key_required",
        },
    }
}

/// The most of an error's body read (Stripe's are a few hundred bytes).
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// A response's body, refused once it passes `max_bytes`, whatever its
/// `Content-Length` says (a chunked answer has none).
async fn read_at_most(mut resp: reqwest::Response, max_bytes: usize) -> Result<Vec<u8>, PspError> {
    let too_large = || PspError::Unknown(format!("the PSP's answer is larger than {max_bytes} bytes"));
    if resp.content_length().is_some_and(|n| n > max_bytes as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| PspError::Unknown(describe_reqwest(&e)))? {
        if body.len() + chunk.len() > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out waiting for the PSP".into()
    } else if e.is_connect() {
        "could not connect to the PSP".into()
    } else {
        format!("PSP request failed: {e}")
    }
}

/// Ids come from the PSP; keep them from breaking out of the path.
fn encode_path(segment: &str) -> String {
    segment.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn operations_name_no_object() {
        assert_eq!(super::operation("POST", "/v1/refunds"), "POST /v1/refunds");
        assert_eq!(super::operation("GET", "/v1/payment_intents/pi_123"), "GET /v1/payment_intents/{id}");
        assert_eq!(
            super::operation("POST", "/v1/checkout/sessions/cs_test_a1/expire"),
            "POST /v1/checkout/sessions/{id}/expire"
        );
        assert_eq!(super::operation("GET", "/v1/files/file_9/contents?x=1"), "GET /v1/files/{id}/contents");
    }
}
