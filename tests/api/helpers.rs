//! `spawn_app()`: till and its sandbox PSP on port 0 with temporary
//! databases, an API key, and the calls a shop and a buyer make.

use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode, redirect};
use serde_json::{Value, json};
use till::config::{DatabaseSettings, Settings};
use till::context::Ctx;
use till::startup::Application;
use uuid::Uuid;

pub struct TestApp {
    pub address: String,
    pub sandbox: String,
    /// `http://…/metrics` when `metrics.bind` is set.
    pub metrics: Option<String>,
    pub api_key: String,
    pub ctx: Ctx,
    pub settings: Settings,
    /// Follows no redirects, so tests see the 303s a browser would follow.
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::default();
    settings.server.bind = "127.0.0.1:0".into();
    settings.server.workers = 2;
    settings.database.path = dir.path().join("till.db");
    settings.sandbox.bind = "127.0.0.1:0".into();
    settings.sandbox.database_path = dir.path().join("sandbox.db");
    settings.sandbox.webhook_retry_base_ms = 50;
    settings.psp.request_timeout_ms = 5_000;
    settings.log.level = "warn".into();
    // Tests run side by side: no fixed metrics port (a test sets its own).
    settings.metrics.bind = String::new();
    // The suite's webhook receivers listen on 127.0.0.1.
    settings.webhooks.allow_private_urls = true;
    if let Some(server) = test_postgres() {
        settings.database.url = fresh_postgres_database(&server);
    }
    configure(&mut settings);
    settings.validate().unwrap();
    till::telemetry::init(&settings.log);
    let app = Application::build(settings.clone()).unwrap();
    let address = format!("http://{}", app.address());
    // A till without its own sandbox talks to another's (psp.api_base).
    let sandbox = app.sandbox_address().map_or_else(|| settings.psp.api_base.clone(), |a| format!("http://{a}"));
    let ctx = app.context().clone();
    let metrics = app.metrics_address().map(|a| format!("http://{a}/metrics"));
    tokio::spawn(app.run_until_stopped());
    let api_key = ctx.db.write_now(|tx| till::api_keys::create(tx, "tests")).unwrap().key;
    TestApp {
        address,
        sandbox,
        metrics,
        api_key,
        ctx,
        settings,
        client: reqwest::Client::builder().redirect(redirect::Policy::none()).build().unwrap(),
        dir,
    }
}

/// The PostgreSQL server the suite runs on instead of SQLite, when
/// `TILL_TEST_DATABASE=postgres`: `TILL_TEST_POSTGRES_URL` (any database of
/// it; each test gets a fresh one beside it).
pub fn test_postgres() -> Option<String> {
    let engine = std::env::var("TILL_TEST_DATABASE").unwrap_or_default();
    if engine != "postgres" {
        assert!(engine.is_empty() || engine == "sqlite", "TILL_TEST_DATABASE is sqlite or postgres, not {engine}");
        return None;
    }
    Some(std::env::var("TILL_TEST_POSTGRES_URL").expect("TILL_TEST_POSTGRES_URL names the PostgreSQL server"))
}

/// A `till` subprocess on a test's database: its SQLite path, and its
/// PostgreSQL URL when the suite runs on PostgreSQL.
pub trait OnDatabase {
    fn on_database(&mut self, database: &DatabaseSettings) -> &mut Self;
}

impl OnDatabase for std::process::Command {
    fn on_database(&mut self, database: &DatabaseSettings) -> &mut Self {
        self.env("TILL_DATABASE__PATH", &database.path);
        if !database.url.is_empty() {
            self.env("TILL_DATABASE__URL", &database.url);
        }
        self
    }
}

/// A new, empty database on the test server; its URL.
pub fn fresh_postgres_database(server: &str) -> String {
    let name = format!("till_test_{}", Uuid::new_v4().simple());
    let admin = server.to_string();
    let create = format!("CREATE DATABASE {name}");
    // The synchronous client may not block the async runtime's thread.
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).expect("connecting to the test server");
        client.batch_execute(&create).expect("creating a test database");
    })
    .join()
    .unwrap();
    let (base, query) = server.split_once('?').map_or((server, None), |(b, q)| (b, Some(q)));
    let at = base.rfind('/').expect("a URL with a database");
    let url = format!("{}/{name}", &base[..at]);
    query.map_or(url.clone(), |q| format!("{url}?{q}"))
}

/// A configuration file of built-in defaults, for running the binary on
/// `TILL_…` variables alone (a `--config` must exist), without the fixed
/// metrics port, which tests running side by side would contend for.
pub fn empty_config() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("empty-config.toml");
        std::fs::write(&path, "# built-in defaults, but\n[metrics]\nbind = \"\"\n").unwrap();
        path.to_string_lossy().into_owned()
    })
}

pub fn uuid() -> String {
    Uuid::new_v4().to_string()
}

/// A hosted-page request body with fresh ids: `orders` are (seller, amount, currency).
pub fn hosted_body(orders: &[(&str, &str, &str)]) -> Value {
    json!({
        "checkout_id": uuid(),
        "buyer": {"id": "buyer_42", "email": "kim@example.com"},
        "orders": orders.iter().map(|(seller, amount, currency)| json!({
            "payment_order_id": uuid(), "seller_id": seller, "amount": amount, "currency": currency
        })).collect::<Vec<_>>(),
        "payment_method": {"type": "hosted_page"},
        "success_url": "https://shop.example/thanks?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.example/cart",
    })
}

impl TestApp {
    pub async fn post_payment(&self, body: &Value) -> Response {
        self.client
            .post(format!("{}/v1/payments", self.address))
            .bearer_auth(&self.api_key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(format!("{}{path}", self.address)).bearer_auth(&self.api_key).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let resp = self.get(path).await;
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        resp.json().await.unwrap()
    }

    /// Creates a hosted checkout and returns its JSON (asserting 201).
    pub async fn create_hosted(&self, orders: &[(&str, &str, &str)]) -> Value {
        let resp = self.post_payment(&hosted_body(orders)).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json().await.unwrap()
    }

    /// What a buyer does: open the hosted page, then submit the card form.
    pub async fn pay(&self, redirect_url: &str, card: &str) -> Response {
        let page = self.client.get(redirect_url).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "the hosted page opens");
        let html = page.text().await.unwrap();
        assert!(html.contains("card_number"), "the page has the card form");
        self.client
            .post(redirect_url)
            .form(&[("card_number", card), ("exp_month", "12"), ("exp_year", "2034"), ("cvc", "123")])
            .send()
            .await
            .unwrap()
    }

    /// Polls the checkout until every order is final.
    pub async fn wait_until_done(&self, checkout_id: &str) -> Value {
        let started = Instant::now();
        loop {
            let checkout = self.get_json(&format!("/v1/checkouts/{checkout_id}")).await;
            if checkout["is_payment_done"] == json!(true) {
                return checkout;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "checkout never finished: {checkout}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A call to the sandbox PSP's API as the PSP's own dashboard or tests would make it.
    pub async fn sandbox_post(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.client
            .post(format!("{}{path}", self.sandbox))
            .bearer_auth(&self.settings.psp.secret_key)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn sandbox_get(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.sandbox))
            .bearer_auth(&self.settings.psp.secret_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn post_webhook(&self, body: &str, signature: Option<String>) -> Response {
        let mut req = self
            .client
            .post(format!("{}/webhooks/psp", self.address))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        if let Some(sig) = signature {
            req = req.header("Stripe-Signature", sig);
        }
        req.send().await.unwrap()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.value(sql)
    }

    /// The first column of the first row of a query without parameters.
    pub fn value<T: till::db::FromSql + Send>(&self, sql: &str) -> T {
        self.ctx.db.read_now(|tx| tx.query_value(sql, till::db::params![])).unwrap()
    }

    /// The first column of every row of a query without parameters.
    pub fn column<T: till::db::FromSql + Send>(&self, sql: &str) -> Vec<T> {
        self.ctx.db.read_now(|tx| tx.query_map(sql, till::db::params![], |r| r.get(0))).unwrap()
    }

    /// A statement without parameters, in a write of its own: a change
    /// behind till's back, as an operator with a SQL shell would make it.
    pub fn execute(&self, sql: &str) -> anyhow::Result<usize> {
        self.ctx.db.write_now(|tx| tx.execute(sql, till::db::params![]))
    }

    pub fn is_postgres(&self) -> bool {
        self.ctx.db.is_postgres()
    }

    pub fn assert_ledger_ok(&self) {
        let report = self.ctx.db.read_snapshot(till::ledger::check::run).unwrap();
        assert!(report.ok, "{}", report.summary());
    }
}

impl Drop for TestApp {
    /// After every scenario the ledger invariants must hold.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_ledger_ok();
        }
    }
}

/// The PSP's payment intent of a checkout's (only) order.
pub fn intent_of(app: &TestApp, checkout_id: &str) -> String {
    app.ctx
        .db
        .read_now(|tx| {
            tx.query_value(
                "SELECT psp_payment_intent_id FROM payment_orders WHERE checkout_id = $1",
                till::db::params![checkout_id],
            )
        })
        .unwrap()
}

pub fn session_id_of(redirect_url: &str) -> String {
    redirect_url.rsplit('/').next().unwrap().to_string()
}

/// A token-payment request body with fresh ids.
pub fn token_body(token: &str, orders: &[(&str, &str, &str)]) -> Value {
    let mut body = hosted_body(orders);
    let obj = body.as_object_mut().unwrap();
    obj.remove("success_url");
    obj.remove("cancel_url");
    obj.insert("payment_method".into(), json!({"type": "token", "token": token}));
    body
}

/// What a receiver of webhooks got: headers (lower-case names) and body.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// A shop's webhook endpoint on port 0: records every request, and answers
/// 500 to the first `fail_first` of them.
pub struct Receiver {
    pub url: String,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Receiver {
    pub async fn spawn(fail_first: usize) -> Receiver {
        use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let (store, count) = (received.clone(), calls.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let server = HttpServer::new(move || {
            let (store, count) = (store.clone(), count.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (store, count) = (store.clone(), count.clone());
                async move {
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect();
                    store.lock().unwrap().push(Received { headers, body: String::from_utf8_lossy(&body).into() });
                    if count.fetch_add(1, Ordering::SeqCst) < fail_first {
                        HttpResponse::InternalServerError().finish()
                    } else {
                        HttpResponse::Ok().finish()
                    }
                }
            }))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Receiver { url, received }
    }

    pub fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for what was received.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let all = self.all();
            if pred(&all) {
                return all;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "never received {what}: {all:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl TestApp {
    /// Sets the sandbox's faults at run time.
    pub async fn set_faults(&self, faults: Value) {
        let resp = self
            .client
            .post(format!("{}/v1/sandbox/faults", self.sandbox))
            .bearer_auth(&self.settings.psp.secret_key)
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "setting faults: {}", resp.text().await.unwrap());
    }

    pub async fn post_json(&self, path: &str, body: &Value, idempotency_key: Option<&str>) -> Response {
        let mut req = self.client.post(format!("{}{path}", self.address)).bearer_auth(&self.api_key).json(body);
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        req.send().await.unwrap()
    }
}

/// The PSP's own books: exactly one successful payment intent for each
/// successful token order, and none for any other order.
pub fn assert_one_charge_per_order(sandbox_db: &std::path::Path, till: &till::db::Db) {
    let psp = rusqlite::Connection::open(sandbox_db).unwrap();
    let mut charges = std::collections::HashMap::<String, i64>::new();
    let mut st = psp
        .prepare(
            "SELECT json_extract(metadata, '$.payment_order_id'), COUNT(*) FROM payment_intents
             WHERE status = 'succeeded' AND json_extract(metadata, '$.payment_order_id') IS NOT NULL GROUP BY 1",
        )
        .unwrap();
    for row in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).unwrap() {
        let (order, n) = row.unwrap();
        charges.insert(order, n);
    }
    let orders: Vec<(String, String)> = till
        .read_now(|tx| {
            tx.query_map(
                "SELECT o.payment_order_id, o.payment_order_status FROM payment_orders o
                 JOIN payment_events e ON e.checkout_id = o.checkout_id WHERE e.payment_method = 'token'",
                till::db::params![],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .unwrap();
    for (order, status) in &orders {
        let expected = i64::from(status == "SUCCESS");
        assert_eq!(charges.get(order).copied().unwrap_or(0), expected, "order {order} is {status}");
    }
    assert_eq!(charges.len(), orders.iter().filter(|(_, s)| s == "SUCCESS").count(), "no charge for an unknown order");
}

impl TestApp {
    /// A paid hosted checkout; returns its JSON once every order is SUCCESS.
    pub async fn paid_checkout(&self, orders: &[(&str, &str, &str)]) -> Value {
        let checkout = self.create_hosted(orders).await;
        let paid = self.pay(checkout["redirect_url"].as_str().unwrap(), "4242424242424242").await;
        assert_eq!(paid.status(), StatusCode::SEE_OTHER);
        self.wait_until_done(checkout["checkout_id"].as_str().unwrap()).await
    }

    pub async fn refund(&self, order_id: &str, body: Value) -> Response {
        self.post_json(&format!("/v1/payments/{order_id}/refunds"), &body, None).await
    }

    /// Polls a refund until it is final.
    pub async fn wait_refund(&self, refund_id: &str) -> Value {
        let started = Instant::now();
        loop {
            let refund = self.get_json(&format!("/v1/refunds/{refund_id}")).await;
            if refund["status"] != "PENDING" {
                return refund;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "refund never finished: {refund}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn balance(&self, seller: &str) -> String {
        self.get_json(&format!("/v1/wallets/{seller}")).await["balances"][0]["balance"].as_str().unwrap().to_string()
    }
}

/// The disputes of an order once there are `n` and the PSP has taken each
/// one's money (`GET /v1/disputes?payment_order_id=…`), newest first.
pub async fn wait_for_disputes(app: &TestApp, order_id: &str, n: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let page = app.get_json(&format!("/v1/disputes?payment_order_id={order_id}")).await;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        if data.len() >= n && data.iter().all(|d| d["withdrawn_at"].is_string()) {
            return data;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no dispute of {order_id}: {page}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls a dispute until its status is `status`.
pub async fn wait_for_dispute_status(app: &TestApp, dispute_id: &str, status: &str) -> Value {
    let started = Instant::now();
    loop {
        let dispute = app.get_json(&format!("/v1/disputes/{dispute_id}")).await;
        if dispute["status"] == status {
            return dispute;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "dispute never became {status}: {dispute}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls a checkout until its `status` is `status`.
pub async fn wait_for_checkout_status(app: &TestApp, checkout_id: &str, status: &str) -> Value {
    let started = Instant::now();
    loop {
        let checkout = app.get_json(&format!("/v1/checkouts/{checkout_id}")).await;
        if checkout["status"] == status {
            return checkout;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "checkout never became {status}: {checkout}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A token payment with the sandbox's dispute test card, once paid (the
/// PSP disputes it `sandbox.dispute_after_ms` later).
pub async fn disputed_token_payment(app: &TestApp, orders: &[(&str, &str, &str)]) -> Value {
    let resp = app.post_payment(&token_body("pm_card_createDispute", orders)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let created: Value = resp.json().await.unwrap();
    app.wait_until_done(created["checkout_id"].as_str().unwrap()).await
}

/// A manual-capture hosted checkout paid on the hosted page, once authorized.
pub async fn authorized_hosted_checkout(app: &TestApp, orders: &[(&str, &str, &str)]) -> Value {
    let mut body = hosted_body(orders);
    body["capture_method"] = json!("manual");
    let resp = app.post_payment(&body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let created: Value = resp.json().await.unwrap();
    let paid = app.pay(created["redirect_url"].as_str().unwrap(), "4242424242424242").await;
    assert_eq!(paid.status(), StatusCode::SEE_OTHER);
    wait_for_checkout_status(app, created["checkout_id"].as_str().unwrap(), "authorized").await
}
