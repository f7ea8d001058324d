//! Disputes as Stripe's test mode makes them: the dispute test card's
//! charge is disputed a moment after capture (amount and fee withdrawn);
//! evidence `winning_evidence` wins it back, `losing_evidence` loses it,
//! other text leaves it under review; closing it or letting it pass its due
//! date loses it; a disputed charge cannot be refunded.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    BadCase, Line, QUICK_DISPUTE_MS, Receiver, TestSandbox, WEBHOOK_SECRET, signature_is_valid, spawn_quick_disputes,
    spawn_timed,
};

const DISPUTE_PM: (&str, &str) = ("payment_method", "pm_card_createDispute");
/// The dispute delay plus a few of the ticker's ticks (250 ms): long enough
/// for anything due to have happened.
const SETTLE: Duration = Duration::from_millis(QUICK_DISPUTE_MS + 700);

fn id_of(object: &Value) -> String {
    object["id"].as_str().unwrap().to_string()
}

/// A 20.00 USD charge of the dispute test card, with the report's metadata.
async fn disputed_charge(sb: &TestSandbox) -> Value {
    let pi = sb
        .create_intent(&[
            DISPUTE_PM,
            ("amount", "2000"),
            ("metadata[checkout_id]", "chk_d"),
            ("metadata[payment_order_id]", "po_d"),
        ])
        .await;
    assert_eq!(pi["status"], "succeeded", "the dispute card's charge succeeds first");
    pi
}

/// The dispute of a new disputed charge, once opened.
async fn open_dispute(sb: &TestSandbox) -> (Value, Value) {
    let pi = disputed_charge(sb).await;
    let dispute = sb.wait_for_dispute(&id_of(&pi)).await;
    (pi, dispute)
}

fn update_path(dispute: &Value) -> String {
    format!("/v1/disputes/{}", id_of(dispute))
}

async fn closed(sb: &TestSandbox, dispute: &Value) -> Value {
    sb.receiver.wait_for("charge.dispute.closed", &id_of(dispute)).await.event["data"]["object"].clone()
}

#[tokio::test]
async fn pm_card_create_dispute_is_disputed_after_the_delay_with_its_withdrawal() {
    // Arrange + Act: a charge of the dispute test card, then time passes.
    let sb = spawn_quick_disputes().await;
    let pi = disputed_charge(&sb).await;
    let pi_id = id_of(&pi);
    let charge = pi["latest_charge"].as_str().unwrap();
    let created = sb.receiver.wait_for_where("charge.dispute.created", |d| d["payment_intent"] == pi_id.as_str()).await;

    // Assert: Stripe's Dispute object.
    assert!(signature_is_valid(&created.signature, &created.body, WEBHOOK_SECRET));
    let d = &created.event["data"]["object"];
    let du = id_of(d);
    assert!(du.starts_with("du_"), "{du}");
    assert_eq!(d["object"], "dispute");
    assert_eq!((d["amount"].as_i64(), d["currency"].as_str()), (Some(2000), Some("usd")));
    assert_eq!((d["charge"].as_str(), d["payment_intent"].as_str()), (Some(charge), Some(pi_id.as_str())));
    assert_eq!((d["reason"].as_str(), d["status"].as_str()), (Some("fraudulent"), Some("needs_response")));
    assert_eq!(
        (&d["is_charge_refundable"], &d["livemode"], &d["metadata"]),
        (&json!(false), &json!(false), &json!({}))
    );
    let evidence = d["evidence"].as_object().unwrap();
    assert!(evidence.len() > 20 && evidence.values().all(Value::is_null), "{evidence:?}");
    assert!(evidence.contains_key("uncategorized_text") && evidence.contains_key("customer_name"));
    let due_by = d["created"].as_i64().unwrap() + 7 * 86_400;
    assert_eq!(
        d["evidence_details"],
        json!({"due_by": due_by, "has_evidence": false, "past_due": false, "submission_count": 0})
    );
    let txn = &d["balance_transactions"][0];
    assert!(txn["id"].as_str().unwrap().starts_with("txn_"));
    assert_eq!(d["balance_transactions"].as_array().unwrap().len(), 1);
    for (key, value) in [
        ("object", json!("balance_transaction")),
        ("amount", json!(-2000)),
        ("fee", json!(1500)),
        ("net", json!(-3500)),
        ("currency", json!("usd")),
        ("reporting_category", json!("dispute")),
        ("source", json!(du)),
        ("status", json!("available")),
        ("type", json!("adjustment")),
        ("description", json!(format!("Chargeback withdrawal for {charge}"))),
    ] {
        assert_eq!(txn[key], value, "{key}");
    }
    assert!(txn["created"].is_i64() && txn["available_on"].is_i64());
    let withdrawn = sb.receiver.wait_for("charge.dispute.funds_withdrawn", &du).await;
    assert!(signature_is_valid(&withdrawn.signature, &withdrawn.body, WEBHOOK_SECRET));
    assert_eq!(&sb.get_json(&format!("/v1/disputes/{du}"), 200).await, d);

    // The balance and the report: the charge, then the withdrawal and its fee.
    let lines = sb.balance_lines(&pi_id);
    assert_eq!(
        lines.iter().map(|l| (l.category.as_str(), l.amount, l.fee, l.net)).collect::<Vec<_>>(),
        vec![("charge", 2000, 88, 1912), ("dispute", -2000, 1500, -3500)]
    );
    let report = sb.todays_report().await;
    let line = report.lines().find(|l| l.contains(",dispute,")).unwrap_or_else(|| panic!("{report}"));
    assert!(
        line.contains(&format!(
            ",-20.00,15.00,-35.00,dispute,{du},{pi_id},Chargeback withdrawal for {charge},chk_d,po_d"
        )),
        "{line}"
    );
    assert_eq!(sb.receiver.events("charge.dispute.created", &du).len(), 1, "opened once");
}

#[tokio::test]
async fn the_hosted_dispute_card_is_offered_and_disputed() {
    let sb = spawn_quick_disputes().await;
    let session = id_of(&sb.create_session(&[]).await);
    let page = sb.client.get(sb.url(&format!("/pay/{session}"))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("4000 0000 0000 0259") && page.contains("succeeds, then disputed (fraudulent)"), "{page}");

    assert_eq!(sb.pay(&session, "4000000000000259").await.status(), 303);
    let session = sb.get_json(&format!("/v1/checkout/sessions/{session}"), 200).await;
    assert_eq!((session["status"].as_str(), session["payment_status"].as_str()), (Some("complete"), Some("paid")));
    let pi_id = session["payment_intent"].as_str().unwrap();
    let dispute = sb.wait_for_dispute(pi_id).await;
    assert_eq!((dispute["amount"].as_i64(), dispute["status"].as_str()), (Some(2500), Some("needs_response")));
    let report = sb.todays_report().await;
    assert!(report.lines().any(|l| l.contains(",dispute,") && l.ends_with(",chk_1,po_1")), "{report}");
    let conn = rusqlite::Connection::open(&sb.db_path).unwrap();
    let flagged: i64 =
        conn.query_row("SELECT card_disputes FROM payment_intents WHERE id = ?1", [pi_id], |r| r.get(0)).unwrap();
    assert_eq!(flagged, 1, "the intent remembers its card disputes, never the number");
}

#[tokio::test]
async fn a_manual_dispute_card_is_disputed_once_captured_and_never_when_canceled() {
    let sb = spawn_quick_disputes().await;
    let manual = [DISPUTE_PM, ("amount", "2000"), ("capture_method", "manual")];
    let captured = id_of(&sb.create_intent(&manual).await);
    let canceled = id_of(&sb.create_intent(&manual).await);
    tokio::time::sleep(SETTLE).await;
    assert!(sb.disputes_of(&captured).await.is_empty(), "an authorization is not disputed");

    sb.post_json(&format!("/v1/payment_intents/{captured}/capture"), &[("amount_to_capture", "1500")], 200).await;
    sb.post_json(&format!("/v1/payment_intents/{canceled}/cancel"), &[], 200).await;
    let dispute = sb.wait_for_dispute(&captured).await;
    assert_eq!(dispute["amount"], 1500, "what was captured");
    tokio::time::sleep(SETTLE).await;
    assert!(sb.disputes_of(&canceled).await.is_empty(), "a released authorization is never disputed");
}

#[tokio::test]
async fn the_disputed_amount_is_what_was_received_and_not_refunded() {
    // Disputes a second after capture, so refunds come first.
    let sb = spawn_timed("7", 1_000, "15.00").await;
    let partly = id_of(&disputed_charge(&sb).await);
    sb.post_json("/v1/refunds", &[("payment_intent", &partly), ("amount", "500")], 200).await;
    let wholly = id_of(&disputed_charge(&sb).await);
    sb.post_json("/v1/refunds", &[("payment_intent", &wholly)], 200).await;

    assert_eq!(sb.wait_for_dispute(&partly).await["amount"], 1500);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(sb.disputes_of(&wholly).await.is_empty(), "nothing left to dispute");
}

#[tokio::test]
async fn the_dispute_fee_follows_the_config_and_the_currency() {
    let sb = spawn_timed("7", QUICK_DISPUTE_MS, "12.345").await;
    let usd = id_of(&disputed_charge(&sb).await);
    let jpy = id_of(&sb.create_intent(&[DISPUTE_PM, ("amount", "5000"), ("currency", "jpy")]).await);
    let fee = |d: &Value| d["balance_transactions"][0]["fee"].as_i64();
    assert_eq!(fee(&sb.wait_for_dispute(&usd).await), Some(1235), "12.345 USD → 1235 cents");
    assert_eq!(fee(&sb.wait_for_dispute(&jpy).await), Some(12), "12.345 JPY → 12 yen");
}

#[tokio::test]
async fn winning_evidence_wins_and_gives_the_amount_back() {
    // Arrange
    let sb = spawn_quick_disputes().await;
    let (pi, dispute) = open_dispute(&sb).await;
    let (pi_id, du, charge) = (id_of(&pi), id_of(&dispute), pi["latest_charge"].as_str().unwrap().to_string());

    // Act: submit the winning evidence (submit defaults to true).
    let submitted =
        sb.post_json(&update_path(&dispute), &[("evidence[uncategorized_text]", "winning_evidence")], 200).await;

    // Assert: under review at once, then won a moment later.
    assert_eq!(submitted["status"], "under_review");
    assert_eq!(submitted["evidence"]["uncategorized_text"], "winning_evidence");
    assert_eq!(submitted["evidence_details"]["submission_count"], 1);
    assert_eq!(submitted["evidence_details"]["has_evidence"], true);
    let updated = sb.receiver.wait_for("charge.dispute.updated", &du).await;
    assert_eq!(updated.event["data"]["object"]["status"], "under_review");
    let won = closed(&sb, &dispute).await;
    assert_eq!(won["status"], "won");
    let reinstated = sb.receiver.wait_for("charge.dispute.funds_reinstated", &du).await;
    assert!(signature_is_valid(&reinstated.signature, &reinstated.body, WEBHOOK_SECRET));
    let txns = won["balance_transactions"].as_array().unwrap();
    assert_eq!(txns.len(), 2);
    assert_eq!(
        (&txns[1]["amount"], &txns[1]["fee"], &txns[1]["net"], &txns[1]["reporting_category"], &txns[1]["source"]),
        (&json!(2000), &json!(0), &json!(2000), &json!("dispute_reversal"), &json!(du))
    );
    assert_eq!(txns[1]["description"], format!("Chargeback reversal for {charge}"));
    assert_eq!(
        sb.balance_lines(&pi_id).last().unwrap(),
        &Line {
            category: "dispute_reversal".into(),
            amount: 2000,
            fee: 0,
            net: 2000,
            source_id: du.clone(),
            description: Some(format!("Chargeback reversal for {charge}")),
        }
    );
    let report = sb.todays_report().await;
    let reversal = report.lines().find(|l| l.contains(",dispute_reversal,")).unwrap();
    assert!(reversal.contains(&format!(",20.00,0.00,20.00,dispute_reversal,{du},{pi_id},")), "{reversal}");
    assert!(reversal.ends_with(",chk_d,po_d"), "{reversal}");

    // Final: no more updates, no closing; a won charge may be refunded.
    let again = sb.post_json(&update_path(&dispute), &[("evidence[uncategorized_text]", "more")], 400).await;
    assert_eq!(again["error"]["code"], "dispute_already_closed");
    let close = sb.post_json(&format!("{}/close", update_path(&dispute)), &[], 400).await;
    assert_eq!(close["error"]["code"], "dispute_already_closed");
    sb.post_json("/v1/refunds", &[("payment_intent", &pi_id), ("amount", "100")], 200).await;
}

#[tokio::test]
async fn losing_evidence_loses_and_the_charge_cannot_be_refunded() {
    let sb = spawn_quick_disputes().await;
    let (pi, dispute) = open_dispute(&sb).await;
    let pi_id = id_of(&pi);
    let charge = pi["latest_charge"].as_str().unwrap();
    let refused = sb.post_json("/v1/refunds", &[("payment_intent", &pi_id)], 400).await;
    assert_eq!(refused["error"]["code"], "charge_disputed", "not while it is open");
    assert_eq!(refused["error"]["message"], format!("Charge {charge} has been charged back; cannot issue a refund."));

    sb.post_json(&update_path(&dispute), &[("evidence[uncategorized_text]", "losing_evidence")], 200).await;
    let lost = closed(&sb, &dispute).await;
    assert_eq!(lost["status"], "lost");
    assert_eq!(lost["balance_transactions"].as_array().unwrap().len(), 1, "no reversal");
    assert!(sb.receiver.events("charge.dispute.funds_reinstated", &id_of(&dispute)).is_empty());
    let refused = sb.post_json("/v1/refunds", &[("payment_intent", &pi_id), ("amount", "100")], 400).await;
    assert_eq!(refused["error"]["code"], "charge_disputed");
    assert_eq!(sb.balance_lines(&pi_id).len(), 2);
}

#[tokio::test]
async fn other_evidence_stays_under_review_until_closed() {
    let sb = spawn_quick_disputes().await;
    let (_, dispute) = open_dispute(&sb).await;
    let form = [("evidence[uncategorized_text]", "The customer signed for the parcel.")];
    assert_eq!(sb.post_json(&update_path(&dispute), &form, 200).await["status"], "under_review");
    tokio::time::sleep(SETTLE).await;
    let still = sb.get_json(&update_path(&dispute), 200).await;
    assert_eq!(still["status"], "under_review");
    assert!(sb.receiver.events("charge.dispute.closed", &id_of(&dispute)).is_empty());
    let again =
        sb.post_json(&update_path(&dispute), &[("evidence[uncategorized_text]", "winning_evidence")], 400).await;
    assert_eq!(again["error"]["type"], "invalid_request_error");
    assert_eq!(again["error"]["code"], "dispute_already_submitted");

    let accepted = sb.post_json(&format!("{}/close", update_path(&dispute)), &[], 200).await;
    assert_eq!(accepted["status"], "lost");
    assert_eq!(closed(&sb, &dispute).await["status"], "lost");
}

#[tokio::test]
async fn evidence_may_be_staged_without_submitting() {
    let sb = spawn_quick_disputes().await;
    let (_, dispute) = open_dispute(&sb).await;
    let du = id_of(&dispute);
    let staged = sb
        .post_json(
            &update_path(&dispute),
            &[("evidence[uncategorized_text]", "winning_evidence"), ("submit", "false"), ("metadata[case]", "42")],
            200,
        )
        .await;
    assert_eq!(staged["status"], "needs_response");
    assert_eq!(
        staged["evidence_details"],
        json!({"due_by": dispute["evidence_details"]["due_by"], "has_evidence": true, "past_due": false,
               "submission_count": 0})
    );
    assert_eq!(staged["metadata"], json!({"case": "42"}));
    sb.receiver.wait_for("charge.dispute.updated", &du).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(sb.get_json(&update_path(&dispute), 200).await["status"], "needs_response", "nothing to decide");

    // Submitting later sends the staged evidence.
    let submitted = sb.post_json(&update_path(&dispute), &[("metadata[case]", "")], 200).await;
    assert_eq!((submitted["status"].as_str(), &submitted["metadata"]), (Some("under_review"), &json!({})));
    assert_eq!(closed(&sb, &dispute).await["status"], "won");
}

#[tokio::test]
async fn closing_accepts_the_dispute() {
    let sb = spawn_quick_disputes().await;
    let (_, dispute) = open_dispute(&sb).await;
    let close = format!("{}/close", update_path(&dispute));
    let lost = sb.post_json(&close, &[], 200).await;
    assert_eq!(lost["status"], "lost");
    let event = sb.receiver.wait_for("charge.dispute.closed", &id_of(&dispute)).await;
    assert!(signature_is_valid(&event.signature, &event.body, WEBHOOK_SECRET));
    let again = sb.post_json(&close, &[], 400).await;
    assert_eq!(again["error"]["code"], "dispute_already_closed");
    assert_eq!(again["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn a_dispute_left_past_its_due_date_is_lost() {
    let sb = spawn_quick_disputes().await;
    let (_, dispute) = open_dispute(&sb).await;
    // Seven days pass.
    let conn = rusqlite::Connection::open(&sb.db_path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let past = chrono::Utc::now().timestamp() - 1;
    conn.execute("UPDATE disputes SET due_by = ?2 WHERE id = ?1", rusqlite::params![id_of(&dispute), past]).unwrap();

    let lost = closed(&sb, &dispute).await;
    assert_eq!(lost["status"], "lost");
    assert_eq!(lost["evidence_details"]["past_due"], true);
    assert_eq!(lost["evidence_details"]["submission_count"], 0);
}

#[tokio::test]
async fn disputes_are_listed_newest_first_and_filtered() {
    let sb = spawn_quick_disputes().await;
    let mut opened = Vec::new();
    for _ in 0..3 {
        let (pi, dispute) = open_dispute(&sb).await;
        opened.push((id_of(&pi), id_of(&dispute), pi["latest_charge"].as_str().unwrap().to_string()));
    }
    let ids = |list: &Value| list["data"].as_array().unwrap().iter().map(id_of).collect::<Vec<_>>();
    let all = sb.get_json("/v1/disputes", 200).await;
    assert_eq!(
        (&all["object"], &all["url"], &all["has_more"]),
        (&json!("list"), &json!("/v1/disputes"), &json!(false))
    );
    assert_eq!(ids(&all), vec![opened[2].1.clone(), opened[1].1.clone(), opened[0].1.clone()]);
    let first_page = sb.get_json("/v1/disputes?limit=2", 200).await;
    assert_eq!((ids(&first_page).len(), &first_page["has_more"]), (2, &json!(true)));
    let next = sb.get_json(&format!("/v1/disputes?limit=2&starting_after={}", opened[1].1), 200).await;
    assert_eq!((ids(&next), &next["has_more"]), (vec![opened[0].1.clone()], &json!(false)));
    let by_intent = sb.get_json(&format!("/v1/disputes?payment_intent={}", opened[1].0), 200).await;
    assert_eq!(ids(&by_intent), vec![opened[1].1.clone()]);
    let by_charge = sb.get_json(&format!("/v1/disputes?charge={}", opened[0].2), 200).await;
    assert_eq!(ids(&by_charge), vec![opened[0].1.clone()]);
    assert!(ids(&sb.get_json("/v1/disputes?payment_intent=pi_none", 200).await).is_empty());

    for (query, code, param) in [
        ("limit=0", "parameter_invalid_integer", "limit"),
        ("limit=101", "parameter_invalid_integer", "limit"),
        ("starting_after=du_nope", "resource_missing", "starting_after"),
        ("status=lost", "parameter_unknown", "status"),
    ] {
        let body = sb.get_json(&format!("/v1/disputes?{query}"), 400).await;
        assert_eq!((&body["error"]["code"], &body["error"]["param"]), (&json!(code), &json!(param)), "{query}");
    }
}

#[tokio::test]
async fn bad_dispute_inputs_name_the_param() {
    let sb = spawn_quick_disputes().await;
    let (_, dispute) = open_dispute(&sb).await;
    let too_long = "x".repeat(20_001);
    let cases: &[BadCase] = &[
        (&[("evidence[uncategorized_text]", too_long.as_str())], "parameter_invalid", "evidence[uncategorized_text]"),
        (&[("evidence[customer_name]", "Ann")], "parameter_invalid", "evidence[customer_name]"),
        (&[("evidence[nonsense]", "x")], "parameter_unknown", "evidence[nonsense]"),
        (&[("submit", "maybe")], "", "submit"),
        (&[("reason", "general")], "parameter_unknown", "reason"),
    ];
    for (form, code, param) in cases {
        let body = sb.post_json(&update_path(&dispute), form, 400).await;
        assert_eq!(body["error"]["param"], *param, "{body}");
        if !code.is_empty() {
            assert_eq!(body["error"]["code"], *code, "{body}");
        }
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    let longest = "x".repeat(20_000);
    let staged = sb
        .post_json(&update_path(&dispute), &[("evidence[uncategorized_text]", &longest), ("submit", "false")], 200)
        .await;
    assert_eq!(staged["status"], "needs_response");
    let body = sb.post_json(&format!("{}/close", update_path(&dispute)), &[("now", "1")], 400).await;
    assert_eq!((&body["error"]["code"], &body["error"]["param"]), (&json!("parameter_unknown"), &json!("now")));

    assert_eq!(sb.get_json("/v1/disputes/du_nope", 404).await["error"]["code"], "resource_missing");
    assert_eq!(sb.post_json("/v1/disputes/du_nope", &[], 404).await["error"]["code"], "resource_missing");
    assert_eq!(sb.post_json("/v1/disputes/du_nope/close", &[], 404).await["error"]["code"], "resource_missing");
}

#[tokio::test]
async fn faults_hit_the_dispute_routes_but_never_the_ticker() {
    let sb = spawn_quick_disputes().await;
    let pi = disputed_charge(&sb).await;
    sb.set_faults(json!({"error_rate": 1.0})).await;
    let created = sb.receiver.wait_for_where("charge.dispute.created", |d| d["payment_intent"] == pi["id"]).await;
    let du = id_of(&created.event["data"]["object"]);
    for response in [sb.get(&format!("/v1/disputes/{du}")).await, sb.get("/v1/disputes").await] {
        assert_eq!(response.status(), 500);
    }
    assert_eq!(sb.post(&format!("/v1/disputes/{du}/close"), &[], None).await.status(), 500);
    sb.set_faults(json!({"error_rate": 0.0})).await;
    assert_eq!(sb.get_json(&format!("/v1/disputes/{du}"), 200).await["status"], "needs_response");
}

#[test]
fn dispute_settings_are_checked_at_start() {
    use till::config::Settings;
    let mut settings = Settings::default();
    assert_eq!((settings.sandbox.dispute_after_ms, settings.sandbox.dispute_fee.to_string()), (3_000, "15.00".into()));
    settings.sandbox.dispute_after_ms = 3_600_001;
    settings.sandbox.dispute_fee = crate::helpers::decimal("-1");
    let message = settings.validate().unwrap_err().to_string();
    assert!(message.contains("sandbox.dispute_after_ms") && message.contains("sandbox.dispute_fee"), "{message}");
    settings.sandbox.dispute_after_ms = 3_600_000;
    settings.sandbox.dispute_fee = crate::helpers::decimal("0");
    settings.validate().unwrap();
}

#[tokio::test]
async fn report_runs_carry_the_dispute_lines_with_the_others() {
    // Arrange: a dispute won today, so the day has its charge, withdrawal and reversal.
    let sb = spawn_quick_disputes().await;
    let (pi, dispute) = open_dispute(&sb).await;
    sb.post_json(&update_path(&dispute), &[("evidence[uncategorized_text]", "winning_evidence")], 200).await;
    closed(&sb, &dispute).await;
    let start = chrono::Utc::now().date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
    let (start, end) = (start.to_string(), (start + 86_400).to_string());

    // Act: Stripe's Reporting API over today.
    let form = [
        ("report_type", "balance_change_from_activity.itemized.3"),
        ("parameters[interval_start]", start.as_str()),
        ("parameters[interval_end]", end.as_str()),
        ("parameters[columns][0]", "reporting_category"),
        ("parameters[columns][1]", "gross"),
        ("parameters[columns][2]", "fee"),
        ("parameters[columns][3]", "source_id"),
        ("parameters[columns][4]", "payment_metadata[payment_order_id]"),
    ];
    let run = sb.post_json("/v1/reporting/report_runs", &form, 200).await;
    let run = sb.wait_until_final(&id_of(&run)).await;

    // Assert
    let file = run["result"]["id"].as_str().unwrap();
    let csv = sb.get(&format!("/v1/files/{file}/contents")).await.text().await.unwrap();
    let du = id_of(&dispute);
    let charge = pi["latest_charge"].as_str().unwrap();
    assert_eq!(
        csv,
        format!(
            "reporting_category,gross,fee,source_id,payment_metadata[payment_order_id]\r\n\
             charge,20.00,0.88,{charge},po_d\r\ndispute,-20.00,15.00,{du},po_d\r\n\
             dispute_reversal,20.00,0.00,{du},po_d\r\n"
        )
    );
}

#[tokio::test]
async fn a_further_endpoint_gets_the_events_it_subscribed_to_signed_with_its_secret() {
    // Arrange: a shop's endpoint for authorizations, cancellations and disputes.
    let sb = spawn_quick_disputes().await;
    let shop = Receiver::start();
    let endpoint = sb
        .post_json(
            "/v1/webhook_endpoints",
            &[
                ("url", shop.url.as_str()),
                ("enabled_events[]", "payment_intent.amount_capturable_updated"),
                ("enabled_events[]", "payment_intent.canceled"),
                ("enabled_events[]", "charge.dispute.created"),
                ("enabled_events[]", "charge.dispute.closed"),
            ],
            200,
        )
        .await;
    let secret = endpoint["secret"].as_str().unwrap().to_string();

    // Act: authorize and cancel one charge; dispute another and accept it.
    let authorized = id_of(&sb.create_intent(&[("capture_method", "manual")]).await);
    sb.post_json(&format!("/v1/payment_intents/{authorized}/cancel"), &[], 200).await;
    let (pi, dispute) = open_dispute(&sb).await;
    sb.post_json(&format!("{}/close", update_path(&dispute)), &[], 200).await;

    // Assert: each arrives signed with the endpoint's own secret; nothing else.
    let du = id_of(&dispute);
    for (kind, id) in [
        ("payment_intent.amount_capturable_updated", authorized.as_str()),
        ("payment_intent.canceled", authorized.as_str()),
        ("charge.dispute.created", du.as_str()),
        ("charge.dispute.closed", du.as_str()),
    ] {
        let got = shop.wait_for(kind, id).await;
        assert!(signature_is_valid(&got.signature, &got.body, &secret), "{kind}");
        assert!(!signature_is_valid(&got.signature, &got.body, WEBHOOK_SECRET), "{kind}");
    }
    assert!(shop.events("charge.dispute.funds_withdrawn", &du).is_empty(), "not subscribed");
    assert!(shop.events("payment_intent.succeeded", &id_of(&pi)).is_empty(), "not subscribed");
}
