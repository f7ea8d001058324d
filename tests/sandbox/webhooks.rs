//! Webhooks: signed as Stripe signs, retried on failure, extra endpoints.

use crate::helpers::{Receiver, WEBHOOK_SECRET, signature_is_valid, spawn_sandbox, spawn_with};

#[tokio::test]
async fn events_are_shaped_and_signed_as_stripes() {
    let sb = spawn_sandbox().await;
    let id = sb.create_session(&[]).await["id"].as_str().unwrap().to_string();
    sb.post_json(&format!("/v1/checkout/sessions/{id}/expire"), &[], 200).await;
    let got = sb.receiver.wait_for("checkout.session.expired", &id).await;
    let e = &got.event;
    assert!(e["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(e["object"], "event");
    assert_eq!(e["livemode"], false);
    assert!(e["api_version"].is_string() && e["created"].is_i64());
    assert_eq!(e["data"]["object"]["object"], "checkout.session");
    assert!(got.signature.starts_with("t="));
    assert!(signature_is_valid(&got.signature, &got.body, WEBHOOK_SECRET));
    assert!(!signature_is_valid(&got.signature, &got.body, "whsec_other"));
    assert!(!signature_is_valid(&got.signature, &got.body.replace("expired", "complete"), WEBHOOK_SECRET));
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_the_same_event() {
    let sb = spawn_sandbox().await;
    sb.receiver.fail_next(2);
    let id = sb.create_session(&[]).await["id"].as_str().unwrap().to_string();
    sb.post_json(&format!("/v1/checkout/sessions/{id}/expire"), &[], 200).await;
    let got = sb.receiver.wait_for("checkout.session.expired", &id).await;
    assert_eq!(sb.receiver.failures_sent.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert!(signature_is_valid(&got.signature, &got.body, WEBHOOK_SECRET));
    assert_eq!(sb.receiver.events("checkout.session.expired", &id).len(), 1);
}

#[tokio::test]
async fn delivery_gives_up_after_max_attempts() {
    let sb = spawn_with(|s| s.webhook_max_attempts = 2).await;
    sb.receiver.fail_next(2);
    let id = sb.create_session(&[]).await["id"].as_str().unwrap().to_string();
    sb.post_json(&format!("/v1/checkout/sessions/{id}/expire"), &[], 200).await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(sb.receiver.failures_sent.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert!(sb.receiver.events("checkout.session.expired", &id).is_empty());
}

#[tokio::test]
async fn further_endpoints_get_their_subscribed_events_with_their_own_secret() {
    let sb = spawn_sandbox().await;
    let other = Receiver::start();
    let endpoint = sb
        .post_json(
            "/v1/webhook_endpoints",
            &[("url", other.url.as_str()), ("enabled_events[]", "checkout.session.expired")],
            200,
        )
        .await;
    assert_eq!(endpoint["object"], "webhook_endpoint");
    assert_eq!(endpoint["status"], "enabled");
    assert_eq!(endpoint["url"], other.url.as_str());
    assert_eq!(endpoint["enabled_events"][0], "checkout.session.expired");
    let secret = endpoint["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    let shown = sb.get_json(&format!("/v1/webhook_endpoints/{}", endpoint["id"].as_str().unwrap()), 200).await;
    assert!(shown.get("secret").is_none());

    let id = sb.create_session(&[]).await["id"].as_str().unwrap().to_string();
    sb.post_json(&format!("/v1/checkout/sessions/{id}/expire"), &[], 200).await;
    let got = other.wait_for("checkout.session.expired", &id).await;
    assert!(signature_is_valid(&got.signature, &got.body, secret));
    assert!(!signature_is_valid(&got.signature, &got.body, WEBHOOK_SECRET));

    let paid = sb.create_session(&[]).await["id"].as_str().unwrap().to_string();
    assert_eq!(sb.pay(&paid, "4242424242424242").await.status(), 303);
    sb.receiver.wait_for("checkout.session.completed", &paid).await;
    assert!(other.events("checkout.session.completed", &paid).is_empty(), "not subscribed");
}

#[tokio::test]
async fn endpoints_need_a_url_and_events() {
    let sb = spawn_sandbox().await;
    let body = sb.post_json("/v1/webhook_endpoints", &[("enabled_events[]", "*")], 400).await;
    assert_eq!(body["error"]["param"], "url");
    let body = sb.post_json("/v1/webhook_endpoints", &[("url", "https://x.example/h")], 400).await;
    assert_eq!(body["error"]["param"], "enabled_events");
}
