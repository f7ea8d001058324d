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

/// The header set of the admin pages: never framed (clickjacking of the card
/// form), never sniffed, never cached, no referrer to other sites.
fn assert_page_headers(what: &str, response: &reqwest::Response) {
    let header = |name: &str| {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("{what}: no {name}"))
    };
    let csp = header("content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
    assert_eq!(header("x-frame-options"), "DENY", "{what}");
    assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header("referrer-policy"), "same-origin", "{what}");
    assert_eq!(header("cache-control"), "no-store", "{what}");
}

#[tokio::test]
async fn every_view_of_the_hosted_page_refuses_framing_sniffing_and_caching() {
    let sb = spawn_sandbox().await;
    let id = sb.create_session(&[]).await["id"].as_str().unwrap().to_string();
    let page = sb.client.get(sb.url(&format!("/pay/{id}"))).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_page_headers("the form", &page);
    let html = page.text().await.unwrap();
    // The style is a file of the sandbox's own: the policy allows no inline style.
    assert!(html.contains("<link rel=\"stylesheet\" href=\"/static/sandbox.css\">") && !html.contains("<style"));
    let css = sb.client.get(sb.url("/static/sandbox.css")).send().await.unwrap();
    assert_eq!(css.status(), 200);
    assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));

    let unknown = sb.client.get(sb.url("/pay/cs_test_nope")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert_page_headers("the 404", &unknown);
    let invalid = sb.pay(&id, "4242 4242 4242 4241").await;
    assert_eq!(invalid.status(), 400);
    assert_page_headers("the invalid card", &invalid);
    let declined = sb.pay(&id, "4000000000000002").await;
    assert_eq!(declined.status(), 402);
    assert_page_headers("the decline", &declined);
    let paid = sb.pay(&id, "4242424242424242").await;
    assert_eq!(paid.status(), 303);
    assert_page_headers("the redirect", &paid);
    let closed = sb.client.get(sb.url(&format!("/pay/{id}"))).send().await.unwrap();
    assert!(closed.status() == 200);
    assert_page_headers("the closed page", &closed);
    assert!(closed.text().await.unwrap().contains("has been paid"));
    let twice = sb.pay(&id, "4242424242424242").await;
    assert_eq!(twice.status(), 409);
    assert_page_headers("the second payment", &twice);
}

/// Pays `id` with a good card from a form whose request says it came from
/// `origin` and/or `referer`.
async fn pay_from(
    sb: &crate::helpers::TestSandbox,
    id: &str,
    origin: Option<&str>,
    referer: Option<&str>,
) -> reqwest::Response {
    let form = [("card_number", "4242424242424242"), ("exp_month", "12"), ("exp_year", "2099"), ("cvc", "123")];
    let mut request = sb.client.post(sb.url(&format!("/pay/{id}"))).form(&form);
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    if let Some(referer) = referer {
        request = request.header("Referer", referer);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_form_posted_from_another_site_cannot_pay_a_session() {
    let sb = spawn_sandbox().await;
    let id = sb.create_session(&[]).await["id"].as_str().unwrap().to_string();
    let port = sb.base.rsplit(':').next().unwrap().to_string();
    let other_port = if port == "1" { "2" } else { "1" };
    let cross_site: &[(Option<&str>, Option<&str>)] = &[
        (Some("https://evil.example"), None),
        (Some("null"), None),
        (Some(&format!("http://127.0.0.1:{other_port}")), None),
        (Some(&format!("https://127.0.0.1:{port}.evil.example")), None),
        (Some("https://evil.example"), Some(&format!("{}/pay/{id}", sb.base))),
        (None, Some("https://evil.example/shop.html")),
        (None, Some("not a url")),
    ];
    for (origin, referer) in cross_site {
        let refused = pay_from(&sb, &id, *origin, *referer).await;
        assert_eq!(refused.status(), 403, "Origin {origin:?}, Referer {referer:?}");
        assert_page_headers("the refusal", &refused);
        assert!(refused.text().await.unwrap().contains("another site"));
    }
    let still = sb.get_json(&format!("/v1/checkout/sessions/{id}"), 200).await;
    assert_eq!((still["status"].as_str(), still["payment_status"].as_str()), (Some("open"), Some("unpaid")));

    // The page's own origin pays, as does a request that names none
    // (the Stripe libraries' tests and curl; browsers always send Origin
    // on a cross-site form POST).
    let referer = format!("{}/pay/{id}", sb.base);
    let from_the_page = pay_from(&sb, &id, None, Some(&referer)).await;
    assert_eq!(from_the_page.status(), 303);
    let other = sb.create_session(&[]).await["id"].as_str().unwrap().to_string();
    let localhost = format!("http://localhost:{port}");
    let by_name = sb
        .client
        .post(format!("{localhost}/pay/{other}"))
        .header("Origin", &localhost)
        .form(&[("card_number", "4242424242424242"), ("exp_month", "12"), ("exp_year", "2099"), ("cvc", "123")])
        .send()
        .await
        .unwrap();
    assert_eq!(by_name.status(), 303, "the host the request was made to is the page's origin");
    let third = sb.create_session(&[]).await["id"].as_str().unwrap().to_string();
    assert_eq!(pay_from(&sb, &third, Some(&sb.base), None).await.status(), 303);
}
