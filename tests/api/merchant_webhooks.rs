//! Webhooks to the shop, signed per Standard Webhooks and delivered at
//! least once through the queue.

use serde_json::{Value, json};

use crate::helpers::{Receiver, spawn_app_with};

fn verify(secret: &str, r: &crate::helpers::Received) {
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, r.header(name).unwrap_or_else(|| panic!("{name}")).parse().unwrap());
    }
    standardwebhooks::Webhook::new(secret).unwrap().verify(r.body.as_bytes(), &headers).expect("signature verifies");
    let forged = r.body.replace("SUCCESS", "FAILED");
    assert!(standardwebhooks::Webhook::new(secret).unwrap().verify(forged.as_bytes(), &headers).is_err());
}

#[tokio::test]
async fn the_shop_is_told_of_every_order_and_checkout_with_verifiable_signatures() {
    let app = spawn_app_with(|s| {
        s.webhooks.backoff_base_ms = 10;
        s.webhooks.backoff_cap_ms = 50;
    })
    .await;
    // The shop's endpoint fails twice before it works: deliveries are retried.
    let receiver = Receiver::spawn(2).await;
    let endpoint: Value =
        app.post_json("/v1/webhook_endpoints", &json!({"url": receiver.url}), None).await.json().await.unwrap();
    let secret = endpoint["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let listed = app.get_json("/v1/webhook_endpoints").await;
    assert!(listed["data"][0].get("secret").is_none(), "the secret is shown once");

    let checkout = app.create_hosted(&[("seller_a", "25.00", "USD"), ("seller_b", "10.00", "USD")]).await;
    app.pay(checkout["redirect_url"].as_str().unwrap(), "4242424242424242").await;
    app.wait_until_done(checkout["checkout_id"].as_str().unwrap()).await;

    let got = receiver
        .wait_for("three delivered events", |all| {
            let ok: std::collections::HashSet<_> =
                all.iter().map(|r| r.header("webhook-id").unwrap().to_string()).collect();
            ok.len() >= 3 && all.len() >= 5
        })
        .await;
    let mut types: Vec<String> = got.iter().map(|r| r.json()["type"].as_str().unwrap().to_string()).collect();
    types.sort();
    types.dedup();
    assert_eq!(types, ["checkout.completed", "payment_order.succeeded"]);
    for r in &got {
        verify(&secret, r);
        let body = r.json();
        assert!(body["timestamp"].is_string());
    }
    let succeeded: Vec<Value> =
        got.iter().map(|r| r.json()).filter(|b| b["type"] == "payment_order.succeeded").collect();
    assert_eq!(succeeded[0]["data"]["status"], "SUCCESS");
    // The receiver answers before till records the delivery: wait for the books.
    let started = std::time::Instant::now();
    while app.count("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'delivered'") < 3 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "deliveries never recorded");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.count("SELECT SUM(attempts) FROM webhook_deliveries"), 5, "two failures retried");
}

#[tokio::test]
async fn declines_are_sent_as_failed_orders_only_to_endpoints_that_want_them() {
    let app = spawn_app_with(|_| {}).await;
    let all = Receiver::spawn(0).await;
    let failures_only = Receiver::spawn(0).await;
    app.post_json("/v1/webhook_endpoints", &json!({"url": all.url}), None).await;
    app.post_json(
        "/v1/webhook_endpoints",
        &json!({"url": failures_only.url, "enabled_events": ["payment_order.failed"]}),
        None,
    )
    .await;
    let bad = app
        .post_json("/v1/webhook_endpoints", &json!({"url": all.url, "enabled_events": ["payment.nope"]}), None)
        .await;
    assert_eq!(bad.status(), reqwest::StatusCode::BAD_REQUEST);

    let body = crate::helpers::token_body("pm_card_chargeDeclined", &[("seller_a", "5.00", "USD")]);
    let created: Value = app.post_payment(&body).await.json().await.unwrap();
    app.wait_until_done(created["checkout_id"].as_str().unwrap()).await;
    let got = failures_only.wait_for("the failure", |r| !r.is_empty()).await;
    assert_eq!(got[0].json()["type"], "payment_order.failed");
    assert_eq!(got[0].json()["data"]["failure_code"], "card_declined");
    all.wait_for("failure and completion", |r| r.len() >= 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(failures_only.all().len(), 1, "not sent checkout.completed");
}
