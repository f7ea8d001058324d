//! Injected faults: 500s before the work, timeouts after it, webhook drops
//! and duplicates, all changeable at run time.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{SECRET_KEY, json_with_status, spawn_sandbox, spawn_with};

const INTENT: &[(&str, &str)] = &[
    ("amount", "1000"),
    ("currency", "usd"),
    ("payment_method", "pm_card_visa"),
    ("confirm", "true"),
    ("automatic_payment_methods[enabled]", "true"),
    ("automatic_payment_methods[allow_redirects]", "never"),
];

#[tokio::test]
async fn faults_can_be_read_and_changed_at_run_time() {
    let sb = spawn_sandbox().await;
    let now = sb.get_json("/v1/sandbox/faults", 200).await;
    assert_eq!(now["error_rate"], 0.0);
    sb.set_faults(json!({"error_rate": 0.5, "seed": 42})).await;
    let now = sb.get_json("/v1/sandbox/faults", 200).await;
    assert_eq!((now["error_rate"].as_f64(), now["seed"].as_u64()), (Some(0.5), Some(42)));
    let form = sb.post("/v1/sandbox/faults", &[("latency_ms", "5")], None).await;
    let form = json_with_status(form, 200).await;
    assert_eq!((form["latency_ms"].as_u64(), form["error_rate"].as_f64()), (Some(5), Some(0.5)));
    let bad = sb.client.post(sb.url("/v1/sandbox/faults")).bearer_auth(SECRET_KEY).json(&json!({"error_rate": 2}));
    json_with_status(bad.send().await.unwrap(), 400).await;
    let unknown = sb.client.post(sb.url("/v1/sandbox/faults")).bearer_auth(SECRET_KEY).json(&json!({"nope": 1}));
    json_with_status(unknown.send().await.unwrap(), 400).await;
    let anonymous = sb.client.get(sb.url("/v1/sandbox/faults")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn an_injected_500_does_no_work_and_frees_the_key() {
    let sb = spawn_with(|s| s.faults.error_rate = 1.0).await;
    let failed = json_with_status(sb.post("/v1/payment_intents", INTENT, Some("k-500")).await, 500).await;
    assert_eq!(failed["error"]["type"], "api_error");
    sb.set_faults(json!({"error_rate": 0.0})).await;
    let ok = sb.post("/v1/payment_intents", INTENT, Some("k-500")).await;
    assert!(ok.headers().get("idempotent-replayed").is_none(), "nothing was stored");
    assert_eq!(json_with_status(ok, 200).await["status"], "succeeded");
    // The sandbox's own routes and the hosted page never fail.
    sb.set_faults(json!({"error_rate": 1.0})).await;
    sb.get_json("/v1/sandbox/faults", 200).await;
}

#[tokio::test]
async fn a_timeout_does_the_work_and_a_retry_with_the_key_learns_the_outcome() {
    let sb = spawn_with(|s| s.faults.timeout_rate = 1.0).await;
    let hung = sb
        .client
        .post(sb.url("/v1/payment_intents"))
        .bearer_auth(SECRET_KEY)
        .header("Idempotency-Key", "k-timeout")
        .form(INTENT)
        .timeout(Duration::from_millis(1_500))
        .send()
        .await;
    assert!(hung.unwrap_err().is_timeout());
    sb.set_faults(json!({"timeout_rate": 0.0})).await;
    let retry = sb.post("/v1/payment_intents", INTENT, Some("k-timeout")).await;
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let pi = json_with_status(retry, 200).await;
    assert_eq!(pi["status"], "succeeded");
    sb.receiver.wait_for("payment_intent.succeeded", pi["id"].as_str().unwrap()).await;
}

#[tokio::test]
async fn dropped_webhooks_never_arrive_and_duplicates_arrive_twice() {
    let sb = spawn_with(|s| s.faults.webhook_drop_rate = 1.0).await;
    let dropped = sb.post_json("/v1/payment_intents", INTENT, 200).await;
    sb.set_faults(json!({"webhook_drop_rate": 0.0, "webhook_duplicate_rate": 1.0})).await;
    let doubled = sb.post_json("/v1/payment_intents", INTENT, 200).await;
    let doubled_id = doubled["id"].as_str().unwrap();
    sb.receiver.wait_for("payment_intent.succeeded", doubled_id).await;
    for _ in 0..100 {
        if sb.receiver.events("payment_intent.succeeded", doubled_id).len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let copies = sb.receiver.events("payment_intent.succeeded", doubled_id);
    assert_eq!(copies.len(), 2);
    assert_eq!(copies[0].event["id"], copies[1].event["id"], "the same event twice");
    assert!(sb.receiver.events("payment_intent.succeeded", dropped["id"].as_str().unwrap()).is_empty());
}

#[tokio::test]
async fn delayed_webhooks_arrive_later() {
    let sb = spawn_with(|s| {
        s.faults.webhook_delay_ms = 1_000;
        s.faults.seed = 7;
    })
    .await;
    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(sb.post_json("/v1/payment_intents", INTENT, 200).await["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        sb.receiver.wait_for("payment_intent.succeeded", id).await;
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn latency_is_added_to_api_requests() {
    let sb = spawn_with(|s| s.faults.latency_ms = 300).await;
    let started = std::time::Instant::now();
    sb.get_json("/v1/payment_intents/pi_nope", 404).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
}
