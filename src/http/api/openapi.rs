//! What every operation of the OpenAPI description shares, added once
//! here to the description the routes generate rather than to each route:
//! a description for each response, the 401 of a missing or bad API key,
//! the 503 a write answers when the storage fails, the 422 of a reused
//! `Idempotency-Key`, the formats and limits of ids and texts (the same
//! constants the parsers check), and the server's address.

use serde_json::{Value, json};

use crate::http::api::{payments, reconciliation, sellers};

/// The description with the shared parts added; `public_url` (till's own
/// base, `server.public_url`) is its server, when given.
/// (JSON, not utoipa's types: those cannot say everything added here.)
pub fn complete(doc: &utoipa::openapi::OpenApi, public_url: Option<&str>) -> Value {
    let mut json = serde_json::to_value(doc).unwrap_or_default();
    if let Some(url) = public_url {
        json["servers"] = json!([{"url": url, "description": "this till"}]);
    }
    if let Some(paths) = json.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else { continue };
            for (method, op) in item.iter_mut() {
                operation(method, op);
            }
        }
    }
    let schemas = json.get_mut("components").and_then(|c| c.get_mut("schemas")).and_then(Value::as_object_mut);
    if let Some(schemas) = schemas {
        for (name, schema) in schemas.iter_mut() {
            limits(name, schema);
        }
    }
    json
}

fn error_response(description: &str) -> Value {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
}

/// What a status means on every route, for the responses a route did not describe.
fn described(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "400" => "The request is not valid: the error's `code` and `param` say what to change",
        "401" => "The API key is missing, unknown or revoked (`api_key_invalid`)",
        "404" => "There is no such object",
        "409" => "The object's state does not allow this",
        "413" => "The body is larger than allowed",
        "422" => "The Idempotency-Key was used before with another body (`idempotency_key_reused`)",
        "502" => "The PSP did not answer as expected; nothing was changed",
        "503" => "till cannot do this now; send the same request again after `Retry-After` seconds",
        _ => "See the error's `code`",
    }
}

fn operation(method: &str, op: &mut Value) {
    let writes = matches!(method, "post" | "put" | "patch" | "delete");
    let idempotent = op["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"));
    let secured = op.get("security").is_some();
    // get_mut, not [..]: indexing a JSON object mutably adds the key as null.
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        params.iter_mut().for_each(parameter);
    }
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else { return };
    if secured && !responses.contains_key("401") {
        responses.insert("401".into(), error_response(described("401")));
    }
    if idempotent {
        responses.entry("422").or_insert_with(|| error_response(described("422")));
        let running = "A request with this Idempotency-Key is still running (`idempotency_key_in_use`)";
        responses.entry("409").or_insert_with(|| error_response(running));
    }
    if writes {
        let entry = responses.entry("503").or_insert_with(|| error_response(described("503")));
        let retry_after = json!({"description": "Seconds to wait before sending the request again",
                                 "schema": {"type": "integer", "minimum": 1}});
        entry["headers"]["Retry-After"] = retry_after;
        let text = entry["description"].as_str().unwrap_or_default().to_string();
        if !text.contains("storage_unavailable") {
            let storage = "`storage_unavailable`: the database's storage is full or failing; nothing was done";
            entry["description"] = Value::String(format!("{text}. {storage}").trim_start_matches(". ").to_string());
        }
    }
    for (status, response) in responses.iter_mut() {
        let missing = response["description"].as_str().is_none_or(str::is_empty);
        if missing && response.get("$ref").is_none() {
            response["description"] = Value::String(described(status).to_string());
        }
    }
}

/// Formats and limits of the parameters every route shares by name.
fn parameter(p: &mut Value) {
    let name = p["name"].as_str().unwrap_or_default().to_string();
    let schema = &mut p["schema"];
    match name.as_str() {
        "limit" => {
            schema["minimum"] = json!(1);
            schema["maximum"] = json!(100);
            schema["default"] = json!(10);
        }
        "payment_order_id" | "checkout_id" | "refund_id" | "payout_id" | "dispute_id" => {
            schema["format"] = json!("uuid")
        }
        "starting_after" if schema["type"] == "string" => schema["format"] = json!("uuid"),
        "seller_id" => seller_id(schema),
        "Idempotency-Key" => {
            schema["minLength"] = json!(1);
            schema["maxLength"] = json!(crate::idempotency::MAX_KEY_LEN);
        }
        "name" => schema["maxLength"] = json!(reconciliation::MAX_NAME_CHARS),
        _ => {}
    }
}

fn seller_id(schema: &mut Value) {
    let max = crate::payments::model::SellerId::MAX_LEN;
    schema["maxLength"] = json!(max);
    schema["pattern"] = json!(format!("^[A-Za-z0-9_.-]{{1,{max}}}$"));
}

/// Formats and limits of the request bodies' fields (and the ids in answers).
fn limits(schema_name: &str, schema: &mut Value) {
    let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else { return };
    for (field, s) in props.iter_mut() {
        match (schema_name, field.as_str()) {
            (_, "payment_order_id" | "checkout_id" | "refund_id" | "payout_id" | "dispute_id")
                if schema_name != "PspSide" =>
            {
                s["format"] = json!("uuid");
            }
            (_, "currency") if schema_name.starts_with("Create") || schema_name == "NewOrder" => {
                s["pattern"] = json!("^[A-Z]{3}$");
            }
            ("NewOrder" | "CreatePayoutRequest", "seller_id") => seller_id(s),
            ("CreatePaymentRequest", "success_url" | "cancel_url") => {
                s["maxLength"] = json!(payments::MAX_URL);
                s["format"] = json!("uri");
            }
            ("Buyer", "id") => {
                s["minLength"] = json!(1);
                s["maxLength"] = json!(payments::MAX_TEXT);
            }
            ("Buyer", "email") => s["format"] = json!("email"),
            ("CreateRefundRequest", "reason") => s["maxLength"] = json!(crate::refunds::MAX_REASON_LEN),
            ("PutSellerRequest", "name") => {
                s["minLength"] = json!(1);
                s["maxLength"] = json!(sellers::MAX_NAME);
            }
            ("ResolveExceptionRequest", "note") => {
                s["minLength"] = json!(1);
                s["maxLength"] = json!(reconciliation::MAX_NOTE_CHARS);
            }
            _ => {}
        }
    }
}
