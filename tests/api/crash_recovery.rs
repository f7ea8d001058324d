//! SIGKILL in the middle of a load of payments: after a restart on the same
//! databases every stored order ends final, none is charged or credited
//! twice, and the ledger invariants hold.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use till::config::DatabaseSettings;
use till::db::params;

use crate::helpers::{OnDatabase, fresh_postgres_database, test_postgres, token_body};

struct Till {
    child: Child,
    base: String,
}

impl Drop for Till {
    /// Never leave a till running behind a failed test.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Where a till and its restarts keep their books: till's SQLite file in
/// `dir` (beside the sandbox's) or, when the suite runs on PostgreSQL, a
/// fresh database there.
fn databases(dir: &Path) -> DatabaseSettings {
    let url = test_postgres().map(|server| fresh_postgres_database(&server)).unwrap_or_default();
    DatabaseSettings { path: dir.join("till.db"), url, ..DatabaseSettings::default() }
}

/// till's books as the test reads them, through the seam.
fn open_books(database: &DatabaseSettings) -> till::db::Db {
    let settings = till::config::Settings { database: database.clone(), ..Default::default() };
    till::startup::open_till_db(&settings).unwrap()
}

fn command(dir: &Path, database: &DatabaseSettings, ports: (u16, u16), args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_till"));
    cmd.args(args)
        .args(["--config", crate::helpers::empty_config()])
        .env("TILL_SERVER__BIND", format!("127.0.0.1:{}", ports.0))
        .env("TILL_SANDBOX__BIND", format!("127.0.0.1:{}", ports.1))
        .on_database(database)
        .env("TILL_SANDBOX__DATABASE_PATH", dir.join("sandbox.db"))
        .env("TILL_SANDBOX__WEBHOOK_RETRY_BASE_MS", "50")
        .env("TILL_PSP__REQUEST_TIMEOUT_MS", "1000")
        .env("TILL_QUEUE__LEASE_MS", "2000")
        .env("TILL_WEBHOOKS__TIMEOUT_MS", "1000")
        .env("TILL_QUEUE__BACKOFF_BASE_MS", "20")
        .env("TILL_QUEUE__BACKOFF_CAP_MS", "200")
        .env("TILL_LOG__LEVEL", "error");
    cmd
}

/// A merchant API key made with the CLI, as an operator would.
fn api_key(dir: &Path, database: &DatabaseSettings, ports: (u16, u16)) -> String {
    let out = command(dir, database, ports, &["api-key", "create", "--name", "crash"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().last().unwrap().to_string()
}

async fn start(dir: &Path, database: &DatabaseSettings, ports: (u16, u16)) -> Till {
    let child = command(dir, database, ports, &["serve"]).stdout(Stdio::null()).spawn().unwrap();
    let base = format!("http://127.0.0.1:{}", ports.0);
    let started = Instant::now();
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "till did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Till { child, base }
}

#[tokio::test]
async fn a_killed_till_finishes_every_stored_payment_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let database = databases(dir.path());
    let ports = (free_port(), free_port());
    let key = api_key(dir.path(), &database, ports);
    let mut till = start(dir.path(), &database, ports).await;

    // Eight shops send payments as fast as they can; till is killed mid-way.
    let client = reqwest::Client::new();
    let mut shops = Vec::new();
    for _ in 0..8 {
        let (client, key, base) = (client.clone(), key.clone(), till.base.clone());
        shops.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for _ in 0..200 {
                let body = token_body("pm_card_visa", &[("seller_a", "1.00", "USD"), ("seller_b", "2.50", "USD")]);
                match client.post(format!("{base}/v1/payments")).bearer_auth(&key).json(&body).send().await {
                    Ok(r) if r.status() == StatusCode::CREATED => acknowledged.push(body["checkout_id"].clone()),
                    _ => break,
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    till.child.kill().unwrap(); // SIGKILL
    till.child.wait().unwrap();
    let mut acknowledged = Vec::new();
    for shop in shops {
        acknowledged.extend(shop.await.unwrap());
    }
    assert!(acknowledged.len() > 10, "the load was under way: {}", acknowledged.len());

    let _till = start(dir.path(), &database, ports).await;
    let books = open_books(&database);
    let count = |sql: &str| -> i64 { books.read_now(|tx| tx.query_value(sql, params![])).unwrap() };
    let stored = count("SELECT COUNT(*) FROM payment_orders");
    assert!(stored as usize >= acknowledged.len() * 2, "every acknowledged checkout was stored");
    let started = Instant::now();
    loop {
        let open = count("SELECT COUNT(*) FROM payment_orders WHERE payment_order_status NOT IN ('SUCCESS', 'FAILED')");
        if open == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{open} orders never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let succeeded = count("SELECT COUNT(*) FROM payment_orders WHERE payment_order_status = 'SUCCESS'");
    assert_eq!(succeeded, stored, "pm_card_visa always succeeds");
    for id in &acknowledged {
        let done: bool = books
            .read_now(|tx| {
                tx.query_value(
                    "SELECT is_payment_done FROM payment_events WHERE checkout_id = $1",
                    params![id.as_str().unwrap()],
                )
            })
            .unwrap();
        assert!(done, "{id}");
    }
    // Credited once: the wallets hold exactly what the orders add up to.
    let (a, b) = (
        count("SELECT balance_minor FROM wallets WHERE seller_id = 'seller_a'"),
        count("SELECT balance_minor FROM wallets WHERE seller_id = 'seller_b'"),
    );
    assert_eq!((a, b), (stored / 2 * 100, stored / 2 * 250));
    // Charged once: the PSP holds one successful intent per order.
    crate::helpers::assert_one_charge_per_order(&dir.path().join("sandbox.db"), &books);
    let check = command(dir.path(), &database, ports, &["check"]).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
}

#[tokio::test]
async fn a_payout_stored_before_a_crash_is_sent_exactly_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let database = databases(dir.path());
    let ports = (free_port(), free_port());
    let key = api_key(dir.path(), &database, ports);
    let till = start(dir.path(), &database, ports).await;
    let client = reqwest::Client::new();
    let api = |path: &str| format!("{}{path}", till.base);
    let sandbox = format!("http://127.0.0.1:{}", ports.1);

    // Money for seller_a, and where it goes.
    let body = token_body("pm_card_visa", &[("seller_a", "30.00", "USD")]);
    let resp = client.post(api("/v1/payments")).bearer_auth(&key).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let checkout = body["checkout_id"].as_str().unwrap();
    let started = Instant::now();
    loop {
        let c: serde_json::Value = client
            .get(api(&format!("/v1/checkouts/{checkout}")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if c["is_payment_done"] == true {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let put = client
        .put(api("/v1/sellers/seller_a"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"name": "A", "payout_destination": "acct_a"}))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());

    // The PSP now does the work and never answers: the transfer is made, till does not know.
    let faults = client
        .post(format!("{sandbox}/v1/sandbox/faults"))
        .bearer_auth("sk_test_till_sandbox_0000000000000000")
        .json(&serde_json::json!({"timeout_rate": 1.0}))
        .send()
        .await
        .unwrap();
    assert!(faults.status().is_success());
    let resp = client
        .post(api("/v1/payouts"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"seller_id": "seller_a", "currency": "USD"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let payout: serde_json::Value = resp.json().await.unwrap();
    let payout_id = payout["payout_id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    drop(till); // SIGKILL mid-flight

    let till = start(dir.path(), &database, ports).await;
    let started = Instant::now();
    let payout = loop {
        let p: serde_json::Value = client
            .get(format!("{}/v1/payouts/{payout_id}", till.base))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if p["status"] == "PAID" || p["status"] == "FAILED" {
            break p;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "payout never finished: {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(payout["status"], "PAID");
    let psp = rusqlite::Connection::open(dir.path().join("sandbox.db")).unwrap();
    let transfers: i64 = psp
        .query_row(
            "SELECT COUNT(*) FROM transfers WHERE json_extract(metadata, '$.payout_id') = ?1",
            [&payout_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(transfers, 1, "sent exactly once");
    let check = command(dir.path(), &database, ports, &["check"]).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
}

/// GETs a JSON object of till's API.
async fn get_json(client: &reqwest::Client, key: &str, url: String) -> serde_json::Value {
    client.get(url).bearer_auth(key).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn a_capture_recorded_before_a_crash_is_carried_out_exactly_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let database = databases(dir.path());
    let ports = (free_port(), free_port());
    let key = api_key(dir.path(), &database, ports);
    let till = start(dir.path(), &database, ports).await;
    let client = reqwest::Client::new();
    let sandbox = format!("http://127.0.0.1:{}", ports.1);

    // A manual token payment, authorized.
    let mut body = token_body("pm_card_visa", &[("seller_a", "40.00", "USD")]);
    body["capture_method"] = serde_json::json!("manual");
    let resp = client.post(format!("{}/v1/payments", till.base)).bearer_auth(&key).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let checkout = body["checkout_id"].as_str().unwrap().to_string();
    let url = format!("{}/v1/checkouts/{checkout}", till.base);
    let started = Instant::now();
    while get_json(&client, &key, url.clone()).await["status"] != "authorized" {
        assert!(started.elapsed() < Duration::from_secs(20), "never authorized");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The PSP captures and never answers; till is killed before it learns of it.
    let faults = client
        .post(format!("{sandbox}/v1/sandbox/faults"))
        .bearer_auth("sk_test_till_sandbox_0000000000000000")
        .json(&serde_json::json!({"timeout_rate": 1.0}))
        .send()
        .await
        .unwrap();
    assert!(faults.status().is_success());
    let capture = client
        .post(format!("{url}/capture"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"orders": [{"payment_order_id": body["orders"][0]["payment_order_id"], "amount": "30.00"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(capture.status(), StatusCode::SERVICE_UNAVAILABLE, "the PSP's answer was lost");
    drop(till); // SIGKILL, before the settle job's turn

    let till = start(dir.path(), &database, ports).await;
    let url = format!("{}/v1/checkouts/{checkout}", till.base);
    let started = Instant::now();
    let done = loop {
        let c = get_json(&client, &key, url.clone()).await;
        if c["is_payment_done"] == true {
            break c;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the capture never finished: {c}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["orders"][0]["status"], "SUCCESS", "{done}");
    assert_eq!(done["orders"][0]["amount_captured"], "30.00");
    let psp = rusqlite::Connection::open(dir.path().join("sandbox.db")).unwrap();
    let (received, charges): (i64, i64) = psp
        .query_row(
            "SELECT amount_received, (SELECT COUNT(*) FROM balance_transactions b
                                      WHERE b.payment_intent = i.id AND b.reporting_category = 'charge')
             FROM payment_intents i WHERE json_extract(metadata, '$.checkout_id') = ?1",
            [&checkout],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((received, charges), (3000, 1), "captured exactly once, for what was asked");
    let books = open_books(&database);
    let wallet: i64 = books
        .read_now(|tx| tx.query_value("SELECT balance_minor FROM wallets WHERE seller_id = 'seller_a'", params![]))
        .unwrap();
    assert_eq!(wallet, 3000, "booked once, for what was captured");
    let check = command(dir.path(), &database, ports, &["check"]).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
}
