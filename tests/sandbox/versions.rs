//! `Stripe-Version` as Stripe reads it: a known version is served as sent, a
//! request without one with the account's default (not refused), an unknown
//! or malformed one refused with 400; each request is in the sandbox's
//! request log with what it carried, under its `Request-Id`.

use serde_json::{Value, json};
use till::sandbox::ACCOUNT_DEFAULT_VERSION;

use crate::helpers::{SECRET_KEY, TestSandbox, json_with_status, spawn_sandbox};

const TRANSFER: [(&str, &str); 3] = [("amount", "200"), ("currency", "usd"), ("destination", "acct_seller_v")];

/// A transfer POST with `version` as `Stripe-Version` (none if `None`).
async fn transfer(sb: &TestSandbox, version: Option<&str>, key: &str) -> reqwest::Response {
    let mut req = sb.client.post(sb.url("/v1/transfers")).bearer_auth(SECRET_KEY).header("Idempotency-Key", key);
    if let Some(version) = version {
        req = req.header("Stripe-Version", version);
    }
    req.form(&TRANSFER).send().await.unwrap()
}

/// The log's entry for the response's `Request-Id`.
async fn logged(sb: &TestSandbox, response: &reqwest::Response) -> Value {
    let id = response.headers()["request-id"].to_str().unwrap().to_string();
    let log = sb.get_json("/v1/sandbox/requests?limit=100", 200).await;
    let entry = log["data"].as_array().unwrap().iter().find(|e| e["id"] == id.as_str()).cloned();
    entry.unwrap_or_else(|| panic!("{id} is not in the request log: {log}"))
}

fn transfers_at_the_psp(sb: &TestSandbox) -> i64 {
    let conn = rusqlite::Connection::open(&sb.db_path).unwrap();
    conn.query_row("SELECT COUNT(*) FROM transfers", [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn a_pinned_version_is_served_and_logged_as_sent() {
    let sb = spawn_sandbox().await;
    let response = transfer(&sb, Some("2026-03-25.dahlia"), "v-pinned").await;
    assert_eq!(response.status(), 200);
    let entry = logged(&sb, &response).await;
    assert_eq!(
        entry,
        json!({
            "id": entry["id"], "object": "sandbox.request", "created_ms": entry["created_ms"],
            "method": "POST", "path": "/v1/transfers",
            "stripe_version": "2026-03-25.dahlia", "served_version": "2026-03-25.dahlia",
            "idempotency_key": "v-pinned", "status": 200,
        })
    );
    // A GET too, whatever its answer.
    let missing = sb
        .client
        .get(sb.url("/v1/refunds/re_nope"))
        .bearer_auth(SECRET_KEY)
        .header("Stripe-Version", "2024-06-20")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let entry = logged(&sb, &missing).await;
    assert_eq!(
        (&entry["method"], &entry["stripe_version"], &entry["status"]),
        (&json!("GET"), &json!("2024-06-20"), &json!(404))
    );
}

#[tokio::test]
async fn a_call_without_the_header_is_served_with_the_accounts_default_and_logged_as_such() {
    let sb = spawn_sandbox().await;
    let response = transfer(&sb, None, "v-none").await;
    assert_eq!(response.status(), 200, "not refused");
    let entry = logged(&sb, &response).await;
    assert_eq!(entry["stripe_version"], Value::Null);
    assert_eq!(entry["served_version"], ACCOUNT_DEFAULT_VERSION);
    assert_eq!(transfers_at_the_psp(&sb), 1);
}

#[tokio::test]
async fn an_unknown_or_malformed_version_is_refused_and_logged() {
    let sb = spawn_sandbox().await;
    for (n, bad) in ["2023-01-01", "latest", "2019-2-19", "2099-01-01.zinnia", "2026-03-25"].into_iter().enumerate() {
        let response = transfer(&sb, Some(bad), &format!("v-bad-{n}")).await;
        let entry = logged(&sb, &response).await;
        let body = json_with_status(response, 400).await;
        assert_eq!(
            body,
            json!({"error": {"type": "invalid_request_error", "message": format!("Invalid Stripe API version: {bad}")}})
        );
        assert_eq!(
            (&entry["stripe_version"], &entry["served_version"], &entry["status"]),
            (&json!(bad), &Value::Null, &json!(400))
        );
    }
    assert_eq!(transfers_at_the_psp(&sb), 0, "nothing was done");
    // Two headers are one bad version, as Stripe reads them.
    let twice = sb
        .client
        .get(sb.url("/v1/transfers/tr_nope"))
        .bearer_auth(SECRET_KEY)
        .header("Stripe-Version", "2019-05-16")
        .header("Stripe-Version", "2019-12-03")
        .send()
        .await
        .unwrap();
    let body = json_with_status(twice, 400).await;
    assert_eq!(body["error"]["message"], "Invalid Stripe API version: 2019-05-16, 2019-12-03");
}

#[tokio::test]
async fn the_request_log_lists_the_newest_first_and_only_the_accounts_api_requests() {
    let sb = spawn_sandbox().await;
    for n in 0..3 {
        assert_eq!(transfer(&sb, Some("2025-03-31.basil"), &format!("v-{n}")).await.status(), 200);
    }
    let wrong_key = sb.client.get(sb.url("/v1/transfers/tr_x")).bearer_auth("sk_test_wrong_wrong_wrong").send().await;
    assert_eq!(wrong_key.unwrap().status(), 401);
    assert_eq!(sb.get("/v1/sandbox/settlement_reports/2026-01-01").await.status(), 200);

    let log = sb.get_json("/v1/sandbox/requests?limit=2", 200).await;
    assert_eq!((&log["object"], &log["has_more"]), (&json!("list"), &json!(true)));
    let keys: Vec<&Value> = log["data"].as_array().unwrap().iter().map(|e| &e["idempotency_key"]).collect();
    assert_eq!(keys, [&json!("v-2"), &json!("v-1")], "newest first; the 401 and the sandbox's own URLs are not there");
    let all = sb.get_json("/v1/sandbox/requests?limit=100", 200).await;
    assert_eq!((all["data"].as_array().unwrap().len(), &all["has_more"]), (3, &json!(false)));
    for bad in ["0", "101", "ten"] {
        let body = sb.get_json(&format!("/v1/sandbox/requests?limit={bad}"), 400).await;
        assert_eq!(body["error"]["param"], "limit", "{bad}");
    }
}
