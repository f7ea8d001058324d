//! Manual capture as on Stripe: `capture_method=manual` stops at
//! `requires_capture` with nothing booked; `/capture` takes all or part,
//! books it and releases the rest; `/cancel` releases it; an authorization
//! not captured in time is canceled `automatic`; a hosted checkout can ask
//! for it and completes unpaid.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{BadCase, Line, WEBHOOK_SECRET, json_with_status, signature_is_valid, spawn_sandbox, spawn_timed};

const MANUAL: (&str, &str) = ("capture_method", "manual");

fn id_of(object: &Value) -> String {
    object["id"].as_str().unwrap().to_string()
}

fn capture_path(id: &str) -> String {
    format!("/v1/payment_intents/{id}/capture")
}

fn cancel_path(id: &str) -> String {
    format!("/v1/payment_intents/{id}/cancel")
}

#[tokio::test]
async fn a_manual_intent_is_authorized_then_captured_in_part_and_refunded_up_to_what_was_captured() {
    // Arrange + Act: authorize 10.00.
    let sb = spawn_sandbox().await;
    let pi = sb.create_intent(&[MANUAL, ("metadata[payment_order_id]", "po_m")]).await;
    let id = id_of(&pi);

    // Assert: authorized, nothing received, nothing booked.
    assert_eq!(pi["status"], "requires_capture");
    assert_eq!(pi["capture_method"], "manual");
    assert_eq!((pi["amount_capturable"].as_i64(), pi["amount_received"].as_i64()), (Some(1000), Some(0)));
    assert!(pi["latest_charge"].as_str().unwrap().starts_with("ch_"));
    assert!(pi["canceled_at"].is_null() && pi["cancellation_reason"].is_null());
    assert!(sb.balance_lines(&id).is_empty(), "an authorization books nothing");
    let authorized = sb.receiver.wait_for("payment_intent.amount_capturable_updated", &id).await;
    assert!(signature_is_valid(&authorized.signature, &authorized.body, WEBHOOK_SECRET));
    assert_eq!(authorized.event["data"]["object"]["amount_capturable"], 1000);
    assert!(sb.receiver.events("payment_intent.succeeded", &id).is_empty());

    // Act: capture 6.00 of it.
    let captured = sb.post_json(&capture_path(&id), &[("amount_to_capture", "600")], 200).await;

    // Assert: succeeded with 6.00 received, the rest released, one charge line of 6.00.
    assert_eq!(captured["status"], "succeeded");
    assert_eq!((captured["amount_received"].as_i64(), captured["amount_capturable"].as_i64()), (Some(600), Some(0)));
    assert_eq!((captured["amount"].as_i64(), &captured["latest_charge"]), (Some(1000), &pi["latest_charge"]));
    let charge = pi["latest_charge"].as_str().unwrap().to_string();
    // 2.9 % of 600 = 17.4 → 17, plus 30.
    let line = Line { category: "charge".into(), amount: 600, fee: 47, net: 553, source_id: charge, description: None };
    assert_eq!(sb.balance_lines(&id), vec![line]);
    let succeeded = sb.receiver.wait_for("payment_intent.succeeded", &id).await;
    assert_eq!(succeeded.event["data"]["object"]["amount_received"], 600);
    assert_eq!(sb.get_json(&format!("/v1/payment_intents/{id}"), 200).await, captured);

    // Refunds: at most what was captured; by default the rest of it.
    let too_much = sb.post_json("/v1/refunds", &[("payment_intent", &id), ("amount", "601")], 400).await;
    assert_eq!(
        (&too_much["error"]["code"], &too_much["error"]["param"]),
        (&json!("amount_too_large"), &json!("amount"))
    );
    let part = sb.post_json("/v1/refunds", &[("payment_intent", &id), ("amount", "100")], 200).await;
    assert_eq!(part["amount"], 100);
    let rest = sb.post_json("/v1/refunds", &[("payment_intent", &id)], 200).await;
    assert_eq!(rest["amount"], 500);
    let none_left = sb.post_json("/v1/refunds", &[("payment_intent", &id)], 400).await;
    assert_eq!(none_left["error"]["code"], "charge_already_refunded");
}

#[tokio::test]
async fn capturing_without_an_amount_takes_it_all_and_only_once() {
    let sb = spawn_sandbox().await;
    let id = id_of(&sb.create_intent(&[MANUAL]).await);
    let captured = sb.post_json(&capture_path(&id), &[("metadata[captured_by]", "test")], 200).await;
    assert_eq!((captured["status"].as_str(), captured["amount_received"].as_i64()), (Some("succeeded"), Some(1000)));
    assert_eq!(captured["metadata"]["captured_by"], "test");
    assert_eq!(sb.balance_lines(&id).iter().map(|l| (l.amount, l.fee)).collect::<Vec<_>>(), vec![(1000, 59)]);

    let again = sb.post_json(&capture_path(&id), &[], 400).await;
    assert_eq!(again["error"]["type"], "invalid_request_error");
    assert_eq!(again["error"]["code"], "payment_intent_unexpected_state");
    assert_eq!(
        again["error"]["message"],
        "This PaymentIntent could not be captured because it has a status of succeeded. Only a PaymentIntent \
         with one of the following statuses may be captured: requires_capture."
    );
    assert_eq!(sb.balance_lines(&id).len(), 1, "captured once");

    // An automatic intent has nothing to capture either.
    let automatic = sb.create_intent(&[]).await;
    assert_eq!(
        (automatic["capture_method"].as_str(), automatic["status"].as_str()),
        (Some("automatic"), Some("succeeded"))
    );
    let body = sb.post_json(&capture_path(&id_of(&automatic)), &[], 400).await;
    assert_eq!(body["error"]["code"], "payment_intent_unexpected_state");
}

#[tokio::test]
async fn a_manual_intent_confirmed_later_is_authorized_too() {
    let sb = spawn_sandbox().await;
    let form = [("amount", "800"), ("currency", "eur"), ("payment_method", "pm_card_visa"), MANUAL];
    let pi =
        sb.post_json("/v1/payment_intents", &[&form[..], &[("payment_method_types[]", "card")]].concat(), 200).await;
    assert_eq!((pi["status"].as_str(), pi["capture_method"].as_str()), (Some("requires_confirmation"), Some("manual")));
    let id = id_of(&pi);
    let confirmed = sb.post_json(&format!("/v1/payment_intents/{id}/confirm"), &[], 200).await;
    assert_eq!(
        (confirmed["status"].as_str(), confirmed["amount_capturable"].as_i64()),
        (Some("requires_capture"), Some(800))
    );
    let again = sb.post_json(&format!("/v1/payment_intents/{id}/confirm"), &[], 400).await;
    assert!(again["error"]["message"].as_str().unwrap().contains("has a status of requires_capture"), "{again}");

    // A decline leaves it awaiting a payment method, as for automatic capture.
    let declined = sb
        .post_json(
            "/v1/payment_intents",
            &crate::helpers::intent_form(&[MANUAL, ("payment_method", "pm_card_chargeDeclined")]),
            402,
        )
        .await;
    assert_eq!(declined["error"]["payment_intent"]["status"], "requires_payment_method");
    assert_eq!(declined["error"]["payment_intent"]["amount_capturable"], 0);
}

#[tokio::test]
async fn automatic_async_captures_at_once_as_automatic_does() {
    let sb = spawn_sandbox().await;
    let pi = sb.create_intent(&[("capture_method", "automatic_async")]).await;
    assert_eq!((pi["capture_method"].as_str(), pi["status"].as_str()), (Some("automatic_async"), Some("succeeded")));
    assert_eq!((pi["amount_received"].as_i64(), pi["amount_capturable"].as_i64()), (Some(1000), Some(0)));
    assert_eq!(sb.balance_lines(&id_of(&pi)).len(), 1);
}

#[tokio::test]
async fn cancel_releases_an_authorization_and_is_final() {
    // Arrange: an authorization.
    let sb = spawn_sandbox().await;
    let id = id_of(&sb.create_intent(&[MANUAL]).await);

    // Act
    let canceled = sb.post_json(&cancel_path(&id), &[("cancellation_reason", "requested_by_customer")], 200).await;

    // Assert
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["cancellation_reason"], "requested_by_customer");
    assert!((canceled["canceled_at"].as_i64().unwrap() - chrono::Utc::now().timestamp()).abs() < 10);
    assert_eq!((canceled["amount_capturable"].as_i64(), canceled["amount_received"].as_i64()), (Some(0), Some(0)));
    let event = sb.receiver.wait_for("payment_intent.canceled", &id).await;
    assert!(signature_is_valid(&event.signature, &event.body, WEBHOOK_SECRET));
    assert_eq!(event.event["data"]["object"]["cancellation_reason"], "requested_by_customer");
    assert!(sb.balance_lines(&id).is_empty());

    // Neither capture nor cancel nor confirm nor refund after it.
    let capture = sb.post_json(&capture_path(&id), &[], 400).await;
    assert_eq!(
        capture["error"]["message"],
        "This PaymentIntent could not be captured because it has a status of canceled. Only a PaymentIntent \
         with one of the following statuses may be captured: requires_capture."
    );
    let cancel = sb.post_json(&cancel_path(&id), &[], 400).await;
    assert_eq!(cancel["error"]["code"], "payment_intent_unexpected_state");
    assert!(cancel["error"]["message"].as_str().unwrap().contains("has a status of canceled"));
    let confirm = sb.post_json(&format!("/v1/payment_intents/{id}/confirm"), &[], 400).await;
    assert_eq!(confirm["error"]["code"], "payment_intent_unexpected_state");
    let refund = sb.post_json("/v1/refunds", &[("payment_intent", &id)], 400).await;
    assert_eq!(refund["error"]["code"], "charge_not_refundable");
}

#[tokio::test]
async fn an_intent_awaiting_payment_may_be_canceled_but_a_captured_one_may_not() {
    let sb = spawn_sandbox().await;
    let waiting = sb.post_json("/v1/payment_intents", &[("amount", "500"), ("currency", "eur")], 200).await;
    assert_eq!(waiting["status"], "requires_payment_method");
    let canceled = sb.post_json(&cancel_path(&id_of(&waiting)), &[], 200).await;
    assert_eq!(canceled["status"], "canceled");
    assert!(canceled["cancellation_reason"].is_null() && canceled["latest_charge"].is_null());

    let paid = id_of(&sb.create_intent(&[]).await);
    let body = sb.post_json(&cancel_path(&paid), &[("cancellation_reason", "duplicate")], 400).await;
    assert_eq!(body["error"]["code"], "payment_intent_unexpected_state");
    assert_eq!(
        body["error"]["message"],
        "You cannot cancel this PaymentIntent because it has a status of succeeded. Only a PaymentIntent with \
         one of the following statuses may be canceled: requires_payment_method, requires_capture, \
         requires_confirmation, requires_action, processing."
    );
    let captured = id_of(&sb.create_intent(&[MANUAL]).await);
    sb.post_json(&capture_path(&captured), &[], 200).await;
    sb.post_json(&cancel_path(&captured), &[], 400).await;
}

#[tokio::test]
async fn capture_and_cancel_replay_under_the_same_idempotency_key() {
    let sb = spawn_sandbox().await;
    let id = id_of(&sb.create_intent(&[MANUAL]).await);
    let form = [("amount_to_capture", "400")];
    let first = sb.post(&capture_path(&id), &form, Some("capture-1")).await;
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = json_with_status(first, 200).await;
    let replay = sb.post(&capture_path(&id), &form, Some("capture-1")).await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(json_with_status(replay, 200).await, first);
    assert_eq!(sb.balance_lines(&id).len(), 1, "booked once");
    let other = sb.post(&capture_path(&id), &[("amount_to_capture", "500")], Some("capture-1")).await;
    assert_eq!(json_with_status(other, 400).await["error"]["type"], "idempotency_error");

    let authorized = id_of(&sb.create_intent(&[MANUAL]).await);
    let first = json_with_status(sb.post(&cancel_path(&authorized), &[], Some("cancel-1")).await, 200).await;
    let replay = json_with_status(sb.post(&cancel_path(&authorized), &[], Some("cancel-1")).await, 200).await;
    assert_eq!(replay, first);
    assert_eq!(sb.receiver.wait_for("payment_intent.canceled", &authorized).await.event["data"]["object"], first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sb.receiver.events("payment_intent.canceled", &authorized).len(), 1, "canceled once");
}

#[tokio::test]
async fn an_authorization_not_captured_in_time_is_canceled_automatic() {
    // Arrange: authorizations expire after 0.00002 days (1.7 s): time
    // enough to capture one of them first on a busy machine.
    let sb = spawn_timed("0.00002", 100, "15.00").await;
    let id = id_of(&sb.create_intent(&[MANUAL]).await);
    let captured = id_of(&sb.create_intent(&[MANUAL]).await);
    sb.post_json(&capture_path(&captured), &[], 200).await;

    // Act: time passes.
    let event = sb.receiver.wait_for("payment_intent.canceled", &id).await;

    // Assert
    assert_eq!(event.event["data"]["object"]["cancellation_reason"], "automatic");
    let pi = sb.get_json(&format!("/v1/payment_intents/{id}"), 200).await;
    assert_eq!((pi["status"].as_str(), pi["cancellation_reason"].as_str()), (Some("canceled"), Some("automatic")));
    assert_eq!(pi["amount_capturable"], 0);
    let late = sb.post_json(&capture_path(&id), &[], 400).await;
    assert_eq!(late["error"]["code"], "payment_intent_unexpected_state");
    let still = sb.get_json(&format!("/v1/payment_intents/{captured}"), 200).await;
    assert_eq!(still["status"], "succeeded", "a captured intent does not expire");
}

#[tokio::test]
async fn a_hosted_manual_session_completes_unpaid_with_an_authorized_intent() {
    // Arrange
    let sb = spawn_sandbox().await;
    let session = sb.create_session(&[("payment_intent_data[capture_method]", "manual")]).await;
    let session_id = id_of(&session);

    // Act: the buyer pays on the page.
    let paid = sb.pay(&session_id, "4242424242424242").await;

    // Assert: redirected, complete but unpaid, the intent authorized only.
    assert_eq!(paid.status(), 303);
    assert_eq!(paid.headers()["location"], format!("https://shop.example/thanks?session={session_id}").as_str());
    let session = sb.get_json(&format!("/v1/checkout/sessions/{session_id}"), 200).await;
    assert_eq!((session["status"].as_str(), session["payment_status"].as_str()), (Some("complete"), Some("unpaid")));
    let pi_id = session["payment_intent"].as_str().unwrap().to_string();
    let pi = sb.get_json(&format!("/v1/payment_intents/{pi_id}"), 200).await;
    assert_eq!((pi["status"].as_str(), pi["capture_method"].as_str()), (Some("requires_capture"), Some("manual")));
    assert_eq!((pi["amount_capturable"].as_i64(), pi["amount_received"].as_i64()), (Some(2500), Some(0)));
    assert_eq!(
        (pi["metadata"]["checkout_id"].as_str(), pi["metadata"]["payment_order_id"].as_str()),
        (Some("chk_1"), Some("po_1"))
    );
    sb.receiver.wait_for("payment_intent.amount_capturable_updated", &pi_id).await;
    let completed = sb.receiver.wait_for("checkout.session.completed", &session_id).await;
    assert_eq!(completed.event["data"]["object"]["payment_status"], "unpaid");
    assert!(sb.balance_lines(&pi_id).is_empty());

    // Captured on the intent; the session stays as it was.
    sb.post_json(&capture_path(&pi_id), &[("amount_to_capture", "2000")], 200).await;
    let after = sb.get_json(&format!("/v1/checkout/sessions/{session_id}"), 200).await;
    assert_eq!((after["status"].as_str(), after["payment_status"].as_str()), (Some("complete"), Some("unpaid")));
    assert_eq!(sb.balance_lines(&pi_id).iter().map(|l| l.amount).collect::<Vec<_>>(), vec![2000]);
    let report = sb.todays_report().await;
    assert!(
        report.lines().any(|l| l.contains(",charge,") && l.contains(&pi_id) && l.ends_with(",chk_1,po_1")),
        "{report}"
    );
}

#[tokio::test]
async fn an_automatic_hosted_session_is_still_paid_at_once() {
    let sb = spawn_sandbox().await;
    let session = sb.create_session(&[("payment_intent_data[capture_method]", "automatic")]).await;
    assert_eq!(sb.pay(&id_of(&session), "4242424242424242").await.status(), 303);
    let session = sb.get_json(&format!("/v1/checkout/sessions/{}", id_of(&session)), 200).await;
    assert_eq!((session["status"].as_str(), session["payment_status"].as_str()), (Some("complete"), Some("paid")));
}

#[tokio::test]
async fn bad_capture_and_cancel_inputs_name_the_param() {
    let sb = spawn_sandbox().await;
    let id = id_of(&sb.create_intent(&[MANUAL]).await);
    let long = "v".repeat(501);
    let capture: &[BadCase] = &[
        (&[("amount_to_capture", "0")], "parameter_invalid_integer", "amount_to_capture"),
        (&[("amount_to_capture", "-5")], "parameter_invalid_integer", "amount_to_capture"),
        (&[("amount_to_capture", "1001")], "amount_too_large", "amount_to_capture"),
        (&[("amount_to_capture", "ten")], "parameter_invalid_integer", "amount_to_capture"),
        (&[("amount", "100")], "parameter_unknown", "amount"),
        (&[("metadata[k]", long.as_str())], "parameter_invalid", "metadata[k]"),
    ];
    for (form, code, param) in capture {
        let body = sb.post_json(&capture_path(&id), form, 400).await;
        assert_eq!((&body["error"]["code"], &body["error"]["param"]), (&json!(code), &json!(param)), "{form:?}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    let cancel: &[BadCase] = &[
        (&[("cancellation_reason", "bored")], "parameter_invalid", "cancellation_reason"),
        (&[("cancellation_reason", "automatic")], "parameter_invalid", "cancellation_reason"),
        (&[("reason", "duplicate")], "parameter_unknown", "reason"),
    ];
    for (form, code, param) in cancel {
        let body = sb.post_json(&cancel_path(&id), form, 400).await;
        assert_eq!((&body["error"]["code"], &body["error"]["param"]), (&json!(code), &json!(param)), "{form:?}");
    }
    assert_eq!(sb.get_json(&format!("/v1/payment_intents/{id}"), 200).await["status"], "requires_capture");

    for path in [capture_path("pi_nope"), cancel_path("pi_nope")] {
        let body = sb.post_json(&path, &[], 404).await;
        assert_eq!(body["error"]["code"], "resource_missing", "{path}");
    }
    let body =
        sb.post_json("/v1/payment_intents", &crate::helpers::intent_form(&[("capture_method", "later")]), 400).await;
    assert_eq!(
        (&body["error"]["code"], &body["error"]["param"]),
        (&json!("parameter_invalid"), &json!("capture_method"))
    );
    let session = sb
        .post_json(
            "/v1/checkout/sessions",
            &[
                ("mode", "payment"),
                ("success_url", "https://shop.example/ok"),
                ("line_items[0][price_data][currency]", "usd"),
                ("line_items[0][price_data][unit_amount]", "100"),
                ("line_items[0][price_data][product_data][name]", "Tea"),
                ("line_items[0][quantity]", "1"),
                ("payment_intent_data[capture_method]", "later"),
            ],
            400,
        )
        .await;
    assert_eq!(session["error"]["param"], "payment_intent_data[capture_method]");
}

#[test]
fn authorization_days_must_be_positive_and_at_most_31() {
    use till::config::Settings;
    for (days, valid) in [("7", true), ("0.0002", true), ("31", true), ("0", false), ("-1", false), ("31.5", false)] {
        let mut settings = Settings::default();
        settings.sandbox.authorization_days = crate::helpers::decimal(days);
        let outcome = settings.validate();
        assert_eq!(outcome.is_ok(), valid, "{days}: {outcome:?}");
        if let Err(e) = outcome {
            assert!(e.to_string().contains("sandbox.authorization_days"), "{e}");
        }
    }
}
