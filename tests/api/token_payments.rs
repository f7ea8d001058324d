//! Token payments: the executor charges each order separately at the PSP,
//! with the order id as the idempotency key; declines end FAILED with their
//! reason; an unreachable PSP is retried, then dead-lettered, never guessed.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with, token_body};

#[tokio::test]
async fn a_token_payment_charges_each_order_once() {
    let app = spawn_app().await;
    let body = token_body("pm_card_visa", &[("seller_a", "25.00", "USD"), ("seller_b", "1000", "JPY")]);
    let resp = app.post_payment(&body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let created: Value = resp.json().await.unwrap();
    assert!(created.get("redirect_url").is_none());
    let done = app.wait_until_done(created["checkout_id"].as_str().unwrap()).await;
    for order in done["orders"].as_array().unwrap() {
        assert_eq!(order["status"], "SUCCESS", "{order}");
        assert_eq!(order["ledger_updated"], true);
    }
    assert_eq!(app.get_json("/v1/wallets/seller_a").await["balances"][0]["balance"], "25.00");
    assert_eq!(app.get_json("/v1/wallets/seller_b").await["balances"][0]["balance"], "1000");
    let intents: Vec<String> = app.column("SELECT psp_payment_intent_id FROM payment_orders ORDER BY position");
    let first = app.sandbox_get(&format!("/v1/payment_intents/{}", intents[0])).await;
    assert_eq!(
        (first["status"].as_str(), first["amount"].as_i64(), first["currency"].as_str()),
        (Some("succeeded"), Some(2500), Some("usd"))
    );
    assert_eq!(first["metadata"]["payment_order_id"], done["orders"][0]["payment_order_id"]);
    let second = app.sandbox_get(&format!("/v1/payment_intents/{}", intents[1])).await;
    assert_eq!(second["amount"], 1000);
}

#[tokio::test]
async fn declines_fail_the_order_with_the_reason() {
    let app = spawn_app().await;
    for (token, code) in
        [("pm_card_chargeDeclined", "card_declined"), ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds")]
    {
        let resp = app.post_payment(&token_body(token, &[("seller_a", "5.00", "USD")])).await;
        let created: Value = resp.json().await.unwrap();
        let done = app.wait_until_done(created["checkout_id"].as_str().unwrap()).await;
        assert_eq!(done["orders"][0]["status"], "FAILED", "{token}");
        assert_eq!(done["orders"][0]["failure_code"], code, "{token}");
    }
    assert_eq!(app.get("/v1/wallets/seller_a").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.count("SELECT COUNT(*) FROM ledger_transactions"), 0);
    // The job finishes just after the order does; then: one attempt each, no retry.
    let started = std::time::Instant::now();
    while app.count("SELECT COUNT(*) FROM jobs WHERE status <> 'done'") > 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "jobs never finished");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.count("SELECT MAX(attempts) FROM jobs"), 1, "a decline is final, not retried");
}

#[tokio::test]
async fn an_unknown_token_fails_the_order_without_retrying() {
    let app = spawn_app().await;
    let created: Value =
        app.post_payment(&token_body("pm_nope", &[("seller_a", "5.00", "USD")])).await.json().await.unwrap();
    let done = app.wait_until_done(created["checkout_id"].as_str().unwrap()).await;
    assert_eq!(done["orders"][0]["status"], "FAILED");
    assert!(done["orders"][0]["failure_code"].as_str().is_some());
}

#[tokio::test]
async fn token_requests_are_validated() {
    let app = spawn_app().await;
    for (token, param) in [(json!(null), "payment_method.token"), (json!("card_4242"), "payment_method.token")] {
        let mut body = token_body("pm_card_visa", &[("seller_a", "5.00", "USD")]);
        body["payment_method"]["token"] = token;
        let resp = app.post_payment(&body).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["param"], param);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_events"), 0);
}

/// Issue 13.4: an amount the PSP would refuse is refused at once, twice
/// alike, with nothing stored and nothing sent to the PSP.
#[tokio::test]
async fn an_amount_above_the_psps_limit_is_refused_before_anything_is_stored() {
    let app = spawn_app().await;
    let token = token_body("pm_card_visa", &[("seller_a", "1000000.00", "USD")]);
    let hosted = crate::helpers::hosted_body(&[("seller_a", "1000000.00", "USD")]);
    for body in [&token, &token, &hosted, &hosted] {
        let resp = app.post_payment(body).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], "amount_invalid", "{err}");
        assert_eq!(err["error"]["param"], "orders[0].amount", "{err}");
        assert!(err["error"]["message"].as_str().unwrap().contains("999999.99 USD"), "{err}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_events"), 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM psp_calls"), 0);
    // The largest amount the PSP takes goes through.
    let created: Value =
        app.post_payment(&token_body("pm_card_visa", &[("seller_a", "999999.99", "USD")])).await.json().await.unwrap();
    let done = app.wait_until_done(created["checkout_id"].as_str().unwrap()).await;
    assert_eq!(done["orders"][0]["status"], "SUCCESS");
}

#[tokio::test]
async fn an_unreachable_psp_dead_letters_the_job_and_leaves_the_order_unknown() {
    let app = spawn_app_with(|s| {
        s.queue.max_attempts = 3;
        s.queue.backoff_base_ms = 5;
        s.queue.backoff_cap_ms = 20;
    })
    .await;
    app.set_faults(json!({"error_rate": 1.0})).await;
    let created: Value =
        app.post_payment(&token_body("pm_card_visa", &[("seller_a", "5.00", "USD")])).await.json().await.unwrap();
    let order_id = created["orders"][0]["payment_order_id"].as_str().unwrap().to_string();
    let started = std::time::Instant::now();
    while app.count("SELECT COUNT(*) FROM jobs WHERE status = 'dead'") == 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.count("SELECT attempts FROM jobs WHERE status = 'dead'"), 3);
    let order = app.get_json(&format!("/v1/payments/{order_id}")).await;
    assert_eq!(order["status"], "EXECUTING", "a 500 is not a decline: never guessed FAILED");
    let alerts = app.get_json("/v1/alerts").await;
    assert_eq!(alerts["data"][0]["kind"], "dead_letter", "{alerts}");

    // The PSP recovers; staff retry the dead letter; the order completes.
    app.set_faults(json!({"error_rate": 0.0})).await;
    let job_id = app.count("SELECT id FROM jobs WHERE status = 'dead'");
    assert!(app.ctx.db.write_now(|tx| till::queue::retry_dead(tx, job_id, "test")).unwrap());
    app.ctx.queue_wake.notify_one();
    let done = app.wait_until_done(created["checkout_id"].as_str().unwrap()).await;
    assert_eq!(done["orders"][0]["status"], "SUCCESS");
    assert_eq!(app.get_json("/v1/alerts").await["data"], json!([]));
}
