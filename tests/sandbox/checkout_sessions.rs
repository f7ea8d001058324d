//! Checkout sessions: create, retrieve, expire (by request and by time).

use crate::helpers::spawn_sandbox;

#[tokio::test]
async fn a_session_is_created_as_stripe_shapes_it() {
    let sb = spawn_sandbox().await;
    let s = sb
        .create_session(&[
            ("line_items[1][price_data][currency]", "usd"),
            ("line_items[1][price_data][unit_amount]", "1000"),
            ("line_items[1][price_data][product_data][name]", "Tea"),
            ("line_items[1][quantity]", "3"),
        ])
        .await;
    let id = s["id"].as_str().unwrap();
    assert!(id.starts_with("cs_test_"));
    assert_eq!(s["object"], "checkout.session");
    assert_eq!(s["url"], sb.url(&format!("/pay/{id}")));
    assert_eq!((s["status"].as_str(), s["payment_status"].as_str()), (Some("open"), Some("unpaid")));
    assert!(s["payment_intent"].is_null());
    assert_eq!(s["amount_total"], 2500 + 3 * 1000);
    assert_eq!(s["currency"], "usd");
    assert_eq!(s["client_reference_id"], "checkout-1");
    assert_eq!(s["metadata"]["checkout_id"], "chk_1");
    assert_eq!(s["livemode"], false);
    assert_eq!(s["mode"], "payment");
    let created = s["created"].as_i64().unwrap();
    assert_eq!(s["expires_at"].as_i64().unwrap() - created, 24 * 3600);

    let again = sb.get_json(&format!("/v1/checkout/sessions/{id}"), 200).await;
    assert_eq!(again, s);
}

#[tokio::test]
async fn rack_style_line_items_are_read_too() {
    let sb = spawn_sandbox().await;
    let form = [
        ("mode", "payment"),
        ("success_url", "https://shop.example/ok"),
        ("line_items[][price_data][currency]", "KRW"),
        ("line_items[][price_data][unit_amount]", "1000"),
        ("line_items[][price_data][product_data][name]", "Kimchi"),
        ("line_items[][quantity]", "2"),
    ];
    let s = sb.post_json("/v1/checkout/sessions", &form, 200).await;
    assert_eq!((s["amount_total"].as_i64(), s["currency"].as_str()), (Some(2000), Some("krw")));
}

#[tokio::test]
async fn an_open_session_can_be_expired_once() {
    let sb = spawn_sandbox().await;
    let id = sb.create_session(&[]).await["id"].as_str().unwrap().to_string();
    let path = format!("/v1/checkout/sessions/{id}/expire");
    let s = sb.post_json(&path, &[], 200).await;
    assert_eq!(s["status"], "expired");
    assert!(s["url"].is_null());
    let again = sb.post_json(&path, &[], 400).await;
    assert_eq!(again["error"]["type"], "invalid_request_error");
    assert!(again["error"]["message"].as_str().unwrap().contains("expired"));
    let missing = sb.post_json("/v1/checkout/sessions/cs_test_nope/expire", &[], 404).await;
    assert_eq!(missing["error"]["code"], "resource_missing");
    sb.receiver.wait_for("checkout.session.expired", &id).await;
}

#[tokio::test]
async fn a_session_expires_by_itself_at_expires_at() {
    let sb = spawn_sandbox().await;
    let soon = (chrono::Utc::now().timestamp() + 1).to_string();
    let id = sb.create_session(&[("expires_at", &soon)]).await["id"].as_str().unwrap().to_string();
    let event = sb.receiver.wait_for("checkout.session.expired", &id).await;
    assert_eq!(event.event["data"]["object"]["status"], "expired");
    let s = sb.get_json(&format!("/v1/checkout/sessions/{id}"), 200).await;
    assert_eq!(s["status"], "expired");
    let paid = sb.pay(&id, "4242424242424242").await;
    assert_eq!(paid.status(), 409);
    assert!(paid.text().await.unwrap().contains("expired"));
}

#[tokio::test]
async fn expires_at_must_be_within_a_day() {
    let sb = spawn_sandbox().await;
    let now = chrono::Utc::now().timestamp();
    for bad in [now - 10, now + 25 * 3600] {
        let response = sb
            .post(
                "/v1/checkout/sessions",
                &[
                    ("mode", "payment"),
                    ("success_url", "https://shop.example/ok"),
                    ("line_items[0][price_data][currency]", "usd"),
                    ("line_items[0][price_data][unit_amount]", "100"),
                    ("line_items[0][price_data][product_data][name]", "Mug"),
                    ("line_items[0][quantity]", "1"),
                    ("expires_at", &bad.to_string()),
                ],
                None,
            )
            .await;
        let body = crate::helpers::json_with_status(response, 400).await;
        assert_eq!(body["error"]["param"], "expires_at");
    }
}
