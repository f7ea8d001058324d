//! Stripe's Reporting API for the settlement report: a report run is
//! created pending, succeeds a moment later with a file, and the file's
//! contents are the day's settlement report.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{BadCase, TestSandbox, json_with_status, spawn_sandbox};

const REPORT_TYPE: &str = "balance_change_from_activity.itemized.3";

/// Today's UTC interval as unix seconds: (start, end).
fn today() -> (String, String) {
    let start = chrono::Utc::now().date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
    (start.to_string(), (start + 86_400).to_string())
}

async fn paid_intent(sb: &TestSandbox) {
    let form = [
        ("amount", "2500"),
        ("currency", "usd"),
        ("payment_method", "pm_card_visa"),
        ("confirm", "true"),
        ("automatic_payment_methods[enabled]", "true"),
        ("automatic_payment_methods[allow_redirects]", "never"),
        ("metadata[checkout_id]", "chk_r"),
        ("metadata[payment_order_id]", "po_r"),
    ];
    sb.post_json("/v1/payment_intents", &form, 200).await;
}

/// Reads the run until it is no longer pending (at most 10 s).
async fn until_final(sb: &TestSandbox, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let run = sb.get_json(&format!("/v1/reporting/report_runs/{id}"), 200).await;
        if run["status"] != "pending" {
            return run;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the run never finished: {run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_report_run_is_pending_then_succeeds_with_the_days_settlement_report() {
    // Arrange: a charge today.
    let sb = spawn_sandbox().await;
    paid_intent(&sb).await;
    let (start, end) = today();
    let form = [
        ("report_type", REPORT_TYPE),
        ("parameters[interval_start]", start.as_str()),
        ("parameters[interval_end]", end.as_str()),
    ];

    // Act: create it, twice with one idempotency key.
    let created = json_with_status(sb.post("/v1/reporting/report_runs", &form, Some("run-today")).await, 200).await;
    let replay = sb.post("/v1/reporting/report_runs", &form, Some("run-today")).await;
    assert_eq!(replay.headers().get("Idempotent-Replayed").map(|v| v.to_str().unwrap()), Some("true"));
    let replay = json_with_status(replay, 200).await;

    // Assert: Stripe's object, pending, without a result.
    assert_eq!(replay, created, "the stored reply is replayed");
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("frr_"), "{id}");
    assert_eq!(created["object"], "reporting.report_run");
    assert_eq!(created["report_type"], REPORT_TYPE);
    assert_eq!((created["status"].as_str(), created["livemode"].as_bool()), (Some("pending"), Some(false)));
    assert!(created["result"].is_null() && created["succeeded_at"].is_null() && created["error"].is_null());
    assert_eq!(
        created["parameters"],
        serde_json::json!({"interval_start": start.parse::<i64>().unwrap(),
                                                          "interval_end": end.parse::<i64>().unwrap()})
    );

    // It succeeds later, with a file at the files host (the sandbox itself).
    let run = until_final(&sb, id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(run["succeeded_at"].as_i64().unwrap() >= run["created"].as_i64().unwrap());
    let file = &run["result"];
    let file_id = file["id"].as_str().unwrap();
    assert!(file_id.starts_with("file_"), "{file}");
    assert_eq!((file["object"].as_str(), file["purpose"].as_str()), (Some("file"), Some("finance_report_run")));
    assert_eq!(file["type"], "csv");
    assert_eq!(file["url"], sb.url(&format!("/v1/files/{file_id}/contents")));

    // The file is the day's settlement report, byte for byte.
    let download = sb.get(&format!("/v1/files/{file_id}/contents")).await;
    assert_eq!(download.status(), 200);
    assert!(download.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = download.text().await.unwrap();
    let day = chrono::Utc::now().format("%Y-%m-%d");
    let shortcut = sb.get(&format!("/v1/sandbox/settlement_reports/{day}")).await.text().await.unwrap();
    assert_eq!(csv, shortcut);
    assert_eq!(file["size"].as_u64(), Some(csv.len() as u64));
    assert!(csv.lines().nth(1).unwrap().contains(",25.00,1.03,23.97,charge,"), "{csv}");
}

#[tokio::test]
async fn a_report_run_writes_the_columns_asked_for_in_their_order() {
    let sb = spawn_sandbox().await;
    paid_intent(&sb).await;
    let (start, end) = today();
    let form = [
        ("report_type", REPORT_TYPE),
        ("parameters[interval_start]", start.as_str()),
        ("parameters[interval_end]", end.as_str()),
        ("parameters[columns][0]", "payment_metadata[payment_order_id]"),
        ("parameters[columns][1]", "net"),
    ];
    let created = sb.post_json("/v1/reporting/report_runs", &form, 200).await;
    assert_eq!(created["parameters"]["columns"], serde_json::json!(["payment_metadata[payment_order_id]", "net"]));
    let run = until_final(&sb, created["id"].as_str().unwrap()).await;
    let file_id = run["result"]["id"].as_str().unwrap();
    let csv = sb.get(&format!("/v1/files/{file_id}/contents")).await.text().await.unwrap();
    assert_eq!(csv, "payment_metadata[payment_order_id],net\r\npo_r,23.97\r\n");
}

#[tokio::test]
async fn a_report_run_outside_the_interval_of_the_movements_is_empty() {
    let sb = spawn_sandbox().await;
    paid_intent(&sb).await;
    let form = [
        ("report_type", REPORT_TYPE),
        ("parameters[interval_start]", "1700000000"),
        ("parameters[interval_end]", "1700086400"),
    ];
    let created = sb.post_json("/v1/reporting/report_runs", &form, 200).await;
    let run = until_final(&sb, created["id"].as_str().unwrap()).await;
    let file_id = run["result"]["id"].as_str().unwrap();
    let csv = sb.get(&format!("/v1/files/{file_id}/contents")).await.text().await.unwrap();
    assert_eq!(csv.lines().count(), 1, "the header alone: {csv}");
}

#[tokio::test]
async fn report_runs_refuse_what_they_cannot_run() {
    let sb = spawn_sandbox().await;
    let cases: &[BadCase] = &[
        (
            &[
                ("report_type", "balance.summary.1"),
                ("parameters[interval_start]", "1"),
                ("parameters[interval_end]", "2"),
            ],
            "parameter_invalid",
            "report_type",
        ),
        (&[("parameters[interval_start]", "1"), ("parameters[interval_end]", "2")], "parameter_missing", "report_type"),
        (&[("report_type", REPORT_TYPE)], "parameter_missing", "parameters[interval_start]"),
        (
            &[("report_type", REPORT_TYPE), ("parameters[interval_start]", "100")],
            "parameter_missing",
            "parameters[interval_end]",
        ),
        (
            &[("report_type", REPORT_TYPE), ("parameters[interval_start]", "200"), ("parameters[interval_end]", "100")],
            "parameter_invalid",
            "parameters[interval_end]",
        ),
        (
            &[
                ("report_type", REPORT_TYPE),
                ("parameters[interval_start]", "yesterday"),
                ("parameters[interval_end]", "1"),
            ],
            "parameter_invalid_integer",
            "parameters[interval_start]",
        ),
        (
            &[
                ("report_type", REPORT_TYPE),
                ("parameters[interval_start]", "1"),
                ("parameters[interval_end]", "2"),
                ("parameters[columns][]", "card_number"),
            ],
            "parameter_invalid",
            "parameters[columns]",
        ),
    ];
    for (form, code, param) in cases {
        let body = sb.post_json("/v1/reporting/report_runs", form, 400).await;
        assert_eq!(body["error"]["type"], "invalid_request_error", "{form:?}");
        assert_eq!((body["error"]["code"].as_str(), body["error"]["param"].as_str()), (Some(*code), Some(*param)));
    }
    let body = sb.get_json("/v1/reporting/report_runs/frr_nope", 404).await;
    assert_eq!(body["error"]["code"], "resource_missing");
    let body = sb.get_json("/v1/files/file_nope/contents", 404).await;
    assert_eq!(body["error"]["code"], "resource_missing");
}

#[tokio::test]
async fn report_runs_and_files_need_the_secret_key() {
    let sb = spawn_sandbox().await;
    let (start, end) = today();
    let form = [
        ("report_type", REPORT_TYPE),
        ("parameters[interval_start]", start.as_str()),
        ("parameters[interval_end]", end.as_str()),
    ];
    let created = sb.post_json("/v1/reporting/report_runs", &form, 200).await;
    let id = created["id"].as_str().unwrap();
    let file_id = until_final(&sb, id).await["result"]["id"].as_str().unwrap().to_string();
    let anonymous = sb.client.post(sb.url("/v1/reporting/report_runs")).form(&form).send().await.unwrap();
    json_with_status(anonymous, 401).await;
    for path in [format!("/v1/reporting/report_runs/{id}"), format!("/v1/files/{file_id}/contents")] {
        let anonymous = sb.client.get(sb.url(&path)).send().await.unwrap();
        json_with_status(anonymous, 401).await;
        let wrong = sb.client.get(sb.url(&path)).bearer_auth("sk_test_wrong_key_000000").send().await.unwrap();
        json_with_status(wrong, 401).await;
    }
}
