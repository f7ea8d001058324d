//! What Stripe requires of till's calls: every call carries the pinned
//! `Stripe-Version` (`psp.api_version`), recorded with it in `psp_calls`;
//! token payments are confirmed on the server without payment methods that
//! redirect; `psp.statement_descriptor_suffix` reaches every charge. The
//! sandbox's request log is the PSP's own word on what it received.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::admin::sign_in;
use crate::helpers::{TestApp, intent_of, spawn_app_with, token_body};

const SUFFIX: &str = "TILL TEST";

/// The sandbox's request log, newest first (a sandbox extension; not logged itself).
async fn sandbox_log(app: &TestApp) -> Vec<Value> {
    app.sandbox_get("/v1/sandbox/requests?limit=100").await["data"].as_array().unwrap().clone()
}

/// `psp_calls` as (method path, api_version), in order, once it holds as
/// many calls as the sandbox logged and a `POST` to each of `paths` (the
/// log is written in the background).
async fn recorded_calls(app: &TestApp, paths: &[&str]) -> (Vec<(String, Option<String>)>, Vec<Value>) {
    let started = Instant::now();
    loop {
        let calls: Vec<(String, Option<String>)> = app
            .ctx
            .db
            .read_now(|tx| {
                tx.query_map(
                    "SELECT method || ' ' || path, api_version FROM psp_calls ORDER BY id",
                    till::db::params![],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .unwrap();
        let log = sandbox_log(app).await;
        let posted = |path: &&str| calls.iter().any(|(call, _)| *call == format!("POST {path}"));
        if calls.len() == log.len() && paths.iter().all(posted) {
            return (calls, log);
        }
        assert!(started.elapsed() < Duration::from_secs(20), "calls never all recorded: {calls:?}\nsandbox: {log:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn every_psp_call_carries_the_pinned_stripe_version() {
    let app = spawn_app_with(|s| s.psp.statement_descriptor_suffix = SUFFIX.into()).await;
    let pinned = app.settings.psp.api_version.clone();
    assert_eq!(pinned, till::config::STRIPE_API_VERSION, "the default is the version the connector is written for");

    // A hosted payment and a token payment, as a shop makes them.
    let hosted = app.paid_checkout(&[("seller_a", "25.00", "USD")]).await;
    let resp = app.post_payment(&token_body("pm_card_visa", &[("seller_b", "12.00", "USD")])).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let token: Value = resp.json().await.unwrap();
    let token = app.wait_until_done(token["checkout_id"].as_str().unwrap()).await;
    assert_eq!(token["orders"][0]["status"], "SUCCESS", "confirmed on the server without a return_url: {token}");

    // till's record: every call with the version it sent.
    let (calls, log) = recorded_calls(&app, &["/v1/checkout/sessions", "/v1/payment_intents"]).await;
    for (call, version) in &calls {
        assert_eq!(version.as_deref(), Some(pinned.as_str()), "{call}");
    }
    // The PSP's record: the same calls, each received with that version.
    let mut received: Vec<String> =
        log.iter().map(|e| format!("{} {}", e["method"].as_str().unwrap(), e["path"].as_str().unwrap())).collect();
    let mut sent: Vec<String> = calls.iter().map(|(call, _)| call.clone()).collect();
    received.sort();
    sent.sort();
    assert_eq!(received, sent, "the PSP received the calls till recorded");
    for entry in &log {
        assert_eq!((&entry["stripe_version"], &entry["served_version"]), (&json!(pinned), &json!(pinned)), "{entry}");
    }

    // The charges: no redirects for the token one, the suffix on both.
    let token_pi = intent_of(&app, token["checkout_id"].as_str().unwrap());
    let pi = app.sandbox_get(&format!("/v1/payment_intents/{token_pi}")).await;
    assert_eq!(pi["automatic_payment_methods"], json!({"enabled": true, "allow_redirects": "never"}));
    assert_eq!(pi["statement_descriptor_suffix"], SUFFIX);
    let session_pi = intent_of(&app, hosted["checkout_id"].as_str().unwrap());
    let pi = app.sandbox_get(&format!("/v1/payment_intents/{session_pi}")).await;
    assert_eq!(pi["statement_descriptor_suffix"], SUFFIX);

    // The dashboard shows the version beside each call.
    let browser = sign_in(&app).await;
    let page = browser.page(&format!("/admin/payments/{}", token["checkout_id"].as_str().unwrap())).await;
    assert!(page.contains("Stripe-Version") && page.contains(&pinned), "the payment page shows the version");
}
