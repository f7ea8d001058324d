//! `POST /v1/payments`: every bad input refused with its `param` and nothing
//! stored; idempotency through `checkout_id`, also under concurrency.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{hosted_body, spawn_app, uuid};

fn with(mut body: Value, pointer: &str, value: Value) -> Value {
    *body.pointer_mut(pointer).unwrap_or_else(|| panic!("{pointer}")) = value;
    body
}

fn without(mut body: Value, field: &str) -> Value {
    body.as_object_mut().unwrap().remove(field);
    body
}

#[tokio::test]
async fn bad_inputs_are_refused_naming_the_param_and_nothing_is_stored() {
    let app = spawn_app().await;
    let base = hosted_body(&[("seller_a", "25.00", "USD"), ("seller_b", "10.00", "USD")]);
    let same_id = base["orders"][0]["payment_order_id"].clone();
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "3 decimals for USD",
            with(base.clone(), "/orders/0/amount", json!("25.001")),
            "orders[0].amount",
            "amount_invalid",
        ),
        (
            "decimals for KRW",
            with(with(base.clone(), "/orders/0/currency", json!("KRW")), "/orders/0/amount", json!("10.5")),
            "orders[0].amount",
            "amount_invalid",
        ),
        ("negative", with(base.clone(), "/orders/1/amount", json!("-1.00")), "orders[1].amount", "amount_invalid"),
        ("zero", with(base.clone(), "/orders/0/amount", json!("0.00")), "orders[0].amount", "amount_invalid"),
        ("JSON number", with(base.clone(), "/orders/0/amount", json!(25.0)), "orders[0].amount", "amount_invalid"),
        ("not a number", with(base.clone(), "/orders/0/amount", json!("ten")), "orders[0].amount", "amount_invalid"),
        ("exponent", with(base.clone(), "/orders/0/amount", json!("1e3")), "orders[0].amount", "amount_invalid"),
        (
            "overflows i64",
            with(base.clone(), "/orders/0/amount", json!("92233720368547758.08")),
            "orders[0].amount",
            "amount_invalid",
        ),
        ("huge", with(base.clone(), "/orders/0/amount", json!("9".repeat(80))), "orders[0].amount", "amount_invalid"),
        (
            "above what the PSP takes in one charge",
            with(base.clone(), "/orders/0/amount", json!("1000000.00")),
            "orders[0].amount",
            "amount_invalid",
        ),
        (
            "a hosted page's total above what the PSP takes",
            with(with(base.clone(), "/orders/0/amount", json!("600000.00")), "/orders/1/amount", json!("400000.00")),
            "orders",
            "amount_invalid",
        ),
        (
            "unknown currency",
            with(base.clone(), "/orders/0/currency", json!("XYZ")),
            "orders[0].currency",
            "currency_invalid",
        ),
        (
            "lower-case currency",
            with(base.clone(), "/orders/0/currency", json!("usd")),
            "orders[0].currency",
            "currency_invalid",
        ),
        (
            "mixed currencies",
            with(base.clone(), "/orders/1/currency", json!("EUR")),
            "orders[1].currency",
            "currency_mismatch",
        ),
        ("no orders", with(base.clone(), "/orders", json!([])), "orders", "orders_invalid"),
        (
            "checkout_id not a UUID",
            with(base.clone(), "/checkout_id", json!("abc")),
            "checkout_id",
            "parameter_invalid",
        ),
        (
            "order id not a UUID",
            with(base.clone(), "/orders/1/payment_order_id", json!("x")),
            "orders[1].payment_order_id",
            "parameter_invalid",
        ),
        (
            "order id twice",
            with(base.clone(), "/orders/1/payment_order_id", same_id),
            "orders[1].payment_order_id",
            "payment_order_id_duplicate",
        ),
        (
            "bad seller id",
            with(base.clone(), "/orders/0/seller_id", json!("a:b")),
            "orders[0].seller_id",
            "parameter_invalid",
        ),
        ("empty buyer id", with(base.clone(), "/buyer/id", json!("")), "buyer.id", "parameter_invalid"),
        ("bad buyer email", with(base.clone(), "/buyer/email", json!("kim")), "buyer.email", "parameter_invalid"),
        ("NUL in buyer id", with(base.clone(), "/buyer/id", json!("b\u{0}x")), "buyer.id", "parameter_invalid"),
        ("newline in buyer id", with(base.clone(), "/buyer/id", json!("b\r\nx")), "buyer.id", "parameter_invalid"),
        (
            "control character in buyer email",
            with(base.clone(), "/buyer/email", json!("k\u{7}im@example.com")),
            "buyer.email",
            "parameter_invalid",
        ),
        ("no success_url", without(base.clone(), "success_url"), "success_url", "parameter_missing"),
        (
            "bad cancel_url",
            with(base.clone(), "/cancel_url", json!("javascript:alert(1)")),
            "cancel_url",
            "url_invalid",
        ),
        (
            "unknown method",
            with(base.clone(), "/payment_method", json!({"type": "cash"})),
            "payment_method.type",
            "parameter_invalid",
        ),
        ("unknown field", with(base.clone(), "/buyer", json!({"id": "b", "age": 3})), "buyer.age", "parameter_invalid"),
        ("missing field", without(base.clone(), "checkout_id"), "checkout_id", "parameter_missing"),
        (
            "missing nested field",
            with(base.clone(), "/buyer", json!({"email": "a@b.c"})),
            "buyer.id",
            "parameter_missing",
        ),
    ];
    for (name, body, param, code) in cases {
        let resp = app.post_payment(&body).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{name}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["type"], "invalid_request_error", "{name}: {err}");
        assert_eq!(err["error"]["code"], code, "{name}: {err}");
        if param != "." {
            assert_eq!(err["error"]["param"], param, "{name}: {err}");
        }
        assert!(!err["error"]["message"].as_str().unwrap().is_empty(), "{name}");
    }
    let too_many: Vec<Value> = (0..51)
        .map(|_| json!({"payment_order_id": uuid(), "seller_id": "s", "amount": "1.00", "currency": "USD"}))
        .collect();
    let resp = app.post_payment(&with(base.clone(), "/orders", json!(too_many))).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = app
        .client
        .post(format!("{}/v1/payments", app.address))
        .bearer_auth(&app.api_key)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = app
        .client
        .post(format!("{}/v1/payments", app.address))
        .bearer_auth(&app.api_key)
        .body(vec![b' '; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_events"), 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_orders"), 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM psp_calls"), 0, "nothing reached the PSP");
}

#[tokio::test]
async fn amounts_follow_each_currency_exponent() {
    let app = spawn_app().await;
    for (amount, currency, shown) in [("1000", "KRW", "1000"), ("1.250", "BHD", "1.250"), ("7", "USD", "7.00")] {
        let checkout = app.create_hosted(&[("seller_a", amount, currency)]).await;
        assert_eq!(checkout["orders"][0]["amount"], shown);
        assert_eq!(checkout["orders"][0]["currency"], currency);
    }
}

#[tokio::test]
async fn the_api_needs_a_valid_key() {
    let app = spawn_app().await;
    let body = hosted_body(&[("seller_a", "1.00", "USD")]);
    let url = format!("{}/v1/payments", app.address);
    let none = app.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let err: Value = none.json().await.unwrap();
    assert_eq!(err["error"]["type"], "authentication_error");
    let wrong = app.client.post(&url).bearer_auth("till_sk_wrong").json(&body).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let read = app.client.get(format!("{}/v1/wallets/seller_a", app.address)).send().await.unwrap();
    assert_eq!(read.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_events"), 0);
}

#[tokio::test]
async fn the_same_request_again_returns_the_same_checkout() {
    let app = spawn_app().await;
    let body = hosted_body(&[("seller_a", "25.00", "USD"), ("seller_b", "10.00", "USD")]);
    let first = app.post_payment(&body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("Idempotent-Replayed").is_none());
    let first: Value = first.json().await.unwrap();

    let again = app.post_payment(&body).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["Idempotent-Replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["redirect_url"], first["redirect_url"]);
    assert_eq!(again["orders"], first["orders"]);

    let changed = with(body.clone(), "/orders/0/amount", json!("26.00"));
    let resp = app.post_payment(&changed).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "idempotency_error");
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_orders"), 2);
    assert_eq!(app.count("SELECT COUNT(*) FROM psp_calls WHERE method = 'POST'"), 1, "one session at the PSP");
}

#[tokio::test]
async fn sixteen_concurrent_identical_creates_make_one_checkout() {
    let app = spawn_app().await;
    let body = hosted_body(&[("seller_a", "25.00", "USD"), ("seller_b", "10.00", "USD")]);
    let responses = futures_util::future::join_all((0..16).map(|_| app.post_payment(&body))).await;
    let mut created = 0;
    let mut urls = std::collections::HashSet::new();
    for resp in responses {
        match resp.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => assert_eq!(resp.headers()["Idempotent-Replayed"], "true"),
            other => panic!("unexpected {other}"),
        }
        let v: Value = resp.json().await.unwrap();
        urls.insert(v["redirect_url"].as_str().unwrap().to_string());
    }
    assert_eq!(created, 1);
    assert_eq!(urls.len(), 1, "every answer points to the same hosted page");
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_events"), 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_orders"), 2);
}

#[tokio::test]
async fn an_order_id_belongs_to_one_checkout_only() {
    let app = spawn_app().await;
    let first = hosted_body(&[("seller_a", "5.00", "USD")]);
    assert_eq!(app.post_payment(&first).await.status(), StatusCode::CREATED);
    let mut second = hosted_body(&[("seller_a", "5.00", "USD")]);
    second["orders"][0]["payment_order_id"] = first["orders"][0]["payment_order_id"].clone();
    let resp = app.post_payment(&second).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "orders[0].payment_order_id");
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_events"), 1);
}

#[tokio::test]
async fn reading_what_does_not_exist_is_a_404() {
    let app = spawn_app().await;
    for path in [format!("/v1/payments/{}", uuid()), format!("/v1/checkouts/{}", uuid()), "/v1/wallets/nobody".into()] {
        let resp = app.get(&path).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], "resource_missing");
    }
}

#[tokio::test]
async fn orders_are_listed_newest_first_with_a_cursor() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let c = app.create_hosted(&[("seller_a", "1.00", "USD"), ("seller_b", "2.00", "USD")]).await;
        ids.extend(c["orders"].as_array().unwrap().iter().map(|o| o["payment_order_id"].clone()));
    }
    ids.reverse();
    let page = app.get_json("/v1/payments?limit=4").await;
    assert_eq!(page["has_more"], true);
    let got: Vec<Value> = page["data"].as_array().unwrap().iter().map(|o| o["payment_order_id"].clone()).collect();
    assert_eq!(got, ids[..4]);
    let last = got[3].as_str().unwrap();
    let next = app.get_json(&format!("/v1/payments?limit=4&starting_after={last}")).await;
    assert_eq!(next["has_more"], false);
    assert_eq!(next["data"].as_array().unwrap().len(), 2);
    let by_seller = app.get_json("/v1/payments?seller_id=seller_b&status=EXECUTING").await;
    assert_eq!(by_seller["data"].as_array().unwrap().len(), 3);
    assert_eq!(app.get("/v1/payments?status=NOPE").await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.get("/v1/payments?limit=1000").await.status(), StatusCode::BAD_REQUEST);
}
