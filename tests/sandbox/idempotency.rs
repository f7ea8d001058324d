//! `Idempotency-Key`: replay, mismatch, in use, and what is not stored.

use serde_json::json;

use crate::helpers::{SECRET_KEY, json_with_status, spawn_sandbox};

const SESSION: &[(&str, &str)] = &[
    ("mode", "payment"),
    ("success_url", "https://shop.example/ok"),
    ("line_items[0][price_data][currency]", "usd"),
    ("line_items[0][price_data][unit_amount]", "700"),
    ("line_items[0][price_data][product_data][name]", "Mug"),
    ("line_items[0][quantity]", "1"),
];

#[tokio::test]
async fn the_same_key_and_body_replays_the_stored_response() {
    let sb = spawn_sandbox().await;
    let first = sb.post("/v1/checkout/sessions", SESSION, Some("key-1")).await;
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = json_with_status(first, 200).await;
    let second = sb.post("/v1/checkout/sessions", SESSION, Some("key-1")).await;
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let second = json_with_status(second, 200).await;
    assert_eq!(first, second, "the same session, not a new one");
}

#[tokio::test]
async fn the_same_key_with_other_params_is_an_idempotency_error() {
    let sb = spawn_sandbox().await;
    json_with_status(sb.post("/v1/checkout/sessions", SESSION, Some("key-2")).await, 200).await;
    let mut other = SESSION.to_vec();
    other[3] = ("line_items[0][price_data][unit_amount]", "701");
    let body = json_with_status(sb.post("/v1/checkout/sessions", &other, Some("key-2")).await, 400).await;
    assert_eq!(body["error"]["type"], "idempotency_error");
    let elsewhere = sb.post("/v1/payment_intents", &[("amount", "700")], Some("key-2")).await;
    assert_eq!(json_with_status(elsewhere, 400).await["error"]["type"], "idempotency_error");
}

#[tokio::test]
async fn a_key_in_use_is_a_409() {
    let sb = spawn_sandbox().await;
    sb.set_faults(json!({"latency_ms": 700})).await;
    let (a, b) = tokio::join!(sb.post("/v1/checkout/sessions", SESSION, Some("key-3")), async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        sb.post("/v1/checkout/sessions", SESSION, Some("key-3")).await
    });
    assert_eq!(a.status(), 200);
    let body = json_with_status(b, 409).await;
    assert_eq!(body["error"]["type"], "idempotency_error");
    assert_eq!(body["error"]["code"], "idempotency_key_in_use");
}

#[tokio::test]
async fn validation_failures_are_not_stored() {
    let sb = spawn_sandbox().await;
    let bad = sb.post("/v1/checkout/sessions", &SESSION[..2], Some("key-4")).await;
    json_with_status(bad, 400).await;
    let good = sb.post("/v1/checkout/sessions", SESSION, Some("key-4")).await;
    assert!(good.headers().get("idempotent-replayed").is_none());
    json_with_status(good, 200).await;
}

#[tokio::test]
async fn concurrent_requests_with_one_key_do_the_work_once() {
    let sb = spawn_sandbox().await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let request = sb
            .client
            .post(sb.url("/v1/checkout/sessions"))
            .bearer_auth(SECRET_KEY)
            .header("Idempotency-Key", "key-5")
            .form(SESSION);
        tasks.spawn(async move { request.send().await.unwrap() });
    }
    let mut ids = Vec::new();
    while let Some(response) = tasks.join_next().await {
        let response = response.unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        match status {
            200 => ids.push(body["id"].as_str().unwrap().to_string()),
            409 => assert_eq!(body["error"]["code"], "idempotency_key_in_use"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "one session: {ids:?}");
}
