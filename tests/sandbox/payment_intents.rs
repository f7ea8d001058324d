//! PaymentIntents with Stripe's test payment methods.

use serde_json::{Value, json};

use crate::helpers::{BadCase, SECRET_KEY, TestSandbox, json_with_status, spawn_sandbox};

#[tokio::test]
async fn pm_card_visa_succeeds() {
    let sb = spawn_sandbox().await;
    let pi = sb
        .post_json(
            "/v1/payment_intents",
            &[
                ("amount", "1250"),
                ("currency", "eur"),
                ("payment_method", "pm_card_visa"),
                ("confirm", "true"),
                ("automatic_payment_methods[enabled]", "true"),
                ("automatic_payment_methods[allow_redirects]", "never"),
                ("metadata[payment_order_id]", "po_9"),
                ("description", "order po_9"),
            ],
            200,
        )
        .await;
    let id = pi["id"].as_str().unwrap();
    assert!(id.starts_with("pi_"));
    assert_eq!(pi["object"], "payment_intent");
    assert_eq!(pi["status"], "succeeded");
    assert_eq!((pi["amount"].as_i64(), pi["amount_received"].as_i64()), (Some(1250), Some(1250)));
    assert_eq!(pi["currency"], "eur");
    assert_eq!(pi["metadata"]["payment_order_id"], "po_9");
    assert!(pi["latest_charge"].as_str().unwrap().starts_with("ch_"));
    assert_eq!(sb.get_json(&format!("/v1/payment_intents/{id}"), 200).await, pi);
    sb.receiver.wait_for("payment_intent.succeeded", id).await;
}

#[tokio::test]
async fn declines_are_402_card_errors_carrying_the_intent() {
    let sb = spawn_sandbox().await;
    for (pm, decline_code) in [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
    ] {
        let form = [
            ("amount", "500"),
            ("currency", "usd"),
            ("payment_method", pm),
            ("confirm", "true"),
            ("payment_method_types[]", "card"),
        ];
        let body = sb.post_json("/v1/payment_intents", &form, 402).await;
        let e = &body["error"];
        assert_eq!(e["type"], "card_error", "{pm}");
        assert_eq!(e["code"], "card_declined");
        assert_eq!(e["decline_code"], decline_code);
        let pi = &e["payment_intent"];
        assert_eq!(pi["status"], "requires_payment_method");
        assert_eq!(pi["last_payment_error"]["decline_code"], decline_code);
        let id = pi["id"].as_str().unwrap();
        let stored = sb.get_json(&format!("/v1/payment_intents/{id}"), 200).await;
        assert_eq!(stored["status"], "requires_payment_method");
        sb.receiver.wait_for("payment_intent.payment_failed", id).await;
    }
}

#[tokio::test]
async fn a_declined_intent_can_be_confirmed_again_with_another_card() {
    let sb = spawn_sandbox().await;
    let form = [
        ("amount", "500"),
        ("currency", "usd"),
        ("payment_method", "pm_card_chargeDeclined"),
        ("confirm", "true"),
        ("automatic_payment_methods[enabled]", "true"),
        ("automatic_payment_methods[allow_redirects]", "never"),
    ];
    let body = sb.post_json("/v1/payment_intents", &form, 402).await;
    let id = body["error"]["payment_intent"]["id"].as_str().unwrap().to_string();
    let path = format!("/v1/payment_intents/{id}/confirm");
    let pi = sb.post_json(&path, &[("payment_method", "pm_card_visa")], 200).await;
    assert_eq!(pi["status"], "succeeded");
    assert!(pi["last_payment_error"].is_null());
    let again = sb.post_json(&path, &[], 400).await;
    assert_eq!(again["error"]["code"], "payment_intent_unexpected_state");
}

#[tokio::test]
async fn an_unconfirmed_intent_waits_for_confirmation() {
    let sb = spawn_sandbox().await;
    let pi = sb
        .post_json(
            "/v1/payment_intents",
            &[
                ("amount", "900"),
                ("currency", "jpy"),
                ("payment_method", "pm_card_visa"),
                ("payment_method_types[]", "card"),
            ],
            200,
        )
        .await;
    assert_eq!(pi["status"], "requires_confirmation");
    let id = pi["id"].as_str().unwrap();
    let done = sb.post_json(&format!("/v1/payment_intents/{id}/confirm"), &[], 200).await;
    assert_eq!(done["status"], "succeeded");
}

#[tokio::test]
async fn bad_payment_intent_params() {
    let sb = spawn_sandbox().await;
    let cases: &[BadCase] = &[
        (&[("currency", "usd")], "parameter_missing", "amount"),
        (&[("amount", "abc"), ("currency", "usd")], "parameter_invalid_integer", "amount"),
        (&[("amount", "0"), ("currency", "usd")], "amount_too_small", "amount"),
        (&[("amount", "100000000"), ("currency", "usd")], "amount_too_large", "amount"),
        (&[("amount", "100")], "parameter_missing", "currency"),
        (
            &[("amount", "100"), ("currency", "usd"), ("payment_method", "pm_nope"), ("confirm", "true")],
            "resource_missing",
            "payment_method",
        ),
    ];
    for (form, code, param) in cases {
        let body = sb.post_json("/v1/payment_intents", form, 400).await;
        assert_eq!(body["error"]["code"], *code, "{form:?}");
        assert_eq!(body["error"]["param"], *param, "{form:?}");
    }
    let body =
        sb.post_json("/v1/payment_intents", &[("amount", "1"), ("currency", "usd"), ("confirm", "maybe")], 400).await;
    assert_eq!(body["error"]["param"], "confirm");
}

/// A PaymentIntent confirmed on the server, for 10.00 USD with `pm_card_visa`, plus `extra`.
fn confirmed_intent<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form =
        vec![("amount", "1000"), ("currency", "usd"), ("payment_method", "pm_card_visa"), ("confirm", "true")];
    form.extend_from_slice(extra);
    form
}

const NEVER_REDIRECT: [(&str, &str); 2] =
    [("automatic_payment_methods[enabled]", "true"), ("automatic_payment_methods[allow_redirects]", "never")];

fn intents_at_the_psp(sb: &TestSandbox) -> i64 {
    let conn = rusqlite::Connection::open(&sb.db_path).unwrap();
    conn.query_row("SELECT COUNT(*) FROM payment_intents", [], |r| r.get(0)).unwrap()
}

fn assert_return_url_refusal(body: &Value) {
    let e = &body["error"];
    assert_eq!(e["type"], "invalid_request_error", "{body}");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.starts_with("A `return_url` must be specified because this Payment Intent is configured"),
        "{message}"
    );
    assert!(message.contains("`automatic_payment_methods[allow_redirects]` to `never`"), "{message}");
}

#[tokio::test]
async fn a_server_side_confirmation_without_what_a_current_account_needs_is_refused() {
    let sb = spawn_sandbox().await;
    // Neither field (the Dashboard's methods, redirects allowed), or
    // automatic payment methods that may redirect: refused, nothing made.
    for extra in [
        &[][..],
        &[("automatic_payment_methods[enabled]", "true")][..],
        &[("automatic_payment_methods[enabled]", "true"), ("automatic_payment_methods[allow_redirects]", "always")][..],
    ] {
        let body = sb.post_json("/v1/payment_intents", &confirmed_intent(extra), 400).await;
        assert_return_url_refusal(&body);
    }
    assert_eq!(intents_at_the_psp(&sb), 0, "a refused confirmation creates no intent");
    assert!(sb.receiver.all().is_empty(), "and sends no event");

    // Any of the ways out: no redirects, cards only, a return_url, off session.
    let ways_out: [(&[(&str, &str)], Value); 4] = [
        (&NEVER_REDIRECT, json!({"enabled": true, "allow_redirects": "never"})),
        (&[("payment_method_types[]", "card")], Value::Null),
        (&[("return_url", "https://shop.example/back")], json!({"enabled": true, "allow_redirects": "always"})),
        (&[("off_session", "true")], json!({"enabled": true, "allow_redirects": "always"})),
    ];
    for (extra, automatic) in ways_out {
        let pi = sb.post_json("/v1/payment_intents", &confirmed_intent(extra), 200).await;
        assert_eq!(pi["status"], "succeeded", "{extra:?}");
        assert_eq!(pi["automatic_payment_methods"], automatic, "{extra:?}");
        assert_eq!(pi["payment_method_types"], json!(["card"]));
    }
    assert_eq!(intents_at_the_psp(&sb), 4);
}

#[tokio::test]
async fn confirming_later_needs_the_same_as_confirming_at_once() {
    let sb = spawn_sandbox().await;
    let form = [("amount", "900"), ("currency", "jpy"), ("payment_method", "pm_card_visa")];
    let pi = sb.post_json("/v1/payment_intents", &form, 200).await;
    assert_eq!(pi["status"], "requires_confirmation");
    assert_eq!(pi["automatic_payment_methods"], json!({"enabled": true, "allow_redirects": "always"}));
    let path = format!("/v1/payment_intents/{}/confirm", pi["id"].as_str().unwrap());
    assert_return_url_refusal(&sb.post_json(&path, &[], 400).await);
    assert_eq!(
        sb.get_json(&format!("/v1/payment_intents/{}", pi["id"].as_str().unwrap()), 200).await["status"],
        "requires_confirmation"
    );
    let done = sb.post_json(&path, &[("return_url", "https://shop.example/back")], 200).await;
    assert_eq!(done["status"], "succeeded");
}

/// Before 2023-08-16 an intent that names no payment method types takes
/// cards only, so a client pinned to such a version confirms without more.
#[tokio::test]
async fn a_client_pinned_before_automatic_payment_methods_confirms_cards_as_before() {
    let sb = spawn_sandbox().await;
    let post = |version: &'static str| {
        sb.client
            .post(sb.url("/v1/payment_intents"))
            .bearer_auth(SECRET_KEY)
            .header("Stripe-Version", version)
            .form(&confirmed_intent(&[]))
            .send()
    };
    let old = json_with_status(post("2022-11-15").await.unwrap(), 200).await;
    assert_eq!((old["status"].as_str(), &old["automatic_payment_methods"]), (Some("succeeded"), &Value::Null));
    assert_return_url_refusal(&json_with_status(post("2023-08-16").await.unwrap(), 400).await);
}

#[tokio::test]
async fn payment_method_options_are_checked_as_stripe_checks_them() {
    let sb = spawn_sandbox().await;
    let long = "A".repeat(23);
    let cases: &[BadCase] = &[
        (
            &[("automatic_payment_methods[allow_redirects]", "never")],
            "parameter_missing",
            "automatic_payment_methods[enabled]",
        ),
        (
            &[
                ("automatic_payment_methods[enabled]", "true"),
                ("automatic_payment_methods[allow_redirects]", "sometimes"),
            ],
            "parameter_invalid",
            "automatic_payment_methods[allow_redirects]",
        ),
        (&[("payment_method_types[]", "ideal")], "parameter_invalid", "payment_method_types"),
        (&[("return_url", "not a url")], "url_invalid", "return_url"),
        (&[("off_session", "sometimes")], "parameter_invalid", "off_session"),
        (&[("statement_descriptor_suffix", &long)], "parameter_invalid", "statement_descriptor_suffix"),
        (&[("statement_descriptor_suffix", "12345")], "parameter_invalid", "statement_descriptor_suffix"),
        (&[("statement_descriptor_suffix", "ORDER*7")], "parameter_invalid", "statement_descriptor_suffix"),
        (&[("statement_descriptor_suffix", "it's")], "parameter_invalid", "statement_descriptor_suffix"),
    ];
    for (extra, code, param) in cases {
        let body = sb.post_json("/v1/payment_intents", &confirmed_intent(extra), 400).await;
        assert_eq!((&body["error"]["code"], &body["error"]["param"]), (&json!(code), &json!(param)), "{extra:?}");
    }
    let both = [NEVER_REDIRECT[0], ("payment_method_types[]", "card")];
    let body = sb.post_json("/v1/payment_intents", &confirmed_intent(&both), 400).await;
    assert_eq!(
        body["error"]["message"],
        "You may only specify one of these parameters: automatic_payment_methods, payment_method_types."
    );
    let not_a_bool = sb
        .post_json("/v1/payment_intents", &confirmed_intent(&[("automatic_payment_methods[enabled]", "yes")]), 400)
        .await;
    assert_eq!(not_a_bool["error"]["param"], "automatic_payment_methods[enabled]");
    // A return_url belongs to a confirmation.
    let unconfirmed = [("amount", "100"), ("currency", "usd"), ("return_url", "https://shop.example/back")];
    let body = sb.post_json("/v1/payment_intents", &unconfirmed, 400).await;
    assert_eq!(body["error"]["param"], "return_url");
    assert_eq!(intents_at_the_psp(&sb), 0);
}

#[tokio::test]
async fn the_statement_descriptor_suffix_is_kept_on_the_intent() {
    let sb = spawn_sandbox().await;
    let mut extra = NEVER_REDIRECT.to_vec();
    extra.push(("statement_descriptor_suffix", "TILL 42"));
    let pi = sb.post_json("/v1/payment_intents", &confirmed_intent(&extra), 200).await;
    assert_eq!(pi["statement_descriptor_suffix"], "TILL 42");
    let plain = sb.post_json("/v1/payment_intents", &confirmed_intent(&NEVER_REDIRECT), 200).await;
    assert!(plain["statement_descriptor_suffix"].is_null());

    // A hosted checkout passes it to the intent it makes when paid.
    let session = sb.create_session(&[("payment_intent_data[statement_descriptor_suffix]", "MUGS")]).await;
    let paid = sb.pay(session["id"].as_str().unwrap(), "4242424242424242").await;
    assert_eq!(paid.status(), 303);
    let session = sb.get_json(&format!("/v1/checkout/sessions/{}", session["id"].as_str().unwrap()), 200).await;
    let pi = sb.get_json(&format!("/v1/payment_intents/{}", session["payment_intent"].as_str().unwrap()), 200).await;
    assert_eq!(pi["statement_descriptor_suffix"], "MUGS");
    let bad = sb
        .post_json(
            "/v1/checkout/sessions",
            &session_form(&[("payment_intent_data[statement_descriptor_suffix]", "<b>")]),
            400,
        )
        .await;
    assert_eq!(bad["error"]["param"], "payment_intent_data[statement_descriptor_suffix]");
}

fn session_form<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("mode", "payment"),
        ("success_url", "https://shop.example/thanks"),
        ("line_items[0][price_data][currency]", "usd"),
        ("line_items[0][price_data][unit_amount]", "2500"),
        ("line_items[0][price_data][product_data][name]", "Blue mug"),
        ("line_items[0][quantity]", "1"),
    ];
    form.extend_from_slice(extra);
    form
}
