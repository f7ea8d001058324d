//! PaymentIntents with Stripe's test payment methods.

use crate::helpers::{BadCase, spawn_sandbox};

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
        let form = [("amount", "500"), ("currency", "usd"), ("payment_method", pm), ("confirm", "true")];
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
    let form =
        [("amount", "500"), ("currency", "usd"), ("payment_method", "pm_card_chargeDeclined"), ("confirm", "true")];
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
            &[("amount", "900"), ("currency", "jpy"), ("payment_method", "pm_card_visa")],
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
