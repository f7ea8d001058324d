//! `spawn_app()`: till and its sandbox PSP on port 0 with temporary
//! databases, an API key, and the calls a shop and a buyer make.

use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode, redirect};
use serde_json::{Value, json};
use till::config::Settings;
use till::context::Ctx;
use till::startup::Application;
use uuid::Uuid;

pub struct TestApp {
    pub address: String,
    pub sandbox: String,
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
    configure(&mut settings);
    settings.validate().unwrap();
    till::telemetry::init(&settings.log);
    let app = Application::build(settings.clone()).unwrap();
    let address = format!("http://{}", app.address());
    let sandbox = format!("http://{}", app.sandbox_address().unwrap());
    let ctx = app.context().clone();
    tokio::spawn(app.run_until_stopped());
    let api_key = till::api_keys::create(&ctx.db.conn().unwrap(), "tests").unwrap().key;
    TestApp {
        address,
        sandbox,
        api_key,
        ctx,
        settings,
        client: reqwest::Client::builder().redirect(redirect::Policy::none()).build().unwrap(),
        dir,
    }
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
        self.ctx.db.conn().unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    pub fn assert_ledger_ok(&self) {
        let report = till::ledger::check::run(&mut self.ctx.db.conn().unwrap()).unwrap();
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

pub fn session_id_of(redirect_url: &str) -> String {
    redirect_url.rsplit('/').next().unwrap().to_string()
}
