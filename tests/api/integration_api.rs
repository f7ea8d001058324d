//! What a shop's developer integrates with (issue 18): descriptions and
//! metadata on checkouts and orders, the checkout's status, webhook
//! endpoints managed (read, change, disable, delete, rotate the secret),
//! every event stored, listed and sent again, deliveries with their
//! attempts, and sellers created by their first payment.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    Received, Receiver, TestApp, intent_of, session_id_of, spawn_app, spawn_app_with, token_body, uuid,
};

async fn fast_webhooks() -> TestApp {
    spawn_app_with(|s| {
        s.webhooks.backoff_base_ms = 10;
        s.webhooks.backoff_cap_ms = 50;
    })
    .await
}

fn verifies(secret: &str, r: &Received) -> bool {
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, r.header(name).unwrap().parse().unwrap());
    }
    standardwebhooks::Webhook::new(secret).unwrap().verify(r.body.as_bytes(), &headers).is_ok()
}

async fn send(app: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = app.client.request(method, format!("{}{path}", app.address)).bearer_auth(&app.api_key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Polls `check` until it holds (20 s at most).
async fn eventually<F: AsyncFn() -> bool>(what: &str, check: F) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(20), "never: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn described_body() -> Value {
    let mut body = crate::helpers::hosted_body(&[("seller_a", "25.00", "USD"), ("seller_b", "10.00", "USD")]);
    body["description"] = json!("Order 1001 at the mug shop");
    body["metadata"] = json!({"order_number": "1001", "channel": "web"});
    body["orders"][0]["description"] = json!("Blue mug, 350 ml");
    body["orders"][0]["metadata"] = json!({"sku": "MUG-BLUE", "channel": "app"});
    body
}

#[tokio::test]
async fn descriptions_and_metadata_are_echoed_sent_to_the_psp_and_found_by_metadata() {
    let app = spawn_app().await;
    let body = described_body();
    let resp = app.post_payment(&body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let checkout: Value = resp.json().await.unwrap();
    assert_eq!(checkout["description"], "Order 1001 at the mug shop");
    assert_eq!(checkout["metadata"], json!({"order_number": "1001", "channel": "web"}));
    assert_eq!(checkout["orders"][0]["description"], "Blue mug, 350 ml");
    assert_eq!(checkout["orders"][0]["metadata"], json!({"sku": "MUG-BLUE", "channel": "app"}));
    assert_eq!(checkout["orders"][1]["description"], Value::Null);
    assert_eq!(checkout["orders"][1]["metadata"], json!({}));
    assert_eq!(checkout["status"], "open");

    // The buyer reads the order's description on the hosted page; the other
    // order has none of its own and shows the checkout's.
    let redirect = checkout["redirect_url"].as_str().unwrap();
    let page = app.client.get(redirect).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Blue mug, 350 ml") && page.contains("Order 1001 at the mug shop"), "{page}");
    let session = app.sandbox_get(&format!("/v1/checkout/sessions/{}", session_id_of(redirect))).await;
    assert_eq!(session["metadata"]["order_number"], "1001");
    assert_eq!(session["metadata"]["checkout_id"], checkout["checkout_id"]);

    app.pay(redirect, "4242424242424242").await;
    let checkout_id = checkout["checkout_id"].as_str().unwrap();
    let done = app.wait_until_done(checkout_id).await;
    assert_eq!(done["status"], "succeeded");
    let intent = app.sandbox_get(&format!("/v1/payment_intents/{}", intent_of(&app, checkout_id))).await;
    assert_eq!(intent["metadata"]["order_number"], "1001", "{intent}");

    // Found by a metadata value: the checkout's reaches both its orders, an
    // order's own wins over the checkout's.
    let found = app.get_json("/v1/payments?metadata[order_number]=1001").await;
    assert_eq!(found["data"].as_array().unwrap().len(), 2, "{found}");
    let found = app.get_json("/v1/payments?metadata%5Bchannel%5D=app").await;
    assert_eq!(found["data"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["data"][0]["payment_order_id"], body["orders"][0]["payment_order_id"]);
    let both = app.get_json("/v1/payments?metadata[order_number]=1001&metadata[channel]=web").await;
    assert_eq!(both["data"].as_array().unwrap().len(), 1, "{both}");
    let none = app.get_json("/v1/payments?metadata[order_number]=1002").await;
    assert_eq!(none["data"], json!([]));
    for bad in ["metadata=1001", "metadata[a][b]=1", "metadata[]=1"] {
        assert_eq!(app.get(&format!("/v1/payments?{bad}")).await.status(), StatusCode::BAD_REQUEST, "{bad}");
    }

    // Every event echoes them.
    let events = app.get_json("/v1/events?type=payment_order.succeeded").await;
    let data: Vec<&Value> = events["data"].as_array().unwrap().iter().map(|e| &e["data"]).collect();
    assert!(data.iter().any(|d| d["description"] == "Blue mug, 350 ml" && d["metadata"]["sku"] == "MUG-BLUE"));
    let completed = app.get_json("/v1/events?type=checkout.completed").await;
    assert_eq!(completed["data"][0]["data"]["metadata"]["order_number"], "1001");
}

#[tokio::test]
async fn a_token_charge_carries_the_orders_description_and_merged_metadata() {
    let app = spawn_app().await;
    let mut body = token_body("pm_card_visa", &[("seller_a", "5.00", "USD")]);
    body["metadata"] = json!({"order_number": "77", "channel": "web"});
    body["orders"][0]["description"] = json!("Green teapot");
    body["orders"][0]["metadata"] = json!({"channel": "pos"});
    let created: Value = app.post_payment(&body).await.json().await.unwrap();
    let checkout_id = created["checkout_id"].as_str().unwrap();
    assert_eq!(app.wait_until_done(checkout_id).await["status"], "succeeded");
    let intent = app.sandbox_get(&format!("/v1/payment_intents/{}", intent_of(&app, checkout_id))).await;
    assert_eq!(intent["description"], "Green teapot");
    assert_eq!(intent["metadata"]["order_number"], "77");
    assert_eq!(intent["metadata"]["channel"], "pos", "the order's own value wins");
    assert_eq!(intent["metadata"]["payment_order_id"], body["orders"][0]["payment_order_id"]);
}

#[tokio::test]
async fn bad_descriptions_and_metadata_are_refused_with_nothing_stored() {
    let app = spawn_app().await;
    let many: serde_json::Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
    let psp_too_many: serde_json::Map<String, Value> = (0..48).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        ("description", json!("x".repeat(501)), "description"),
        ("description", json!(""), "description"),
        ("description", json!("a\u{0}b"), "description"),
        ("description", json!(12), "description"),
        ("metadata", json!({"n": 1001}), "metadata.n"),
        ("metadata", json!({"n": null}), "metadata.n"),
        ("metadata", json!({"n": {"nested": "x"}}), "metadata.n"),
        ("metadata", json!({"n": "x".repeat(501)}), "metadata.n"),
        ("metadata", json!({"k".repeat(41): "x"}), "metadata"),
        ("metadata", json!({"a[b]": "x"}), "metadata.a[b]"),
        ("metadata", json!({"checkout_id": "x"}), "metadata.checkout_id"),
        ("metadata", Value::Object(many), "metadata"),
        ("metadata", Value::Object(psp_too_many), "metadata"),
        ("metadata", json!(["x"]), "metadata"),
    ];
    for (field, value, param) in cases {
        let mut body = crate::helpers::hosted_body(&[("seller_a", "5.00", "USD")]);
        body[field] = value.clone();
        let resp = app.post_payment(&body).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{field}: {value}");
        let error: Value = resp.json().await.unwrap();
        assert!(error["error"]["param"].as_str().unwrap_or_default().starts_with(param), "{field}: {error}");
        let mut on_order = crate::helpers::hosted_body(&[("seller_a", "5.00", "USD")]);
        on_order["orders"][0][field] = value.clone();
        let resp = app.post_payment(&on_order).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "orders[0].{field}: {value}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_events"), 0, "nothing stored");
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_order_metadata"), 0);
}

#[tokio::test]
async fn a_declined_checkout_is_failed_and_a_paid_one_succeeded_in_the_object_and_the_event() {
    let app = fast_webhooks().await;
    let receiver = Receiver::spawn(0).await;
    app.post_json(
        "/v1/webhook_endpoints",
        &json!({"url": receiver.url, "enabled_events": ["checkout.completed"]}),
        None,
    )
    .await;
    // A declined card leaves a hosted session open for another try; a token charge ends.
    let body = token_body("pm_card_chargeDeclined", &[("seller_a", "5.00", "USD")]);
    let declined: Value = app.post_payment(&body).await.json().await.unwrap();
    let declined_id = declined["checkout_id"].as_str().unwrap();
    let done = app.wait_until_done(declined_id).await;
    assert_eq!((done["status"].as_str(), done["is_payment_done"].as_bool()), (Some("failed"), Some(true)));
    let paid = app.paid_checkout(&[("seller_a", "7.00", "USD")]).await;
    assert_eq!(paid["status"], "succeeded");

    let got = receiver.wait_for("two checkout.completed", |all| all.len() >= 2).await;
    let status_of = |id: &str| {
        got.iter().map(Received::json).find(|b| b["data"]["checkout_id"] == id).map(|b| b["data"]["status"].clone())
    };
    assert_eq!(status_of(declined_id), Some(json!("failed")));
    assert_eq!(status_of(paid["checkout_id"].as_str().unwrap()), Some(json!("succeeded")));
}

#[tokio::test]
async fn orders_that_end_differently_make_a_partially_succeeded_checkout() {
    let app = spawn_app().await;
    let body = token_body("pm_card_visa", &[("seller_a", "5.00", "USD"), ("seller_b", "6.00", "USD")]);
    // The second order's charge was fixed with a card that is declined (as a
    // request stored by a till that crashed before sending it would be).
    let declined = till::psp::client::PaymentIntentRequest {
        payment_order_id: body["orders"][1]["payment_order_id"].as_str().unwrap().to_string(),
        checkout_id: body["checkout_id"].as_str().unwrap().to_string(),
        seller_id: "seller_b".into(),
        amount_minor: 600,
        currency: "usd".into(),
        payment_method: "pm_card_chargeDeclined".into(),
        statement_descriptor_suffix: None,
        description: None,
        metadata: Vec::new(),
        manual_capture: false,
    }
    .build();
    app.ctx.db.write_now(|tx| till::psp::requests::fix(tx, declined.clone())).unwrap();
    let created: Value = app.post_payment(&body).await.json().await.unwrap();
    let done = app.wait_until_done(created["checkout_id"].as_str().unwrap()).await;
    let statuses: Vec<&str> =
        done["orders"].as_array().unwrap().iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["SUCCESS", "FAILED"]);
    assert_eq!(done["status"], "partially_succeeded");
    let completed = app.get_json("/v1/events?type=checkout.completed").await;
    assert_eq!(completed["data"][0]["data"]["status"], "partially_succeeded");
}

#[tokio::test]
async fn a_canceled_checkout_says_canceled() {
    let app = spawn_app().await;
    let checkout = app.create_hosted(&[("seller_a", "5.00", "USD")]).await;
    let id = checkout["checkout_id"].as_str().unwrap();
    let resp = app.post_json(&format!("/v1/checkouts/{id}/cancel"), &json!({}), None).await;
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    assert_eq!(app.wait_until_done(id).await["status"], "canceled");
}

#[tokio::test]
async fn a_webhook_endpoint_is_read_changed_disabled_and_deleted() {
    let app = fast_webhooks().await;
    let receiver = Receiver::spawn(0).await;
    let (status, created) = send(
        &app,
        reqwest::Method::POST,
        "/v1/webhook_endpoints",
        Some(json!({"url": receiver.url, "description": "the shop", "enabled_events": ["payment_order.succeeded"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/v1/webhook_endpoints/{id}");
    let read = app.get_json(&path).await;
    assert_eq!((read["description"].as_str(), read["status"].as_str()), (Some("the shop"), Some("enabled")));
    assert!(read.get("secret").is_none(), "the secret is shown once");
    assert_eq!(read["enabled_events"], json!(["payment_order.succeeded"]));

    let (status, changed) =
        send(&app, reqwest::Method::PATCH, &path, Some(json!({"enabled_events": ["*"], "description": null}))).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!((changed["enabled_events"].clone(), changed["description"].clone()), (json!(["*"]), Value::Null));
    for bad in [
        json!({"url": "ftp://x"}),
        json!({"enabled_events": []}),
        json!({"enabled_events": ["nope"]}),
        json!({"description": "x".repeat(501)}),
        json!({"disabled": "yes"}),
        json!({"secret": "whsec_mine"}),
    ] {
        let (status, _) = send(&app, reqwest::Method::POST, &path, Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(app.get_json(&path).await["enabled_events"], json!(["*"]), "nothing changed by a bad request");

    // Disabled: nothing is sent; enabled again: sent.
    let (_, disabled) = send(&app, reqwest::Method::POST, &path, Some(json!({"disabled": true}))).await;
    assert_eq!(disabled["status"], "disabled");
    app.paid_checkout(&[("seller_a", "5.00", "USD")]).await;
    send(&app, reqwest::Method::POST, &path, Some(json!({"disabled": false}))).await;
    app.paid_checkout(&[("seller_a", "6.00", "USD")]).await;
    let got = receiver.wait_for("the second checkout's events", |all| all.len() >= 2).await;
    assert!(got.iter().all(|r| r.json()["data"]["amount"] != "5.00"), "nothing sent while disabled");

    // Deleted: 404, and nothing more arrives.
    let (status, deleted) = send(&app, reqwest::Method::DELETE, &path, None).await;
    assert_eq!((status, deleted["deleted"].as_bool()), (StatusCode::OK, Some(true)));
    assert_eq!(app.get(&path).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(send(&app, reqwest::Method::DELETE, &path, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get_json("/v1/webhook_endpoints").await["data"], json!([]));
    let before = receiver.all().len();
    app.paid_checkout(&[("seller_a", "7.00", "USD")]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.all().len(), before, "a deleted endpoint gets nothing more");
    assert_eq!(app.get(&format!("{path}/deliveries")).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deleting_an_endpoint_cancels_its_pending_deliveries() {
    let app = spawn_app_with(|s| {
        s.webhooks.backoff_base_ms = 60_000;
        s.webhooks.backoff_cap_ms = 60_000;
    })
    .await;
    let failing = Receiver::spawn(usize::MAX).await;
    let created: Value =
        app.post_json("/v1/webhook_endpoints", &json!({"url": failing.url}), None).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    app.paid_checkout(&[("seller_a", "5.00", "USD")]).await;
    failing.wait_for("a first attempt of both events", |all| all.len() >= 2).await;
    let list = format!("/v1/webhook_endpoints/{id}/deliveries");
    // The receiver answers before till records the attempt and the queue its next try.
    eventually("both attempts recorded with their next try", || async {
        let d = app.get_json(&list).await;
        d["data"].as_array().is_some_and(|all| all.len() == 2 && all.iter().all(|d| d["next_attempt_at_ms"].is_i64()))
    })
    .await;
    let deliveries = app.get_json(&list).await;
    let first = &deliveries["data"][0];
    assert_eq!(first["status"], "pending");
    assert!(first["next_attempt_at_ms"].as_i64().is_some(), "{first}");
    let attempt = &first["attempts"][0];
    assert_eq!((attempt["succeeded"].as_bool(), attempt["http_status"].as_i64()), (Some(false), Some(500)));
    assert!(attempt["latency_ms"].as_i64().is_some() && attempt["error"].is_string());

    assert_eq!(
        send(&app, reqwest::Method::DELETE, &format!("/v1/webhook_endpoints/{id}"), None).await.0,
        StatusCode::OK
    );
    let statuses: Vec<String> = app.column("SELECT status FROM webhook_deliveries");
    assert!(statuses.iter().all(|s| s == "canceled"), "{statuses:?}");
    // Their jobs, once due, end without a request and without a dead letter.
    app.execute("UPDATE jobs SET run_at_ms = 0 WHERE kind = 'deliver_webhook' AND status = 'queued'").unwrap();
    app.ctx.queue_wake.notify_one();
    eventually("the jobs end", || async {
        app.count("SELECT COUNT(*) FROM jobs WHERE kind = 'deliver_webhook' AND status <> 'done'") == 0
    })
    .await;
    assert_eq!(failing.all().len(), 2, "nothing sent after the delete");
    assert_eq!(app.count("SELECT COUNT(*) FROM alerts WHERE kind = 'dead_letter'"), 0);
}

#[tokio::test]
async fn a_rotated_secret_verifies_with_both_keys_for_24_hours() {
    let app = fast_webhooks().await;
    let receiver = Receiver::spawn(0).await;
    let created: Value =
        app.post_json("/v1/webhook_endpoints", &json!({"url": receiver.url}), None).await.json().await.unwrap();
    let (id, old) = (created["id"].as_str().unwrap(), created["secret"].as_str().unwrap().to_string());
    let (status, rotated) =
        send(&app, reqwest::Method::POST, &format!("/v1/webhook_endpoints/{id}/rotate_secret"), None).await;
    assert_eq!(status, StatusCode::OK);
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert!(new.starts_with("whsec_") && new != old);
    let until = rotated["previous_secret_expires_at_ms"].as_i64().unwrap();
    let in_24h = chrono::Utc::now().timestamp_millis() + 24 * 3600 * 1000;
    assert!((in_24h - until).abs() < 60_000, "24 h");

    app.paid_checkout(&[("seller_a", "5.00", "USD")]).await;
    let got = receiver.wait_for("the events", |all| all.len() >= 2).await;
    for r in &got {
        assert_eq!(r.header("webhook-signature").unwrap().split(' ').count(), 2);
        assert!(verifies(&new, r) && verifies(&old, r), "both keys verify");
    }
    // Once the 24 h are over, only the new secret signs.
    app.execute("UPDATE webhook_endpoints SET previous_secret_expires_at_ms = 1").unwrap();
    app.paid_checkout(&[("seller_a", "6.00", "USD")]).await;
    let got = receiver.wait_for("the later events", |all| all.len() >= 4).await;
    for r in &got[2..] {
        assert!(verifies(&new, r) && !verifies(&old, r));
    }
    assert_eq!(
        app.get_json(&format!("/v1/webhook_endpoints/{id}")).await["previous_secret_expires_at_ms"],
        Value::Null
    );
    let missing = send(&app, reqwest::Method::POST, "/v1/webhook_endpoints/we_nope/rotate_secret", None).await;
    assert_eq!(missing.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_event_is_stored_listed_and_resent_with_the_same_webhook_id() {
    let app = fast_webhooks().await;
    // No endpoint yet: the events are stored all the same.
    let first = app.paid_checkout(&[("seller_a", "5.00", "USD")]).await;
    app.paid_checkout(&[("seller_b", "6.00", "USD")]).await;
    let all = app.get_json("/v1/events?limit=100").await;
    assert_eq!(all["data"].as_array().unwrap().len(), 4, "two orders and two checkouts: {all}");
    let page = app.get_json("/v1/events?limit=3").await;
    assert_eq!((page["data"].as_array().unwrap().len(), page["has_more"].as_bool()), (3, Some(true)));
    let last = page["data"][2]["id"].as_str().unwrap();
    let rest = app.get_json(&format!("/v1/events?limit=3&starting_after={last}")).await;
    assert_eq!((rest["data"].as_array().unwrap().len(), rest["has_more"].as_bool()), (1, Some(false)));
    let completed = app.get_json("/v1/events?type=checkout.completed").await;
    assert_eq!(completed["data"].as_array().unwrap().len(), 2);
    assert_eq!(completed["data"][1]["data"]["checkout_id"], first["checkout_id"], "newest first");
    let later = chrono::Utc::now().timestamp() + 60;
    assert_eq!(app.get_json(&format!("/v1/events?created[gte]={later}")).await["data"], json!([]));
    let window =
        app.get_json("/v1/events?created[gte]=2020-01-01T00:00:00Z&created%5Blt%5D=2999-01-01T00:00:00Z").await;
    assert_eq!(window["data"].as_array().unwrap().len(), 4);
    for bad in ["type=nope", "created[gte]=yesterday", "limit=0", "limit=101", "color=blue"] {
        assert_eq!(app.get(&format!("/v1/events?{bad}")).await.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let event_id = completed["data"][1]["id"].as_str().unwrap().to_string();
    let one = app.get_json(&format!("/v1/events/{event_id}")).await;
    assert_eq!((one["type"].as_str(), one["data"]["status"].as_str()), (Some("checkout.completed"), Some("succeeded")));
    assert_eq!(app.get("/v1/events/msg_nope").await.status(), StatusCode::NOT_FOUND);

    // An endpoint made later gets an old event when it is resent: same id.
    let receiver = Receiver::spawn(0).await;
    let endpoint: Value =
        app.post_json("/v1/webhook_endpoints", &json!({"url": receiver.url}), None).await.json().await.unwrap();
    let endpoint_id = endpoint["id"].as_str().unwrap();
    let (status, queued) = send(&app, reqwest::Method::POST, &format!("/v1/events/{event_id}/resend"), None).await;
    assert_eq!(status, StatusCode::OK, "{queued}");
    assert_eq!(queued["data"][0]["endpoint_id"], endpoint_id);
    let got = receiver.wait_for("the resent event", |all| !all.is_empty()).await;
    assert_eq!(got[0].header("webhook-id"), Some(event_id.as_str()));
    assert!(verifies(endpoint["secret"].as_str().unwrap(), &got[0]));
    // Again, to that one endpoint: it arrives a second time, as the same
    // event. While the first attempt is still being recorded, a resend is
    // refused (409 delivery_in_flight, nothing queued) rather than lost.
    let body = json!({"endpoint_id": endpoint_id});
    let started = std::time::Instant::now();
    loop {
        let path = format!("/v1/events/{event_id}/resend");
        let (status, answer) = send(&app, reqwest::Method::POST, &path, Some(body.clone())).await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        assert_eq!(answer["error"]["code"], "delivery_in_flight", "{answer}");
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the first attempt never ended");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let got = receiver.wait_for("the event twice", |all| all.len() >= 2).await;
    assert_eq!(got[1].header("webhook-id"), Some(event_id.as_str()));
    assert_eq!(got[0].body, got[1].body, "the same body");
    eventually("two attempts recorded", || async {
        let d = app.get_json(&format!("/v1/webhook_endpoints/{endpoint_id}/deliveries")).await;
        d["data"][0]["attempts"].as_array().is_some_and(|a| a.len() == 2) && d["data"][0]["status"] == "delivered"
    })
    .await;
    let health = app.get_json(&format!("/v1/webhook_endpoints/{endpoint_id}")).await["health"].clone();
    assert!(health["last_success_at"].is_string() && health["failures_in_a_row"] == 0, "{health}");
    for (path, body, want) in [
        ("/v1/events/msg_nope/resend", json!({}), StatusCode::NOT_FOUND),
        (&format!("/v1/events/{event_id}/resend") as &str, json!({"endpoint_id": "we_nope"}), StatusCode::BAD_REQUEST),
        (&format!("/v1/events/{event_id}/resend"), json!({"endpoint": "x"}), StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(send(&app, reqwest::Method::POST, path, Some(body)).await.0, want, "{path}");
    }
}

#[tokio::test]
async fn an_endpoint_failing_for_three_days_is_disabled_with_an_alert() {
    let app = fast_webhooks().await;
    let failing = Receiver::spawn(usize::MAX).await;
    let created: Value =
        app.post_json("/v1/webhook_endpoints", &json!({"url": failing.url}), None).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    app.paid_checkout(&[("seller_a", "5.00", "USD")]).await;
    failing.wait_for("a failed attempt", |all| !all.is_empty()).await;
    eventually("an attempt recorded", || async { app.count("SELECT COUNT(*) FROM webhook_delivery_attempts") > 0 })
        .await;
    // Its failures began three days ago (and it never succeeded since).
    app.execute("UPDATE webhook_delivery_attempts SET attempted_at = '2001-01-01T00:00:00.000Z'").unwrap();
    eventually("the endpoint disabled", || async {
        app.get_json(&format!("/v1/webhook_endpoints/{id}")).await["status"] == "disabled"
    })
    .await;
    let endpoint = app.get_json(&format!("/v1/webhook_endpoints/{id}")).await;
    assert!(endpoint["disabled_reason"].as_str().unwrap().contains("every delivery failed"), "{endpoint}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM alerts WHERE kind = 'webhook_endpoint_disabled' AND status = 'open'"),
        1
    );
    let alerts = app.get_json("/v1/alerts").await;
    assert!(alerts.to_string().contains(&id));
}

#[tokio::test]
async fn events_older_than_the_retention_go_with_their_deliveries() {
    let app = fast_webhooks().await;
    let receiver = Receiver::spawn(0).await;
    app.post_json("/v1/webhook_endpoints", &json!({"url": receiver.url}), None).await;
    app.paid_checkout(&[("seller_a", "5.00", "USD")]).await;
    eventually("both delivered", || async {
        app.count("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'delivered'") == 2
    })
    .await;
    let old: String = app.value("SELECT id FROM merchant_events WHERE event_type = 'checkout.completed'");
    app.execute(&format!("UPDATE merchant_events SET created_at = '2001-01-01T00:00:00.000Z' WHERE id = '{old}'"))
        .unwrap();
    let removed = till::jobs::tasks::events_cleanup(&app.ctx).await.unwrap();
    assert_eq!(removed, 1);
    assert_eq!(app.get(&format!("/v1/events/{old}")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.count("SELECT COUNT(*) FROM merchant_events"), 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_deliveries"), 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_delivery_attempts"), 1);
}

#[tokio::test]
async fn a_paid_seller_has_a_record_and_a_payout_needs_no_currency_when_it_holds_one() {
    let app = spawn_app_with(|s| s.payouts.hold_days = 0).await;
    app.paid_checkout(&[("seller_new", "20.00", "USD")]).await;
    let seller = app.get_json("/v1/sellers/seller_new").await;
    assert_eq!((seller["seller_id"].as_str(), seller["name"].clone()), (Some("seller_new"), Value::Null));
    let listed = app.get_json("/v1/sellers").await;
    assert!(listed["data"].as_array().unwrap().iter().any(|s| s["seller_id"] == "seller_new"), "{listed}");
    // Named and given a destination later; a PUT without a name keeps it.
    let put = |body: Value| {
        let app = &app;
        async move {
            app.client
                .put(format!("{}/v1/sellers/seller_new", app.address))
                .bearer_auth(&app.api_key)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(put(json!({"name": "New Seller"})).await.status(), StatusCode::OK);
    let kept: Value = put(json!({"payout_destination": "acct_new"})).await.json().await.unwrap();
    assert_eq!((kept["name"].as_str(), kept["payout_destination"].as_str()), (Some("New Seller"), Some("acct_new")));
    assert_eq!(put(json!({"name": ""})).await.status(), StatusCode::BAD_REQUEST);

    let resp = app.post_json("/v1/payouts", &json!({"seller_id": "seller_new", "amount": "1.00"}), None).await;
    assert_eq!(resp.status(), StatusCode::CREATED, "{}", resp.text().await.unwrap());
    app.paid_checkout(&[("seller_new", "20.00", "EUR")]).await;
    let resp = app.post_json("/v1/payouts", &json!({"seller_id": "seller_new", "amount": "1.00"}), None).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let error: Value = resp.json().await.unwrap();
    assert_eq!(error["error"]["param"], "currency", "{error}");
    let id = uuid();
    let resp = app.post_json("/v1/payouts", &json!({"seller_id": id, "amount": "1.00"}), None).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "an unknown seller");
}

#[tokio::test]
async fn the_dashboard_finds_payments_by_description_and_metadata_and_manages_webhooks() {
    let app = fast_webhooks().await;
    let receiver = Receiver::spawn(0).await;
    let endpoint: Value =
        app.post_json("/v1/webhook_endpoints", &json!({"url": receiver.url}), None).await.json().await.unwrap();
    let endpoint_id = endpoint["id"].as_str().unwrap();
    let body = described_body();
    let created: Value = app.post_payment(&body).await.json().await.unwrap();
    let order = body["orders"][0]["payment_order_id"].as_str().unwrap();
    let other = body["orders"][1]["payment_order_id"].as_str().unwrap();
    let plain = app.create_hosted(&[("seller_c", "3.00", "USD")]).await;
    let plain_order = plain["orders"][0]["payment_order_id"].as_str().unwrap();
    let browser = crate::admin::sign_in(&app).await;
    for (q, shows, hides) in [
        ("1001", vec![order, other], plain_order),
        ("MUG-BLUE", vec![order], other),
        ("blue%20MUG", vec![order], other),
        ("mug%20shop", vec![order, other], plain_order),
        ("50%25", vec![], order),
    ] {
        let page = browser.page(&format!("/admin/payments?q={q}")).await;
        for id in shows {
            assert!(page.contains(&id[..8]), "{q} finds {id}");
        }
        assert!(!page.contains(&hides[..8]), "{q} does not find {hides}");
    }

    let paid = app.pay(created["redirect_url"].as_str().unwrap(), "4242424242424242").await;
    assert_eq!(paid.status(), StatusCode::SEE_OTHER);
    receiver.wait_for("three events", |all| all.len() >= 3).await;
    eventually("delivered", || async {
        app.count("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'delivered'") == 3
    })
    .await;
    let page = browser.page("/admin/webhooks").await;
    assert!(page.contains(endpoint_id) && page.contains("checkout.completed") && page.contains("delivered"));
    let event: String = app.value("SELECT id FROM merchant_events WHERE event_type = 'checkout.completed'");
    let key = uuid();
    let (_, page) =
        browser.act(&format!("/admin/events/{event}/resend"), &[("key", &key), ("endpoint_id", endpoint_id)]).await;
    assert!(page.contains("is sent again"), "{page}");
    receiver.wait_for("the event again", |all| all.len() >= 4).await;
    assert_eq!(receiver.all()[3].header("webhook-id"), Some(event.as_str()));
    let (_, page) = browser.act(&format!("/admin/webhooks/{endpoint_id}/rotate"), &[("key", &uuid())]).await;
    assert!(page.contains("has a new secret"), "{page}");
    let (_, page) = browser.act(&format!("/admin/webhooks/{endpoint_id}/disable"), &[("key", &uuid())]).await;
    assert!(page.contains("is disabled"), "{page}");
    assert_eq!(app.get_json(&format!("/v1/webhook_endpoints/{endpoint_id}")).await["status"], "disabled");
    let (_, page) = browser.act(&format!("/admin/webhooks/{endpoint_id}/enable"), &[("key", &uuid())]).await;
    assert!(page.contains("is enabled"), "{page}");
}

#[tokio::test]
async fn a_resend_while_the_event_is_being_sent_is_refused_not_lost() {
    let app = spawn_app_with(|s| s.webhooks.timeout_ms = 10_000).await;
    // An endpoint that takes the connection and never answers: the
    // delivery's attempt stays under way.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            open.push(socket);
        }
    });
    let endpoint: Value =
        app.post_json("/v1/webhook_endpoints", &json!({"url": url}), None).await.json().await.unwrap();
    let endpoint_id = endpoint["id"].as_str().unwrap().to_string();
    app.paid_checkout(&[("seller_a", "5.00", "USD")]).await;
    let events = app.get_json("/v1/events?type=payment_order.succeeded").await;
    let event_id = events["data"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/v1/events/{event_id}/resend");
    let body = json!({"endpoint_id": endpoint_id});
    eventually("a resend refused while the attempt runs", || async {
        let (status, answer) = send(&app, reqwest::Method::POST, &path, Some(body.clone())).await;
        assert!(status == StatusCode::OK || status == StatusCode::CONFLICT, "{status} {answer}");
        status == StatusCode::CONFLICT && answer["error"]["code"] == "delivery_in_flight"
    })
    .await;
    // To every endpoint that wants it: refused as well, nothing queued.
    let (status, _) = send(&app, reqwest::Method::POST, &path, Some(json!({}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let deliveries = app.get_json(&format!("/v1/webhook_endpoints/{endpoint_id}/deliveries")).await;
    let of_event: Vec<&Value> =
        deliveries["data"].as_array().unwrap().iter().filter(|d| d["event_id"] == event_id.as_str()).collect();
    assert_eq!(of_event.len(), 1, "{deliveries}");
    assert_eq!(of_event[0]["attempts"], json!([]), "the first attempt is still under way: {deliveries}");
    held.abort();
    app.assert_ledger_ok();
}
