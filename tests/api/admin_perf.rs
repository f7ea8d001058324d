//! The dashboard with 100,000 payments: bulk-inserted in one transaction
//! (consistent books, so the ledger check on drop still holds), then each
//! main page timed through HTTP with a signed-in session. Ignored by
//! default; run it with
//! `cargo test --test api admin_perf -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use rusqlite::params;

use crate::admin::sign_in;
use crate::helpers::{TestApp, spawn_app};

const ORDERS: i64 = 100_000;
const SELLERS: i64 = 200;
const BUYERS: i64 = 5_000;
const DAYS: i64 = 60;
const RUNS: usize = 15;

/// A cheap, deterministic mix, so that currency and status do not follow the seller.
fn mix(i: i64) -> i64 {
    (i.wrapping_mul(2_654_435_761) >> 7).rem_euclid(1000)
}

fn currency_of(i: i64) -> (&'static str, i64) {
    match (mix(i) / 7) % 20 {
        0 => ("JPY", 1),
        1..=3 => ("EUR", 100),
        _ => ("USD", 100),
    }
}

fn status_of(i: i64) -> &'static str {
    match mix(i) {
        0..=69 => "FAILED",
        70..=72 => "EXECUTING",
        _ => "SUCCESS",
    }
}

/// Inserts the orders oldest first (rowid order is time order, as in life),
/// each with its checkout and, when it succeeded, its pay-in booking; then
/// sets the account balances and wallets from the entries.
fn bulk_insert(app: &TestApp) {
    let mut conn = app.ctx.db.conn().unwrap();
    let tx = conn.transaction().unwrap();
    let key: String = tx.query_row("SELECT id FROM api_keys LIMIT 1", [], |r| r.get(0)).unwrap();
    let start = chrono::Utc::now() - chrono::Duration::days(DAYS);
    let step_ms = DAYS * 86_400_000 / ORDERS;
    {
        let mut event = tx
            .prepare(
                "INSERT INTO payment_events (checkout_id, api_key_id, buyer_info, buyer_email, payment_method,
                                             request_hash, is_payment_done, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?6, 'token', 'x', ?4, ?5, ?5)",
            )
            .unwrap();
        let mut order = tx
            .prepare(
                "INSERT INTO payment_orders (payment_order_id, checkout_id, position, buyer_account, seller_id,
                     amount_minor, currency, payment_order_status, failure_code, ledger_updated, wallet_updated,
                     seller_amount_minor, succeeded_at, created_at, updated_at, psp_payment_intent_id,
                     captured_minor)
                 VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12, ?12, 'pi_' || ?1,
                         CASE WHEN ?7 = 'SUCCESS' THEN ?5 END)",
            )
            .unwrap();
        let mut account = tx
            .prepare(
                "INSERT INTO ledger_accounts (name, currency, kind) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name, currency) DO UPDATE SET kind = kind RETURNING id",
            )
            .unwrap();
        let mut transaction = tx
            .prepare(
                "INSERT INTO ledger_transactions (source_type, source_id, currency, description, created_at)
                 VALUES ('payment_order', ?1, ?2, ?3, ?4) RETURNING id",
            )
            .unwrap();
        let mut entry = tx
            .prepare("INSERT INTO ledger_entries (transaction_id, account_id, amount_minor) VALUES (?1, ?2, ?3)")
            .unwrap();
        // The PSP's word on each paid order, as its booking records it.
        let mut charge = tx
            .prepare(
                "INSERT INTO psp_charges (payment_intent_id, checkout_id, payment_order_id, amount_minor, currency,
                                          backed_minor, recorded_at)
                 VALUES ('pi_' || ?1, ?2, ?1, ?3, ?4, ?3, ?5)",
            )
            .unwrap();
        for i in 0..ORDERS {
            let at = (start + chrono::Duration::milliseconds(i * step_ms))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let (checkout, order_id) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
            let (buyer, seller) = (format!("buyer_{}", i % BUYERS), format!("seller_{:03}", i % SELLERS));
            let (currency, unit) = currency_of(i);
            let amount = (500 + (i * 7919) % 20_000) * unit / 100;
            let status = status_of(i);
            let success = status == "SUCCESS";
            let buyer_info = format!(r#"{{"id":"{buyer}","email":"{buyer}@example.com"}}"#);
            let email = format!("{buyer}@example.com");
            event.execute(params![checkout, key, buyer_info, status != "EXECUTING", at, email]).unwrap();
            let failure = (status == "FAILED").then_some("card_declined");
            let succeeded_at = success.then_some(&at);
            order
                .execute(params![
                    order_id,
                    checkout,
                    buyer,
                    seller,
                    amount,
                    currency,
                    status,
                    failure,
                    success,
                    amount,
                    succeeded_at,
                    at
                ])
                .unwrap();
            if success {
                let psp = account.query_row(params!["assets:psp_balance", currency, "asset"], |r| r.get::<_, i64>(0));
                let wallet = account
                    .query_row(params![format!("liabilities:seller:{seller}"), currency, "liability"], |r| {
                        r.get::<_, i64>(0)
                    });
                let description = format!("pay-in of order {order_id} for seller {seller}");
                let t: i64 = transaction.query_row(params![order_id, currency, description, at], |r| r.get(0)).unwrap();
                entry.execute(params![t, psp.unwrap(), amount]).unwrap();
                entry.execute(params![t, wallet.unwrap(), -amount]).unwrap();
                charge.execute(params![order_id, checkout, amount, currency, at]).unwrap();
            }
        }
    }
    tx.execute_batch(
        "INSERT INTO ledger_balance_shards (account_id, shard, balance_minor)
             SELECT account_id, 0, SUM(amount_minor) FROM ledger_entries GROUP BY account_id;
         INSERT INTO wallets (seller_id, currency, balance_minor, updated_at)
             SELECT substr(a.name, 20), a.currency, -s.balance_minor, '2026-01-01T00:00:00.000Z'
             FROM ledger_accounts a JOIN ledger_balance_shards s ON s.account_id = a.id
             WHERE a.name LIKE 'liabilities:seller:%';
         ANALYZE;",
    )
    .unwrap();
    tx.commit().unwrap();
}

fn median_and_max(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    (times[times.len() / 2], times[times.len() - 1])
}

#[tokio::test]
#[ignore = "a benchmark: 100,000 payments; run with --ignored --nocapture"]
async fn the_pages_stay_fast_with_100_000_payments() {
    let app = spawn_app().await;
    // The fixture is written through SQLite's own handle (prepared
    // statements, rowid order) for speed.
    assert!(!app.is_postgres(), "a SQLite benchmark: run it without TILL_TEST_DATABASE=postgres");
    let started = Instant::now();
    bulk_insert(&app);
    println!("inserted {ORDERS} payments (with their checkouts and bookings) in {:?}", started.elapsed());
    let browser = sign_in(&app).await;
    // The 10,000th order inserted: the cursor of a page with 90,000 newer ones.
    let some_order: String = app
        .ctx
        .db
        .conn()
        .unwrap()
        .query_row("SELECT payment_order_id FROM payment_orders WHERE rowid = 10000", [], |r| r.get(0))
        .unwrap();
    let deep = &some_order;
    let pages = [
        ("overview", "/admin".to_string()),
        ("payments, first page", "/admin/payments".to_string()),
        ("payments, deep page (90,000 newer)", format!("/admin/payments?before={deep}")),
        ("payments, search by order id", format!("/admin/payments?q={some_order}")),
        ("payments, search by seller", "/admin/payments?q=seller_007".to_string()),
        ("payments, seller's deep page", format!("/admin/payments?q=seller_007&before={deep}")),
        ("payments, search by buyer email", "/admin/payments?q=buyer_42%40example.com".to_string()),
        ("payments, status FAILED", "/admin/payments?status=FAILED".to_string()),
        ("payments, seller + FAILED", "/admin/payments?q=seller_007&status=FAILED".to_string()),
        ("sellers", "/admin/sellers".to_string()),
        ("seller", "/admin/sellers/seller_007".to_string()),
        ("ledger", "/admin/ledger".to_string()),
    ];
    println!("{:<40} {:>10} {:>10} {:>6}", "page", "median", "max", "rows");
    for (name, path) in pages {
        let mut times = Vec::with_capacity(RUNS);
        let mut rows = 0;
        for run in 0..RUNS + 2 {
            let t = Instant::now();
            let html = browser.page(&path).await;
            if run >= 2 {
                times.push(t.elapsed());
            }
            // Table rows shown, less the header rows: the page really has data.
            rows = html.matches("<tr").count() - html.matches("<thead>").count();
        }
        let (median, max) = median_and_max(times);
        println!("{name:<40} {:>8.1}ms {:>8.1}ms {rows:>6}", median.as_secs_f64() * 1e3, max.as_secs_f64() * 1e3);
        assert!(rows > 0, "{path} shows nothing");
        assert!(median < Duration::from_millis(500), "{name} takes {median:?}");
    }
}
