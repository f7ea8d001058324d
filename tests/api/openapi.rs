//! `/v1/openapi.json` is generated from the routes and describes each one.

use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_openapi_description_lists_every_merchant_route() {
    let app = spawn_app().await;
    let resp = app.client.get(format!("{}/v1/openapi.json", app.address)).send().await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    let doc: Value = resp.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/v1/payments", "post"),
        ("/v1/payments", "get"),
        ("/v1/payments/{payment_order_id}", "get"),
        ("/v1/checkouts/{checkout_id}", "get"),
        ("/v1/wallets/{seller_id}", "get"),
        ("/v1/webhook_endpoints", "post"),
        ("/v1/webhook_endpoints", "get"),
        ("/v1/alerts", "get"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is described");
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path} has responses");
        // Every documented route answers (401 without a key, not 404).
        let url = format!(
            "{}{}",
            app.address,
            path.replace("{payment_order_id}", "x").replace("{checkout_id}", "x").replace("{seller_id}", "x")
        );
        let status = app.client.request(method.to_uppercase().parse().unwrap(), url).send().await.unwrap().status();
        assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    let schemas = &doc["components"]["schemas"];
    for name in ["CreatePaymentRequest", "CheckoutView", "OrderView", "ErrorBody", "WalletView"] {
        assert!(schemas[name].is_object(), "schema {name}");
    }
    assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
}
