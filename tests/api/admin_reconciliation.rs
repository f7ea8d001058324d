//! Reconciliation in the dashboard: a settlement file uploaded through the
//! form is imported once (through `reconciliation::import_file`), a forged
//! or malformed upload is refused, and an exception is resolved with a note
//! recorded with the staff member.

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};

use crate::admin::{Browser, EMAIL, sign_in};
use crate::helpers::{TestApp, spawn_app};

const HEADER: &str = "balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,reporting_category,\
                      source_id,payment_intent_id,description,payment_metadata[checkout_id],\
                      payment_metadata[payment_order_id]";

fn key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A file with one line no rule can place: an unclassified exception.
fn adjustment_file() -> String {
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S");
    format!("{HEADER}\r\ntxn_adj,{now},{now},usd,-1.00,0.00,-1.00,adjustment,adj_1,,manual adjustment,,\r\n")
}

async fn upload(browser: &Browser, csrf: Option<&str>, key: &str, name: &str, csv: &str) -> reqwest::Response {
    let mut form = Form::new();
    if let Some(token) = csrf {
        form = form.text("csrf", token.to_string());
    }
    let file = Part::bytes(csv.as_bytes().to_vec()).file_name(name.to_string()).mime_str("text/csv").unwrap();
    form = form.text("key", key.to_string()).part("file", file);
    browser.client.post(format!("{}/admin/reconciliation/files", browser.base)).multipart(form).send().await.unwrap()
}

async fn upload_and_follow(browser: &Browser, key: &str, name: &str, csv: &str) -> (String, String) {
    let resp = upload(browser, Some(&browser.csrf.clone()), key, name, csv).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    (location.clone(), browser.page(&location).await)
}

async fn todays_report(app: &TestApp) -> String {
    let day = chrono::Utc::now().date_naive();
    app.client
        .get(format!("{}/v1/sandbox/settlement_reports/{day}", app.sandbox))
        .bearer_auth(&app.settings.psp.secret_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_uploaded_settlement_file_is_imported_once() {
    let app = spawn_app().await;
    app.paid_checkout(&[("seller_a", "25.00", "USD")]).await;
    let browser = sign_in(&app).await;
    let csv = todays_report(&app).await;
    assert!(csv.contains("charge"), "{csv}");
    let k = key();
    let (location, page) = upload_and_follow(&browser, &k, "report.csv", &csv).await;
    assert!(location.starts_with("/admin/reconciliation?action="));
    assert!(page.contains("report.csv imported as run 1"), "{page}");
    assert!(page.contains("matched 1"), "the run's classes");
    let (again, _) = upload_and_follow(&browser, &k, "report.csv", &csv).await;
    assert_eq!(again, location, "the same form: the same action");
    let (_, page) = upload_and_follow(&browser, &key(), "report again.csv", &csv).await;
    assert!(page.contains("was imported before (run 1); nothing changed"), "{page}");
    assert_eq!(app.count("SELECT COUNT(*) FROM reconciliation_runs"), 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM admin_actions WHERE action = 'upload_settlement_file'"), 2);
    let by: String = app.value("SELECT source FROM reconciliation_runs");
    assert_eq!(by, "upload");

    let (_, page) =
        upload_and_follow(&browser, &key(), "broken.csv", "balance_transaction_id,gross\r\ntxn,abc\r\n").await;
    assert!(page.contains("The settlement file was refused"), "{page}");
    for csrf in [None, Some("forged")] {
        let resp = upload(&browser, csrf, &key(), "forged.csv", &adjustment_file()).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{csrf:?}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM settlement_files"), 1);
}

#[tokio::test]
async fn an_exception_is_resolved_with_a_note() {
    let app = spawn_app().await;
    let browser = sign_in(&app).await;
    let (_, page) = upload_and_follow(&browser, &key(), "crafted.csv", &adjustment_file()).await;
    assert!(page.contains("1 open exception(s)"), "{page}");
    assert!(page.contains("unclassified") && page.contains("adjustment"));
    assert!(browser.page("/admin").await.contains("unclassified"), "open exceptions show on the overview");
    let id = app.count("SELECT id FROM reconciliation_items WHERE status = 'open'");
    let path = format!("/admin/reconciliation/exceptions/{id}/resolve");
    let (_, page) = browser.act(&path, &[("key", &key()), ("note", "")]).await;
    assert!(page.contains("Write a note"));
    let (location, page) = browser.act(&path, &[("key", &key()), ("note", "a manual adjustment by the PSP")]).await;
    assert!(location.starts_with("/admin/reconciliation?action="));
    assert!(page.contains(&format!("Exception {id} (unclassified) is resolved")), "{page}");
    assert!(page.contains("a manual adjustment by the PSP"), "listed as resolved");
    let (note, by): (String, String) = app
        .ctx
        .db
        .read_now(|tx| {
            tx.query_row(
                "SELECT note, resolved_by FROM reconciliation_items WHERE id = $1",
                till::db::params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .unwrap();
    assert_eq!((note.as_str(), by.as_str()), ("a manual adjustment by the PSP", EMAIL));
    let (_, page) = browser.act(&path, &[("key", &key()), ("note", "again")]).await;
    assert!(page.contains("is not open"), "{page}");
}
