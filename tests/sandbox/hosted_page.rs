//! The hosted payment page over real HTTP: show, decline, pay, redirect.

use crate::helpers::{WEBHOOK_SECRET, signature_is_valid, spawn_sandbox};

#[tokio::test]
async fn the_page_shows_items_total_form_and_test_cards() {
    let sb = spawn_sandbox().await;
    let s = sb.create_session(&[]).await;
    let response = sb.client.get(s["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = response.text().await.unwrap();
    for needle in [
        "Blue mug",
        "25.00 USD",
        "name=\"card_number\"",
        "name=\"exp_month\"",
        "name=\"exp_year\"",
        "name=\"cvc\"",
        &format!("action=\"/pay/{}\"", s["id"].as_str().unwrap()),
        "href=\"https://shop.example/cart\"",
        "4242 4242 4242 4242",
        "4000 0000 0000 9995",
    ] {
        assert!(html.contains(needle), "missing {needle}");
    }
}

#[tokio::test]
async fn an_unknown_session_is_a_404_page() {
    let sb = spawn_sandbox().await;
    let response = sb.client.get(sb.url("/pay/cs_test_nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn bad_input_and_declines_show_the_page_again_then_a_good_card_pays() {
    let sb = spawn_sandbox().await;
    let s = sb.create_session(&[]).await;
    let id = s["id"].as_str().unwrap();

    let bad = sb.pay(id, "4242 4242 4242 4241").await;
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("card number is invalid"));

    let declined = sb.pay(id, "4000 0000 0000 0002").await;
    assert_eq!(declined.status(), 402);
    assert!(declined.text().await.unwrap().contains("Your card was declined."));

    let poor = sb.pay(id, "4000000000009995").await;
    assert_eq!(poor.status(), 402);
    let html = poor.text().await.unwrap();
    assert!(html.contains("insufficient funds"));
    assert!(!html.contains("4000000000009995"), "the number is never echoed");
    let still = sb.get_json(&format!("/v1/checkout/sessions/{id}"), 200).await;
    assert_eq!(still["status"], "open");

    let paid = sb.pay(id, "4242 4242 4242 4242").await;
    assert_eq!(paid.status(), 303);
    assert_eq!(paid.headers()["location"].to_str().unwrap(), format!("https://shop.example/thanks?session={id}"));

    let done = sb.get_json(&format!("/v1/checkout/sessions/{id}"), 200).await;
    assert_eq!((done["status"].as_str(), done["payment_status"].as_str()), (Some("complete"), Some("paid")));
    let pi_id = done["payment_intent"].as_str().unwrap();
    assert!(pi_id.starts_with("pi_"));
    let pi = sb.get_json(&format!("/v1/payment_intents/{pi_id}"), 200).await;
    assert_eq!(pi["status"], "succeeded");
    assert_eq!((pi["amount"].as_i64(), pi["currency"].as_str()), (Some(2500), Some("usd")));
    assert_eq!(pi["metadata"]["payment_order_id"], "po_1");

    let completed = sb.receiver.wait_for("checkout.session.completed", id).await;
    assert!(signature_is_valid(&completed.signature, &completed.body, WEBHOOK_SECRET));
    assert_eq!(completed.event["data"]["object"]["payment_intent"], pi_id);
    sb.receiver.wait_for("payment_intent.succeeded", pi_id).await;

    let after = sb.client.get(sb.url(&format!("/pay/{id}"))).send().await.unwrap();
    let html = after.text().await.unwrap();
    assert!(html.contains("has been paid") && !html.contains("name=\"card_number\""));
    let twice = sb.pay(id, "4242424242424242").await;
    assert_eq!(twice.status(), 409);
}

#[tokio::test]
async fn card_numbers_are_never_stored() {
    let sb = spawn_sandbox().await;
    let id = sb.create_session(&[]).await["id"].as_str().unwrap().to_string();
    assert_eq!(sb.pay(&id, "4000000000000002").await.status(), 402);
    assert_eq!(sb.pay(&id, "4242424242424242").await.status(), 303);
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", sb.db_path.display());
        bytes.extend(std::fs::read(path).unwrap_or_default());
    }
    for number in ["4242424242424242", "4000000000000002"] {
        assert!(!bytes.windows(number.len()).any(|w| w == number.as_bytes()), "{number} found in the database");
    }
}
