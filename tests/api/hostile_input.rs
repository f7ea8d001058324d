//! What an attacker (or a careless client) sends to the merchant API, from
//! issue 13: bodies that are not JSON or hold more than one value, bodies
//! that never finish, the same JSON re-serialized under one idempotency
//! key, a lower-case auth scheme, a revoked key still in a cache, and error
//! objects without `param`.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{OnDatabase, hosted_body, spawn_app, spawn_app_with};

fn assert_param_null(err: &Value, what: &str) {
    let error = err["error"].as_object().unwrap_or_else(|| panic!("{what}: {err}"));
    assert!(error.contains_key("param"), "{what}: param is present: {err}");
    assert!(error["param"].is_null(), "{what}: {err}");
}

#[tokio::test]
async fn every_error_object_has_a_param_null_when_no_field_is_at_fault() {
    let app = spawn_app().await;
    let unauthorized = app.client.get(format!("{}/v1/payments", app.address)).send().await.unwrap();
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    assert_param_null(&unauthorized.json().await.unwrap(), "401");
    let not_json = app
        .client
        .post(format!("{}/v1/payments", app.address))
        .bearer_auth(&app.api_key)
        .header("Content-Type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    assert_param_null(&not_json.json().await.unwrap(), "syntax error");
    let missing = app.get(&format!("/v1/payments/{}", crate::helpers::uuid())).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_param_null(&missing.json().await.unwrap(), "404");
    // A field at fault is still named.
    let limit = app.get("/v1/payments?limit=0").await;
    assert_eq!(limit.json::<Value>().await.unwrap()["error"]["param"], "limit");
}

#[tokio::test]
async fn a_json_body_must_be_sent_as_json_and_be_one_value() {
    let app = spawn_app().await;
    let body = hosted_body(&[("seller_a", "5.00", "USD")]).to_string();
    let post = |content_type: &'static str, body: String| {
        app.client
            .post(format!("{}/v1/payments", app.address))
            .bearer_auth(&app.api_key)
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let resp = post(content_type, body.clone()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], "content_type_invalid", "{content_type}");
    }
    for trailing in [format!("{body}{body}"), format!("{body} x"), format!("{body}]")] {
        let resp = post("application/json", trailing).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "body_invalid");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_events"), 0, "nothing stored");
    // With its charset, as many clients send it, it is JSON.
    let resp = post("application/json; charset=utf-8", body).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

/// Sends the head of a POST whose body never finishes, and returns the
/// status line the server answers with.
async fn trickle(address: &str, path: &str, headers: &str) -> String {
    let host = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: 1000\r\n\r\n{{\"a\"");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // The server must answer and close by itself; the test only bounds how long it waits for that.
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server still waits for a body that never comes");
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_body_that_never_finishes_is_cut_off() {
    let app = spawn_app_with(|s| s.server.body_timeout_ms = 300).await;
    let json = "Content-Type: application/json\r\n";
    let auth = format!("Authorization: Bearer {}\r\n{json}", app.api_key);
    assert!(trickle(&app.address, "/v1/payments", &auth).await.contains("408"));
    assert!(trickle(&app.address, "/webhooks/psp", json).await.contains("408"));
    // The dashboard's forms too: the sign-in form answers, it does not wait.
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    assert!(trickle(&app.address, "/admin/login", form).await.starts_with("HTTP/1.1 4"));
}

#[tokio::test]
async fn the_same_json_re_serialized_under_one_idempotency_key_replays() {
    let app = spawn_app().await;
    let body = json!({"url": "https://shop.example/hooks", "enabled_events": ["payment_order.succeeded"]});
    let first = app.post_json("/v1/webhook_endpoints", &body, Some("reordered")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let reordered =
        "{\n  \"enabled_events\" : [ \"payment_order.succeeded\" ],\n  \"url\":\"https://shop.example/hooks\"\n}";
    let again = app
        .client
        .post(format!("{}/v1/webhook_endpoints", app.address))
        .bearer_auth(&app.api_key)
        .header("Idempotency-Key", "reordered")
        .header("Content-Type", "application/json")
        .body(reordered)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["Idempotent-Replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_endpoints"), 1);
}

#[tokio::test]
async fn the_bearer_scheme_is_read_in_any_case() {
    let app = spawn_app().await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let resp = app
            .client
            .get(format!("{}/v1/payments", app.address))
            .header("Authorization", format!("{scheme} {}", app.api_key))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{scheme}");
    }
}

#[tokio::test]
async fn a_key_revoked_by_the_cli_stops_working_in_the_running_server_within_a_second() {
    let app = spawn_app().await;
    let key = app.ctx.db.write_now(|tx| till::api_keys::create(tx, "to revoke")).unwrap();
    let get = || app.client.get(format!("{}/v1/payments", app.address)).bearer_auth(&key.key).send();
    assert_eq!(get().await.unwrap().status(), StatusCode::OK, "the key works and is cached");
    let revoke = Command::new(env!("CARGO_BIN_EXE_till"))
        .args(["--config", crate::helpers::empty_config(), "api-key", "revoke", &key.id])
        .on_database(&app.settings.database)
        .env("TILL_LOG__LEVEL", "error")
        .output()
        .unwrap();
    assert!(revoke.status.success(), "{revoke:?}");
    tokio::time::sleep(till::api_keys::KeyCache::TTL + Duration::from_millis(100)).await;
    assert_eq!(get().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/v1/payments").await.status(), StatusCode::OK, "other keys still work");
}
