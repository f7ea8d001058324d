//! Property test: random sequences of payments, declines, refunds,
//! concurrent refunds and failing refunds. After every step the five
//! invariants hold (`till check`) and every wallet equals a model kept by
//! the test: what its sellers were paid less what was refunded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with, token_body};

const SELLERS: [&str; 3] = ["seller_a", "seller_b", "seller_c"];

#[derive(Debug, Clone)]
enum Op {
    /// Orders (seller, cents) paid with a card that succeeds or declines.
    Pay { orders: Vec<(usize, i64)>, declined: bool },
    /// A refund of `cents` (None: the rest) of the n-th successful order.
    Refund { pick: usize, cents: Option<i64> },
    /// `n` refunds of `cents` at once on one order.
    Burst { pick: usize, n: usize, cents: i64 },
    /// A refund the PSP fails (the sandbox fails 0.13 exactly).
    FailingRefund { pick: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (prop::collection::vec((0..3usize, 1..5_000i64), 1..4), prop::bool::weighted(0.2))
            .prop_map(|(orders, declined)| Op::Pay { orders, declined }),
        2 => (any::<usize>(), prop::option::of(1..3_000i64)).prop_map(|(pick, cents)| Op::Refund { pick, cents }),
        1 => (any::<usize>(), 2..6usize, 1..2_000i64).prop_map(|(pick, n, cents)| Op::Burst { pick, n, cents }),
        1 => any::<usize>().prop_map(|pick| Op::FailingRefund { pick }),
    ]
}

#[derive(Default)]
struct Model {
    /// (order id, seller, amount, refunded) of successful orders.
    orders: Vec<(String, usize, i64, i64)>,
    wallets: HashMap<usize, i64>,
}

fn cents(c: i64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

async fn settle(app: &TestApp) {
    let started = Instant::now();
    while app.count(
        "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running') AND kind IN ('charge_order', 'submit_refund')",
    ) > 0
    {
        assert!(started.elapsed() < Duration::from_secs(30), "work never settled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn apply(app: &TestApp, model: &mut Model, op: &Op) {
    match op {
        Op::Pay { orders, declined } => {
            let lines: Vec<(&str, String, &str)> =
                orders.iter().map(|(s, c)| (SELLERS[*s], cents(*c), "USD")).collect();
            let lines: Vec<(&str, &str, &str)> = lines.iter().map(|(s, a, c)| (*s, a.as_str(), *c)).collect();
            let token = if *declined { "pm_card_chargeDeclined" } else { "pm_card_visa" };
            let created: Value = app.post_payment(&token_body(token, &lines)).await.json().await.unwrap();
            let done = app.wait_until_done(created["checkout_id"].as_str().unwrap()).await;
            for (order, (seller, c)) in done["orders"].as_array().unwrap().iter().zip(orders) {
                assert_eq!(order["status"], if *declined { "FAILED" } else { "SUCCESS" });
                if !declined {
                    model.orders.push((order["payment_order_id"].as_str().unwrap().to_string(), *seller, *c, 0));
                    *model.wallets.entry(*seller).or_default() += c;
                }
            }
        }
        Op::Refund { pick, cents: want } => {
            let Some(i) = pick_order(model, *pick) else { return };
            let (id, seller, amount, refunded) = model.orders[i].clone();
            let body = match want {
                Some(c) => json!({"amount": cents(*c)}),
                None => json!({}),
            };
            let resp = app.refund(&id, body).await;
            let asked = want.unwrap_or(amount - refunded);
            if asked <= amount - refunded && asked > 0 {
                assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
                model.orders[i].3 += asked;
                *model.wallets.entry(seller).or_default() -= asked;
            } else {
                assert_eq!(resp.status(), reqwest::StatusCode::BAD_REQUEST);
            }
        }
        Op::Burst { pick, n, cents: c } => {
            let Some(i) = pick_order(model, *pick) else { return };
            let (id, seller, amount, refunded) = model.orders[i].clone();
            let body = json!({"amount": cents(*c)});
            let answers = futures_util::future::join_all((0..*n).map(|_| app.refund(&id, body.clone()))).await;
            let accepted = answers.iter().filter(|r| r.status() == reqwest::StatusCode::CREATED).count() as i64;
            assert_eq!(accepted, (*n as i64).min((amount - refunded) / c), "exactly as many as fit");
            model.orders[i].3 += accepted * c;
            *model.wallets.entry(seller).or_default() -= accepted * c;
        }
        Op::FailingRefund { pick } => {
            let Some(i) = pick_order(model, *pick) else { return };
            let (id, _, amount, refunded) = model.orders[i].clone();
            let status = app.refund(&id, json!({"amount": "0.13"})).await.status();
            let expected = if amount - refunded >= 13 { 201 } else { 400 };
            assert_eq!(status.as_u16(), expected);
        }
    }
}

fn pick_order(model: &Model, pick: usize) -> Option<usize> {
    (!model.orders.is_empty()).then(|| pick % model.orders.len())
}

async fn assert_model(app: &TestApp, model: &Model) {
    for (seller, expected) in &model.wallets {
        assert_eq!(app.balance(SELLERS[*seller]).await, cents(*expected), "{}", SELLERS[*seller]);
    }
    app.assert_ledger_ok();
}

#[test]
fn random_sequences_keep_every_invariant() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app = rt.block_on(spawn_app_with(|s| {
        s.queue.backoff_base_ms = 10;
        s.queue.backoff_cap_ms = 100;
        s.queue.max_attempts = 100;
    }));
    let mut runner = TestRunner::new(Config { cases: 10, max_shrink_iters: 0, ..Config::default() });
    let result = runner.run(&prop::collection::vec(op(), 1..10), |ops| {
        rt.block_on(async {
            let mut model = Model::default();
            // Each case starts from what the books hold now.
            for (seller, name) in SELLERS.iter().enumerate() {
                let resp = app.get(&format!("/v1/wallets/{name}")).await;
                if resp.status() == reqwest::StatusCode::OK {
                    let w: Value = resp.json().await.unwrap();
                    let b = w["balances"][0]["balance"].as_str().unwrap().replace('.', "");
                    model.wallets.insert(seller, b.parse().unwrap());
                }
            }
            for op in &ops {
                apply(&app, &mut model, op).await;
                settle(&app).await;
                assert_model(&app, &model).await;
            }
        });
        Ok(())
    });
    result.unwrap();
}
