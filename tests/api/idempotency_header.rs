//! The `Idempotency-Key` header on POSTs: replay, mismatch, in flight, and
//! not storing validation failures.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{hosted_body, spawn_app};

#[tokio::test]
async fn the_four_cases_of_the_idempotency_key() {
    let app = spawn_app().await;
    let body = json!({"url": "https://shop.example/hooks"});
    // 1. First use: runs and is stored.
    let first = app.post_json("/v1/webhook_endpoints", &body, Some("key-1")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    // 2. Same key, same body: the stored answer, not a second endpoint.
    let again = app.post_json("/v1/webhook_endpoints", &body, Some("key-1")).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["Idempotent-Replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_endpoints"), 1);
    // 3. Same key, another body: 422.
    let other = app.post_json("/v1/webhook_endpoints", &json!({"url": "https://other.example"}), Some("key-1")).await;
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.json::<Value>().await.unwrap()["error"]["type"], "idempotency_error");
    // 4. A validation failure is not stored: the key can be used again, fixed.
    let bad = app.post_json("/v1/webhook_endpoints", &json!({"url": "ftp://x"}), Some("key-2")).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let fixed = app.post_json("/v1/webhook_endpoints", &json!({"url": "https://ok.example"}), Some("key-2")).await;
    assert_eq!(fixed.status(), StatusCode::CREATED);
    // Keys belong to one API key: another merchant key does not see them.
    let other_key = app.ctx.db.write_now(|tx| till::api_keys::create(tx, "other")).unwrap().key;
    let resp = app
        .client
        .post(format!("{}/v1/webhook_endpoints", app.address))
        .bearer_auth(other_key)
        .header("Idempotency-Key", "key-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(resp.headers().get("Idempotent-Replayed").is_none());
    let too_long = app.post_json("/v1/webhook_endpoints", &body, Some(&"k".repeat(256))).await;
    assert_eq!(too_long.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_key_still_in_flight_is_refused_with_409() {
    let app = spawn_app().await;
    // Slow the PSP so the first request is still running when the others come.
    app.set_faults(json!({"latency_ms": 400})).await;
    let body = hosted_body(&[("seller_a", "5.00", "USD")]);
    let send = || app.post_json("/v1/payments", &body, Some("same-key"));
    let responses = futures_util::future::join_all((0..8).map(|_| send())).await;
    let statuses: Vec<StatusCode> = responses.iter().map(|r| r.status()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    for resp in responses.into_iter().filter(|r| r.status() != StatusCode::CREATED) {
        assert_eq!(resp.status(), StatusCode::CONFLICT);
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], "idempotency_key_in_use");
    }
    // Once finished, the same key replays the answer.
    let replay = send().await;
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(replay.headers()["Idempotent-Replayed"], "true");
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_events"), 1);
}
