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
        ("/v1/webhook_endpoints/{id}", "get"),
        ("/v1/webhook_endpoints/{id}", "post"),
        ("/v1/webhook_endpoints/{id}", "patch"),
        ("/v1/webhook_endpoints/{id}", "delete"),
        ("/v1/webhook_endpoints/{id}/rotate_secret", "post"),
        ("/v1/webhook_endpoints/{id}/deliveries", "get"),
        ("/v1/events", "get"),
        ("/v1/events/{id}", "get"),
        ("/v1/events/{id}/resend", "post"),
        ("/v1/sellers", "get"),
        ("/v1/alerts", "get"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is described");
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path} has responses");
        // Every documented route answers (401 without a key, not 404).
        let url = format!(
            "{}{}",
            app.address,
            path.replace("{payment_order_id}", "x")
                .replace("{checkout_id}", "x")
                .replace("{seller_id}", "x")
                .replace("{id}", "x")
        );
        let status = app.client.request(method.to_uppercase().parse().unwrap(), url).send().await.unwrap().status();
        assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    let schemas = &doc["components"]["schemas"];
    for name in [
        "CreatePaymentRequest",
        "CheckoutView",
        "OrderView",
        "ErrorBody",
        "WalletView",
        "EndpointView",
        "UpdateWebhookEndpointRequest",
        "DeliveryView",
        "AttemptView",
        "EventView",
        "ResendEventRequest",
        "CheckoutStatus",
    ] {
        assert!(schemas[name].is_object(), "schema {name}");
    }
    // The new fields are described.
    let create = &schemas["CreatePaymentRequest"]["properties"];
    assert!(create["description"].is_object() && create["metadata"].is_object());
    assert!(schemas["CheckoutView"]["properties"]["status"].is_object());
    assert!(schemas["OrderView"]["properties"]["metadata"].is_object());
    let list = &doc["paths"]["/v1/payments"]["get"]["parameters"];
    assert!(list.as_array().unwrap().iter().any(|p| p["name"] == "metadata"), "{list}");
    assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
}
