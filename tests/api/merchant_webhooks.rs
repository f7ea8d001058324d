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

/// A till whose merchant webhooks may reach public addresses only (the
/// shipped default; the suite's helper allows private ones for its
/// receivers on 127.0.0.1).
async fn spawn_public_only() -> crate::helpers::TestApp {
    spawn_app_with(|s| {
        s.webhooks.allow_private_urls = false;
        s.webhooks.backoff_base_ms = 10;
        s.webhooks.backoff_cap_ms = 50;
        s.webhooks.max_attempts = 2;
    })
    .await
}

#[tokio::test]
async fn an_endpoint_in_tills_own_network_is_refused() {
    let app = spawn_public_only().await;
    let receiver = Receiver::spawn(0).await;
    let port = receiver.url.rsplit(':').next().unwrap().to_string();
    let inside = [
        receiver.url.clone(),
        format!("http://localhost:{port}"),
        "http://LOCALHOST./hooks".into(),
        "http://shop.localhost/hooks".into(),
        "http://127.1.2.3/".into(),
        "http://2130706433/".into(), // 127.0.0.1 as one number
        "http://0x7f.1/".into(),
        "http://0.0.0.0:8080/".into(),
        "http://10.1.2.3/".into(),
        "https://172.16.0.1/hooks".into(),
        "https://172.31.255.254/".into(),
        "http://192.168.1.1/".into(),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://100.64.0.1/".into(),
        "http://100.127.255.254/".into(),
        "http://224.0.0.1/".into(),
        "http://255.255.255.255/".into(),
        "http://[::1]:8080/".into(),
        "http://[::]/".into(),
        "http://[fd00::1]/".into(),
        "http://[fc00::1]/".into(),
        "http://[fe80::1]/".into(),
        "http://[ff02::1]/".into(),
        "http://[::ffff:127.0.0.1]/".into(),
        "http://[::ffff:10.0.0.1]/".into(),
        "http://[::ffff:169.254.169.254]/".into(),
        "http://user:pw@127.0.0.1/".into(),
    ];
    for url in &inside {
        let refused = app.post_json("/v1/webhook_endpoints", &json!({"url": url}), None).await;
        assert_eq!(refused.status(), reqwest::StatusCode::BAD_REQUEST, "{url}");
        let error: Value = refused.json().await.unwrap();
        assert_eq!(
            (error["error"]["code"].as_str(), error["error"]["param"].as_str()),
            (Some("url_invalid"), Some("url"))
        );
    }
    assert_eq!(app.get_json("/v1/webhook_endpoints").await["data"], json!([]), "nothing was stored");

    // Public addresses, and names that do not resolve here (the delivery
    // checks them again), are taken.
    for url in [
        "https://shop.example/hooks",
        "http://93.184.215.14/hooks",
        "https://[2606:4700::1111]/hooks",
        "http://100.128.0.1/",
    ] {
        let taken = app.post_json("/v1/webhook_endpoints", &json!({"url": url}), None).await;
        assert_eq!(taken.status(), reqwest::StatusCode::CREATED, "{url}");
    }
}

#[tokio::test]
async fn a_stored_endpoint_that_leads_inside_is_never_reached_and_its_deliveries_fail() {
    // Endpoints stored while private addresses were allowed, or a name that
    // resolved to a public address when it was created (DNS rebinding).
    let app = spawn_public_only().await;
    let receiver = Receiver::spawn(0).await;
    let port = receiver.url.rsplit(':').next().unwrap().split('/').next().unwrap().to_string();
    for url in [receiver.url.clone(), format!("http://localhost:{port}/hooks")] {
        let events = vec!["*".to_string()];
        app.ctx.db.write(move |tx| till::events::endpoints::create_endpoint(tx, &url, &events, None)).await.unwrap();
    }

    let body = crate::helpers::token_body("pm_card_visa", &[("seller_a", "5.00", "USD")]);
    let created: Value = app.post_payment(&body).await.json().await.unwrap();
    app.wait_until_done(created["checkout_id"].as_str().unwrap()).await;

    // Each delivery spends its two attempts and is dead-lettered, as any failure.
    let started = std::time::Instant::now();
    let dead = "SELECT COUNT(*) FROM jobs WHERE kind = 'deliver_webhook' AND status = 'dead'";
    while app.count(dead) < 4 {
        assert!(receiver.all().is_empty(), "till connected inside: {} requests", receiver.all().len());
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the deliveries never failed for good");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs WHERE kind = 'deliver_webhook'"), 4, "two events, two endpoints");
    assert!(receiver.all().is_empty(), "till connected inside: {} requests", receiver.all().len());
    let rows = app
        .ctx
        .db
        .read_now(|tx| {
            tx.query_map(
                "SELECT status, attempts, last_status, last_error FROM webhook_deliveries",
                till::db::params![],
                |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?, r.get::<Option<i64>>(2)?, r.get::<Option<String>>(3)?)),
            )
        })
        .unwrap();
    assert_eq!(rows.len(), 4);
    for (status, attempts, last_status, last_error) in rows {
        assert_eq!((status.as_str(), attempts, last_status), ("failed", 2, None), "its retries are spent");
        let error = last_error.unwrap_or_default();
        assert!(error.contains("public address"), "{error}");
    }
}
