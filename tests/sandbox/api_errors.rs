//! Stripe's error shapes and status codes.

use crate::helpers::{BadCase, SECRET_KEY, json_with_status, spawn_sandbox};

#[tokio::test]
async fn a_missing_or_wrong_key_is_stripes_401() {
    let sb = spawn_sandbox().await;
    let url = sb.url("/v1/checkout/sessions/cs_test_x");
    for auth in [None, Some("Bearer sk_test_wrong_key_000000"), Some("Basic abc"), Some("Token x")] {
        let mut req = sb.client.get(&url);
        if let Some(auth) = auth {
            req = req.header("Authorization", auth);
        }
        let body = json_with_status(req.send().await.unwrap(), 401).await;
        assert_eq!(body["error"]["type"], "invalid_request_error", "{auth:?}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(!message.contains("wrong_key_000000"), "the key is redacted: {message}");
    }
}

#[tokio::test]
async fn the_key_may_come_as_basic_auth_like_curl_u() {
    let sb = spawn_sandbox().await;
    let response = sb.client.get(sb.url("/v1/sandbox/faults")).basic_auth(SECRET_KEY, Some("")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn bad_parameters_name_the_param_and_code() {
    let sb = spawn_sandbox().await;
    let cases: &[BadCase] = &[
        (&[("mode", "payment")], "parameter_missing", "success_url"),
        (&[("mode", "payment"), ("success_url", "https://x.example/ok")], "parameter_missing", "line_items"),
        (
            &[
                ("mode", "payment"),
                ("success_url", "https://x.example/ok"),
                ("line_items[0][price_data][currency]", "usd"),
                ("line_items[0][price_data][unit_amount]", "12.50"),
                ("line_items[0][price_data][product_data][name]", "Mug"),
                ("line_items[0][quantity]", "1"),
            ],
            "parameter_invalid_integer",
            "line_items[0][price_data][unit_amount]",
        ),
        (
            &[
                ("mode", "payment"),
                ("success_url", "https://x.example/ok"),
                ("line_items[0][price_data][currency]", "usd"),
                ("line_items[0][price_data][unit_amount]", "1250"),
                ("line_items[0][price_data][product_data][name]", "Mug"),
            ],
            "parameter_missing",
            "line_items[0][quantity]",
        ),
        (
            &[
                ("mode", "payment"),
                ("success_url", "https://x.example/ok"),
                ("line_items[0][price_data][currency]", "zzz"),
                ("line_items[0][price_data][unit_amount]", "1250"),
                ("line_items[0][price_data][product_data][name]", "Mug"),
                ("line_items[0][quantity]", "1"),
            ],
            "parameter_invalid",
            "line_items[0][price_data][currency]",
        ),
        (&[("mode", "payment"), ("success_url", "not a url")], "url_invalid", "success_url"),
        (&[("mode", "subscription")], "parameter_invalid", "mode"),
        (&[("mode", "")], "parameter_invalid_empty", "mode"),
    ];
    for (form, code, param) in cases {
        let body = sb.post_json("/v1/checkout/sessions", form, 400).await;
        assert_eq!(body["error"]["type"], "invalid_request_error", "{form:?}");
        assert_eq!(body["error"]["code"], *code, "{form:?}: {body}");
        assert_eq!(body["error"]["param"], *param, "{form:?}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test]
async fn line_items_in_two_currencies_are_refused() {
    let sb = spawn_sandbox().await;
    let form = [
        ("line_items[1][price_data][currency]", "eur"),
        ("line_items[1][price_data][unit_amount]", "100"),
        ("line_items[1][price_data][product_data][name]", "Tea"),
        ("line_items[1][quantity]", "1"),
    ];
    let response = sb
        .post(
            "/v1/checkout/sessions",
            &[
                &[
                    ("mode", "payment"),
                    ("success_url", "https://x.example/ok"),
                    ("line_items[0][price_data][currency]", "usd"),
                    ("line_items[0][price_data][unit_amount]", "100"),
                    ("line_items[0][price_data][product_data][name]", "Mug"),
                    ("line_items[0][quantity]", "1"),
                ][..],
                &form[..],
            ]
            .concat(),
            None,
        )
        .await;
    let body = json_with_status(response, 400).await;
    assert_eq!(body["error"]["param"], "line_items[1][price_data][currency]");
}

#[tokio::test]
async fn unknown_objects_and_urls_are_404() {
    let sb = spawn_sandbox().await;
    for path in [
        "/v1/checkout/sessions/cs_test_nope",
        "/v1/payment_intents/pi_nope",
        "/v1/refunds/re_nope",
        "/v1/transfers/tr_nope",
        "/v1/charges",
    ] {
        let body = sb.get_json(path, 404).await;
        assert_eq!(body["error"]["type"], "invalid_request_error", "{path}");
        assert_eq!(body["error"]["code"], "resource_missing", "{path}");
    }
}

#[tokio::test]
async fn responses_are_stripe_objects_with_a_request_id() {
    let sb = spawn_sandbox().await;
    let response = sb.get("/v1/checkout/sessions/cs_test_nope").await;
    assert!(response.headers().get("request-id").unwrap().to_str().unwrap().starts_with("req_"));
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let sb = spawn_sandbox().await;
    let big = "x".repeat(100 * 1024);
    let body = sb.post_json("/v1/checkout/sessions", &[("mode", &big)], 400).await;
    assert_eq!(body["error"]["type"], "invalid_request_error");
}
