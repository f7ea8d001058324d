//! `GET /metrics` in Prometheus' text format: on `metrics.bind`, or on the
//! public port only with `metrics.token`; never there by default.

use reqwest::StatusCode;

use crate::helpers::{spawn_app, spawn_app_with};

/// The value of the first sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_payments_psp_calls_the_queue_and_commits() {
    let app = spawn_app_with(|s| s.metrics.bind = "127.0.0.1:0".into()).await;
    let done = app.paid_checkout(&[("seller_a", "25.00", "USD")]).await;
    assert_eq!(done["orders"][0]["status"], "SUCCESS");
    let url = app.metrics.clone().expect("metrics.bind serves /metrics");

    let resp = app.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = resp.text().await.unwrap();

    // Every sample line is `name{labels} value`, every metric has HELP and TYPE.
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (name, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{line}");
        assert!(name.starts_with("till_"), "{line}");
    }
    for metric in [
        "till_http_requests_total",
        "till_http_request_duration_seconds",
        "till_psp_calls_total",
        "till_psp_call_duration_seconds",
        "till_db_commit_batch_size",
        "till_db_commit_duration_seconds",
        "till_db_write_reruns_total",
        "till_payment_orders",
        "till_queue_jobs",
        "till_dead_letters",
        "till_webhook_backlog",
        "till_alerts_open",
        "till_storage_available",
    ] {
        assert!(text.contains(&format!("# TYPE {metric} ")), "{metric} is exposed:\n{text}");
    }
    // Routes by pattern, never by id.
    let created = r#"till_http_requests_total{method="POST",route="/v1/payments",status="201"}"#;
    assert!(sample(&text, created).is_some_and(|n| n >= 1.0), "{text}");
    assert!(!text.contains(done["checkout_id"].as_str().unwrap()), "no ids in labels");
    assert!(sample(&text, r#"till_payment_orders{status="SUCCESS"}"#).is_some_and(|n| n >= 1.0));
    assert!(text.contains(r#"till_psp_calls_total{operation="POST /v1/checkout/sessions",outcome="ok"}"#), "{text}");
    let engine = if app.is_postgres() { "postgres" } else { "sqlite" };
    let commits = format!(r#"till_db_commit_batch_size_count{{engine="{engine}"}}"#);
    assert!(sample(&text, &commits).is_some_and(|n| n >= 1.0), "{text}");
    assert_eq!(sample(&text, "till_storage_available"), Some(1.0));
    assert_eq!(sample(&text, "till_dead_letters"), Some(0.0));

    // The public port has no /metrics without a token.
    let public = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn on_the_public_port_metrics_need_the_token() {
    let token = "metrics-token-0123456789abcdef";
    let app = spawn_app_with(|s| s.metrics.token = token.into()).await;
    assert!(app.metrics.is_none(), "no port of their own unless metrics.bind");
    let url = format!("{}/metrics", app.address);
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let wrong = app.client.get(&url).bearer_auth("metrics-token-0123456789abcdeX").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let api_key = app.client.get(&url).bearer_auth(&app.api_key).send().await.unwrap();
    assert_eq!(api_key.status(), StatusCode::UNAUTHORIZED, "a merchant API key is not the metrics token");
    let right = app.client.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(right.status(), StatusCode::OK);
    assert!(right.text().await.unwrap().contains("till_http_requests_total"));
}

#[tokio::test]
async fn by_default_metrics_are_on_loopback_and_not_on_the_public_port() {
    assert_eq!(till::config::Settings::default().metrics.bind, "127.0.0.1:9464");
    let app = spawn_app().await; // metrics.bind = "" in tests: no fixed port
    assert!(app.metrics.is_none());
    let resp = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}
