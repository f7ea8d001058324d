//! `/v1/openapi.json` passes a standard validator (`openapi-spec-validator`,
//! when Python has it: `pip install openapi-spec-validator`; CI installs
//! it) and states what a client needs on every operation: each response
//! described, 401 for a bad key, formats of ids, bounds of `limit`,
//! lengths of texts, and the server's address.

use std::process::Command;

use serde_json::Value;

use crate::helpers::spawn_app_with;

fn validator_available() -> bool {
    let probe = Command::new("python3").args(["-c", "import openapi_spec_validator"]).output();
    let found = probe.is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "openapi-spec-validator is missing: `pip install openapi-spec-validator` (CI installs it)"
        );
        eprintln!(
            "SKIPPED the validator run: no python3 with openapi_spec_validator (pip install openapi-spec-validator)"
        );
    }
    found
}

#[tokio::test]
async fn the_openapi_description_validates_and_documents_every_operation() {
    let app = spawn_app_with(|s| s.server.public_url = "https://pay.shop.example".into()).await;
    let text = app.client.get(format!("{}/v1/openapi.json", app.address)).send().await.unwrap().text().await.unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();

    if validator_available() {
        let file = app.dir.path().join("openapi.json");
        std::fs::write(&file, &text).unwrap();
        let out = Command::new("python3").args(["-m", "openapi_spec_validator"]).arg(&file).output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "openapi-spec-validator refuses the description:\n{said}");
    }

    assert_eq!(doc["servers"][0]["url"], "https://pay.shop.example", "servers is server.public_url");
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let responses = op["responses"].as_object().unwrap();
            for (status, r) in responses {
                assert!(r["description"].as_str().is_some_and(|d| !d.is_empty()), "{method} {path} {status}");
            }
            assert!(responses.contains_key("401"), "{method} {path} documents 401");
            if method != "get" {
                let unavailable = &responses["503"];
                assert!(
                    unavailable["description"].as_str().unwrap().contains("storage_unavailable"),
                    "{method} {path}"
                );
                assert!(unavailable["headers"]["Retry-After"].is_object(), "{method} {path}");
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                if name == "limit" {
                    assert_eq!(
                        (p["schema"]["minimum"].as_i64(), p["schema"]["maximum"].as_i64()),
                        (Some(1), Some(100))
                    );
                }
                if name.ends_with("_id") && p["in"] == "path" && name != "seller_id" {
                    assert_eq!(p["schema"]["format"], "uuid", "{method} {path} {name}");
                }
            }
        }
    }
    assert!(operations >= 20, "{operations} operations");
    let refunds = &doc["paths"]["/v1/payments/{payment_order_id}/refunds"]["post"]["responses"];
    assert!(refunds["422"].is_object(), "a reused Idempotency-Key on a refund is documented");
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["NewOrder"]["properties"]["payment_order_id"]["format"], "uuid");
    assert_eq!(schemas["NewOrder"]["properties"]["seller_id"]["maxLength"], 64);
    assert_eq!(schemas["CreateRefundRequest"]["properties"]["reason"]["maxLength"], 500);
    assert_eq!(schemas["CreatePaymentRequest"]["properties"]["success_url"]["maxLength"], 2048);
}
