//! `spawn_sandbox()`: a sandbox on port 0 with a temporary database, whose
//! endpoint for till points at a [`Receiver`] that captures every webhook.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use till::config::{PspSettings, SandboxSettings};

pub const SECRET_KEY: &str = "sk_test_sandbox_tests_0123456789";
pub const WEBHOOK_SECRET: &str = "whsec_sandbox_tests_0123456789";

/// One captured webhook: its exact body and signature header.
#[derive(Debug, Clone)]
pub struct Captured {
    pub body: String,
    pub signature: String,
    pub event: Value,
}

/// A tiny HTTP server that records webhooks; it can be told to fail the next few.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    captured: Arc<Mutex<Vec<Captured>>>,
    fail_next: Arc<AtomicUsize>,
    pub failures_sent: Arc<AtomicUsize>,
}

struct ReceiverState {
    captured: Arc<Mutex<Vec<Captured>>>,
    fail_next: Arc<AtomicUsize>,
    failures_sent: Arc<AtomicUsize>,
}

async fn receive(state: web::Data<ReceiverState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let fail = state.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    if fail {
        state.failures_sent.fetch_add(1, Ordering::SeqCst);
        return HttpResponse::InternalServerError().finish();
    }
    let body = String::from_utf8(body.to_vec()).unwrap();
    let signature = req.headers().get("Stripe-Signature").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let event = serde_json::from_str(&body).unwrap();
    state.captured.lock().unwrap().push(Captured { body, signature, event });
    HttpResponse::Ok().finish()
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/webhooks/psp", listener.local_addr().unwrap());
        let receiver =
            Receiver { url, captured: Arc::default(), fail_next: Arc::default(), failures_sent: Arc::default() };
        let state = web::Data::new(ReceiverState {
            captured: receiver.captured.clone(),
            fail_next: receiver.fail_next.clone(),
            failures_sent: receiver.failures_sent.clone(),
        });
        let server =
            HttpServer::new(move || App::new().app_data(state.clone()).route("/webhooks/psp", web::post().to(receive)))
                .workers(1)
                .listen(listener)
                .unwrap()
                .run();
        tokio::spawn(server);
        receiver
    }

    /// Answer 500 to the next `n` deliveries.
    pub fn fail_next(&self, n: usize) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    pub fn all(&self) -> Vec<Captured> {
        self.captured.lock().unwrap().clone()
    }

    /// Waits (at most 10 s) for an event of `kind` about object `object_id`.
    pub async fn wait_for(&self, kind: &str, object_id: &str) -> Captured {
        for _ in 0..200 {
            let found = self
                .all()
                .into_iter()
                .find(|c| c.event["type"] == kind && c.event["data"]["object"]["id"] == object_id);
            if let Some(c) = found {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no {kind} event for {object_id}; got {:#?}",
            self.all().iter().map(|c| &c.event["type"]).collect::<Vec<_>>()
        );
    }

    /// Waits (at most 10 s) for an event of `kind` whose object matches `pick`.
    pub async fn wait_for_where(&self, kind: &str, pick: impl Fn(&Value) -> bool) -> Captured {
        for _ in 0..200 {
            let found = self.all().into_iter().find(|c| c.event["type"] == kind && pick(&c.event["data"]["object"]));
            if let Some(c) = found {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no such {kind} event; got {:#?}", self.all().iter().map(|c| &c.event["type"]).collect::<Vec<_>>());
    }

    /// Every captured event of `kind` about `object_id`.
    pub fn events(&self, kind: &str, object_id: &str) -> Vec<Captured> {
        self.all()
            .into_iter()
            .filter(|c| c.event["type"] == kind && c.event["data"]["object"]["id"] == object_id)
            .collect()
    }
}

/// Checks a `Stripe-Signature` header as Stripe's libraries do.
pub fn signature_is_valid(header: &str, body: &str, secret: &str) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value.to_string()),
            Some(("v1", value)) => v1.push(value.to_string()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let expected = hex::encode(mac.finalize().into_bytes());
    let fresh = (chrono::Utc::now().timestamp() - t.parse::<i64>().unwrap()).abs() < 300;
    fresh && v1.contains(&expected)
}

pub struct TestSandbox {
    pub base: String,
    pub client: reqwest::Client,
    pub receiver: Receiver,
    pub db_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

pub async fn spawn_sandbox() -> TestSandbox {
    spawn_with(|_| {}).await
}

/// How soon a test sandbox disputes the dispute test card's captured charges.
pub const QUICK_DISPUTE_MS: u64 = 100;

/// A sandbox whose manual capture and disputes run on a test's clock:
/// authorizations expire after `authorization_days` (a decimal string,
/// "0.00001" ≈ 0.9 s), disputes open `dispute_after_ms` after capture, and
/// cost `dispute_fee` (major units, a decimal string).
pub async fn spawn_timed(authorization_days: &str, dispute_after_ms: u64, dispute_fee: &str) -> TestSandbox {
    let days = decimal(authorization_days);
    let fee = decimal(dispute_fee);
    spawn_with(move |s| {
        s.authorization_days = days;
        s.dispute_after_ms = dispute_after_ms;
        s.dispute_fee = fee;
    })
    .await
}

/// A sandbox that disputes the dispute test card [`QUICK_DISPUTE_MS`] after capture.
pub async fn spawn_quick_disputes() -> TestSandbox {
    spawn_timed("7", QUICK_DISPUTE_MS, "15.00").await
}

pub fn decimal(s: &str) -> rust_decimal::Decimal {
    s.parse().unwrap()
}

/// The form of a PaymentIntent for 10.00 USD confirmed on the server with
/// `pm_card_visa`, plus `extra` (a repeated key wins over the one before).
pub fn intent_form<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("amount", "1000"),
        ("currency", "usd"),
        ("payment_method", "pm_card_visa"),
        ("confirm", "true"),
        ("automatic_payment_methods[enabled]", "true"),
        ("automatic_payment_methods[allow_redirects]", "never"),
    ];
    form.extend_from_slice(extra);
    form
}

/// One line of the sandbox's balance, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub category: String,
    pub amount: i64,
    pub fee: i64,
    pub net: i64,
    pub source_id: String,
    pub description: Option<String>,
}

/// A sandbox whose settings `tweak` may change first.
pub async fn spawn_with(tweak: impl FnOnce(&mut SandboxSettings)) -> TestSandbox {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = SandboxSettings {
        database_path: dir.path().join("sandbox.db"),
        webhook_retry_base_ms: 50,
        webhook_max_attempts: 5,
        ..SandboxSettings::default()
    };
    tweak(&mut settings);
    let psp =
        PspSettings { secret_key: SECRET_KEY.into(), webhook_secret: WEBHOOK_SECRET.into(), ..PspSettings::default() };
    let receiver = Receiver::start();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = till::sandbox::build(listener, &settings, &psp, receiver.url.clone()).unwrap();
    tokio::spawn(server);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    TestSandbox { base, client, receiver, db_path: settings.database_path, _dir: dir }
}

impl TestSandbox {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A form POST with the secret key and optionally an idempotency key.
    pub async fn post(&self, path: &str, form: &[(&str, &str)], key: Option<&str>) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).bearer_auth(SECRET_KEY).form(form);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        req.send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).bearer_auth(SECRET_KEY).send().await.unwrap()
    }

    /// POST, expecting `status`; returns the JSON.
    pub async fn post_json(&self, path: &str, form: &[(&str, &str)], status: u16) -> Value {
        let response = self.post(path, form, None).await;
        json_with_status(response, status).await
    }

    pub async fn get_json(&self, path: &str, status: u16) -> Value {
        json_with_status(self.get(path).await, status).await
    }

    /// A one-item USD checkout session for 25.00.
    pub async fn create_session(&self, extra: &[(&str, &str)]) -> Value {
        let mut form = vec![
            ("mode", "payment"),
            ("success_url", "https://shop.example/thanks?session={CHECKOUT_SESSION_ID}"),
            ("cancel_url", "https://shop.example/cart"),
            ("client_reference_id", "checkout-1"),
            ("line_items[0][price_data][currency]", "usd"),
            ("line_items[0][price_data][unit_amount]", "2500"),
            ("line_items[0][price_data][product_data][name]", "Blue mug"),
            ("line_items[0][quantity]", "1"),
            ("metadata[checkout_id]", "chk_1"),
            ("payment_intent_data[metadata][checkout_id]", "chk_1"),
            ("payment_intent_data[metadata][payment_order_id]", "po_1"),
        ];
        form.extend_from_slice(extra);
        self.post_json("/v1/checkout/sessions", &form, 200).await
    }

    /// Pays a session on the hosted page with `card`; returns the response.
    pub async fn pay(&self, session_id: &str, card: &str) -> reqwest::Response {
        let form = [("card_number", card), ("exp_month", "12"), ("exp_year", "2099"), ("cvc", "123")];
        self.client.post(self.url(&format!("/pay/{session_id}"))).form(&form).send().await.unwrap()
    }

    /// Creates a PaymentIntent from [`intent_form`] with `extra`, expecting 200.
    pub async fn create_intent(&self, extra: &[(&str, &str)]) -> Value {
        self.post_json("/v1/payment_intents", &intent_form(extra), 200).await
    }

    /// The balance lines of one PaymentIntent, in the order they were booked.
    pub fn balance_lines(&self, payment_intent: &str) -> Vec<Line> {
        let conn = rusqlite::Connection::open(&self.db_path).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT reporting_category, amount, fee, net, source_id, description FROM balance_transactions
                 WHERE payment_intent = ?1 ORDER BY rowid",
            )
            .unwrap();
        stmt.query_map([payment_intent], |r| {
            Ok(Line {
                category: r.get(0)?,
                amount: r.get(1)?,
                fee: r.get(2)?,
                net: r.get(3)?,
                source_id: r.get(4)?,
                description: r.get(5)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// Disputes of `payment_intent`, newest first, through `GET /v1/disputes`.
    pub async fn disputes_of(&self, payment_intent: &str) -> Vec<Value> {
        let list = self.get_json(&format!("/v1/disputes?payment_intent={payment_intent}"), 200).await;
        list["data"].as_array().unwrap().clone()
    }

    /// Waits (at most 10 s) for the dispute of `payment_intent` to be opened.
    pub async fn wait_for_dispute(&self, payment_intent: &str) -> Value {
        for _ in 0..200 {
            if let Some(dispute) = self.disputes_of(payment_intent).await.into_iter().next() {
                return dispute;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no dispute of {payment_intent}");
    }

    /// Reads a report run until it is no longer pending (at most 10 s).
    pub async fn wait_until_final(&self, run_id: &str) -> Value {
        for _ in 0..200 {
            let run = self.get_json(&format!("/v1/reporting/report_runs/{run_id}"), 200).await;
            if run["status"] != "pending" {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("report run {run_id} never finished");
    }

    /// Today's (UTC) settlement report.
    pub async fn todays_report(&self) -> String {
        let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let response = self.get(&format!("/v1/sandbox/settlement_reports/{day}")).await;
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    pub async fn set_faults(&self, faults: Value) {
        let response = self
            .client
            .post(self.url("/v1/sandbox/faults"))
            .bearer_auth(SECRET_KEY)
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
}

pub async fn json_with_status(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A table row of bad input: the form, the expected error `code` and `param`.
pub type BadCase<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
