//! Entering a final state with the books: an order's SUCCESS commits, in
//! one transaction, its status, the seller's wallet credit, the balanced
//! pay-in posting, `wallet_updated` and `ledger_updated` and the shop's
//! notice; its FAILED, the status and the notice. Every path that ends an
//! order (a paid session, a token charge, a manual capture) goes through
//! here, so a captured order is booked exactly as a paid one.

use std::collections::BTreeMap;

use crate::db::Tx;
use crate::ledger::{self, Posting};
use crate::money::{Currency, percentage_minor};
use crate::payments::model::{Order, OrderStatus, SellerId};
use crate::payments::store::{self, Charge};
use crate::payments::{Policy, notify};
use crate::wallet;

/// EXECUTING (or AUTHORIZED) → SUCCESS with the wallet credit and the
/// pay-in posting. Returns false if another writer already moved the order.
pub fn succeed_order(tx: &Tx, order: &Order, charge: &Charge, policy: Policy) -> anyhow::Result<bool> {
    Ok(succeed_orders(tx, &[order], Some(charge), policy)? == 1)
}

/// EXECUTING (or AUTHORIZED: a manual capture) → SUCCESS for orders paid
/// together (one checkout's orders, or any batch of them): each order's
/// transition and its shop's notice, and their money booked together by
/// [`book_payins`]. Each is booked for what it is charged
/// ([`Order::charged_minor`]: all of it, unless the shop's capture took
/// less). Returns how many moved; an order another writer already moved is
/// left alone.
///
/// `charge` is the PSP's own word on what paid them, and each order moved
/// must fit in it ([`store::back_with_charge`]); None only where the
/// orders' charge is already recorded with them (the benchmark's fixtures).
pub fn succeed_orders(tx: &Tx, orders: &[&Order], charge: Option<&Charge>, policy: Policy) -> anyhow::Result<usize> {
    // Each order moves in one row write, flags included: they only hold
    // because book_payins books, in the same transaction.
    let intent = charge.map(|c| c.payment_intent_id.as_str());
    let mut moved = Vec::with_capacity(orders.len());
    for &order in orders {
        let captured_minor = order.charged_minor();
        anyhow::ensure!(
            captured_minor > 0,
            "order {} is charged nothing: it is released, not paid",
            order.payment_order_id
        );
        let (_, share) = split(captured_minor, policy);
        let reason = match order.status {
            OrderStatus::Authorized => "captured at the PSP",
            _ => "paid at the PSP",
        };
        let paid = store::Paid {
            from: order.status,
            payment_intent: intent,
            captured_minor,
            seller_amount_minor: share,
            reason,
        };
        if store::mark_succeeded(tx, order.payment_order_id.as_str(), &paid)? {
            if let Some(charge) = charge {
                store::back_with_charge(tx, charge, order)?;
            }
            moved.push(order);
        }
    }
    book_payins(tx, &moved, policy)?;
    let ids: Vec<&str> = moved.iter().map(|o| o.payment_order_id.as_str()).collect();
    notify::orders_final(tx, &ids, OrderStatus::Success, policy)?;
    Ok(moved.len())
}

/// The money side of paid orders, booked together: one ledger call with
/// each order's pay-in posting (for what it is charged), one wallet credit
/// per seller and currency, and the wallet-equals-ledger check of each
/// wallet moved. An order that already has its pay-in posting fails the
/// whole call (the transaction rolls back): money is booked once per order.
pub fn book_payins(tx: &Tx, orders: &[&Order], policy: Policy) -> anyhow::Result<()> {
    let mut postings = Vec::with_capacity(orders.len());
    // In seller and currency order, as every booking locks wallets (no deadlock on PostgreSQL).
    let mut wallets: BTreeMap<(&SellerId, &'static str), (Currency, i64)> = BTreeMap::new();
    for &order in orders {
        let (posting, share) = payin_posting(order, policy);
        postings.push(posting);
        let currency = order.amount.currency();
        wallets.entry((&order.seller_id, currency.code())).or_insert((currency, 0)).1 += share;
    }
    let booked = ledger::post_transactions(tx, &postings).map_err(anyhow::Error::from)?;
    if let Some(i) = booked.iter().position(Option::is_none) {
        anyhow::bail!("order {} already has a pay-in posting", orders[i].payment_order_id);
    }
    for (&(seller_id, _), &(currency, credit)) in &wallets {
        crate::payouts::store::ensure_seller(tx, seller_id.as_str())?;
        wallet::credit_wallet(tx, seller_id.as_str(), currency, credit)?;
        wallet::assert_matches_ledger(tx, seller_id.as_str(), currency)?;
    }
    Ok(())
}

/// An order's amount split into the platform's commission and the seller's share.
fn split(amount_minor: i64, policy: Policy) -> (i64, i64) {
    let commission = percentage_minor(amount_minor, policy.commission_percent);
    (commission, amount_minor - commission)
}

/// The pay-in posting of a paid order, and the seller's share of it: the
/// PSP holds what it charged, owed to the seller less the commission.
fn payin_posting(order: &Order, policy: Policy) -> (Posting<'_>, i64) {
    let id = order.payment_order_id.as_str();
    let amount_minor = order.charged_minor();
    let (commission, seller_share) = split(amount_minor, policy);
    let mut entries = vec![(ledger::PSP_BALANCE.to_string(), amount_minor)];
    if seller_share > 0 {
        entries.push((ledger::seller_account(order.seller_id.as_str()), -seller_share));
    }
    if commission > 0 {
        entries.push((ledger::COMMISSION.to_string(), -commission));
    }
    let posting = Posting {
        source_type: "payment_order",
        source_id: id,
        currency: order.amount.currency(),
        description: format!("pay-in of order {id} for seller {}", order.seller_id),
        entries,
    };
    (posting, seller_share)
}

/// `from` → FAILED with its reason, and the shop told. Returns false if
/// the order was not in `from` (another writer moved it first).
pub fn fail_order(
    tx: &Tx,
    payment_order_id: &str,
    from: OrderStatus,
    failure_code: &str,
    reason: &str,
    policy: Policy,
) -> anyhow::Result<bool> {
    let moved = store::transition_order(tx, payment_order_id, from, OrderStatus::Failed, Some(failure_code), reason)?;
    if moved {
        notify::order_final(tx, payment_order_id, OrderStatus::Failed, policy)?;
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Db, params};
    use crate::payments::model::{CheckoutId, PaymentOrderId};

    fn order(id: &str, seller: &str, amount_minor: i64) -> Order {
        Order {
            payment_order_id: PaymentOrderId::from_stored(id.into()),
            checkout_id: CheckoutId::from_stored(format!("c-{id}")),
            ..Order::for_tests(seller, amount_minor, "EUR", OrderStatus::Success)
        }
    }

    fn wallet(db: &Db, seller: &str) -> i64 {
        db.read_now(|tx| tx.query_value("SELECT balance_minor FROM wallets WHERE seller_id = $1", params![seller]))
            .unwrap()
    }

    #[tokio::test]
    async fn payins_booked_together_credit_each_wallet_its_share_and_an_order_booked_before_refuses_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("c.db"), 2, 1000, &crate::db::till_migrations()).unwrap();
        let policy = Policy {
            commission_percent: "10".parse().unwrap(),
            webhook_attempts: 1,
            authorization_ms: 1,
            job_attempts: 1,
        };
        let orders = [order("a", "s1", 1000), order("b", "s1", 2000), order("c", "s2", 505)];
        db.write(move |tx| book_payins(tx, &orders.iter().collect::<Vec<_>>(), policy)).await.unwrap();
        // 10 % of 505 is 50.5: the commission rounds half away from zero, the seller gets the rest.
        assert_eq!((wallet(&db, "s1"), wallet(&db, "s2")), (2700, 454));
        let commission =
            db.read_now(|tx| ledger::account_balance(tx, ledger::COMMISSION, Currency::parse("EUR").unwrap()));
        assert_eq!(commission.unwrap(), -351);

        let again = [order("d", "s2", 100), order("b", "s1", 2000)];
        let refused = db.write(move |tx| book_payins(tx, &again.iter().collect::<Vec<_>>(), policy)).await;
        assert!(refused.unwrap_err().to_string().contains("order b already has a pay-in posting"));
        assert_eq!((wallet(&db, "s1"), wallet(&db, "s2")), (2700, 454), "nothing of the refused batch stays");
        let postings: i64 =
            db.read_now(|tx| tx.query_value("SELECT COUNT(*) FROM ledger_transactions", params![])).unwrap();
        assert_eq!(postings, 3);
    }
}
