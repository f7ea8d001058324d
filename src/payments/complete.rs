//! Applying the PSP's word on a hosted checkout session. Entering SUCCESS
//! commits, in one transaction, the order's status, the seller's wallet
//! credit, the balanced ledger transaction, `wallet_updated`,
//! `ledger_updated` and `is_payment_done`. Applying the same session twice
//! changes nothing the second time.

use std::collections::BTreeMap;

use crate::context::Ctx;
use crate::db::Tx;
use crate::ledger::{self, Posting};
use crate::money::{Currency, Money, percentage_minor};
use crate::payments::capture;
use crate::payments::model::{CaptureMethod, CheckoutId, Order, OrderStatus, SellerId};
use crate::payments::store::{self, Charge};
use crate::payments::{Policy, notify};
use crate::psp::PspError;
use crate::psp::types::{CheckoutSession, PaymentIntent, SessionOutcome};
use crate::wallet;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub succeeded: usize,
    pub failed: usize,
    /// A manual checkout's session is complete, and its payment intent
    /// (not given) says whether the money is held, captured or released.
    pub needs_intent: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("session {0} belongs to no checkout of ours")]
    UnknownSession(String),
    #[error("session {session} says {psp}, but checkout {checkout_id} holds {ours}")]
    Mismatch { session: String, checkout_id: String, psp: String, ours: String },
    /// The PSP could not be asked for the session's payment intent: ask again.
    #[error("the PSP did not answer: {0}")]
    PspUnavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Applies a session just read from the PSP (never a webhook's copy of it).
/// A manual checkout's complete session is applied with its payment
/// intent, read from the PSP too (between two writes, outside any).
pub async fn apply_checkout_session(ctx: &Ctx, session: CheckoutSession) -> Result<Applied, ApplyError> {
    let policy = Policy::of(&ctx.settings);
    let first = {
        let session = session.clone();
        ctx.db.write(move |tx| apply_in_tx(tx, &session, None, policy)).await?
    };
    let Some(intent_id) = session.payment_intent.clone().filter(|_| first.needs_intent) else { return Ok(first) };
    let intent = match ctx.psp.retrieve_payment_intent(&intent_id, &session.id).await {
        Ok(intent) => intent,
        Err(PspError::Unknown(why)) => return Err(ApplyError::PspUnavailable(why)),
        Err(refused) => return Err(ApplyError::Internal(anyhow::anyhow!("payment intent {intent_id}: {refused}"))),
    };
    ctx.db.write(move |tx| apply_in_tx(tx, &session, Some(&intent), policy)).await
}

fn apply_in_tx(
    tx: &Tx,
    session: &CheckoutSession,
    intent: Option<&PaymentIntent>,
    policy: Policy,
) -> Result<Applied, ApplyError> {
    let checkout_id = match store::checkout_of_session(tx, &session.id)? {
        Some(id) => id,
        None => adopt_session(tx, session)?,
    };
    let head = store::find_event_head(tx, checkout_id.as_str())?
        .ok_or_else(|| anyhow::anyhow!("checkout {checkout_id} vanished"))?;
    let orders = store::load_orders_of(tx, checkout_id.as_str())?;
    let executing = orders.iter().filter(|o| o.status == OrderStatus::Executing);
    let mut applied = Applied::default();
    match session.outcome() {
        SessionOutcome::Open => {}
        // Manual capture: the session says the buyer finished; its intent
        // says what the PSP holds or took.
        SessionOutcome::Paid | SessionOutcome::Completed if head.capture_method == CaptureMethod::Manual => {
            match intent {
                Some(intent) if session.payment_intent.as_deref() == Some(intent.id.as_str()) => {
                    capture::apply_to_group(tx, &head, &checkout_id, &orders, intent, None, policy)?;
                }
                Some(intent) => {
                    return Err(ApplyError::Mismatch {
                        session: session.id.clone(),
                        checkout_id: checkout_id.to_string(),
                        psp: format!("payment intent {:?}", session.payment_intent),
                        ours: format!("payment intent {}", intent.id),
                    });
                }
                None => applied.needs_intent = session.payment_intent.is_some(),
            }
        }
        // An automatic checkout's payment still on its way: its session completes paid later.
        SessionOutcome::Completed => {}
        SessionOutcome::Paid => {
            let charge = session_charge(session, &checkout_id, &orders)?;
            applied.succeeded += succeed_orders(tx, &executing.collect::<Vec<_>>(), Some(&charge), policy)?;
        }
        SessionOutcome::Expired => {
            let (code, reason) = match head.canceled {
                true => ("canceled", "hosted checkout canceled by the shop"),
                false => ("expired", "hosted checkout session expired"),
            };
            for order in executing {
                let id = order.payment_order_id.as_str();
                applied.failed += usize::from(fail_order(tx, id, OrderStatus::Executing, code, reason, policy)?);
            }
        }
    }
    notify::checkout_progress(tx, checkout_id.as_str(), policy)?;
    Ok(applied)
}

/// A session we created but whose id we never stored (till stopped between
/// the PSP's answer and the write): recognise it by the checkout id we put in
/// its metadata, and record it now.
fn adopt_session(tx: &Tx, session: &CheckoutSession) -> Result<CheckoutId, ApplyError> {
    let unknown = || ApplyError::UnknownSession(session.id.clone());
    let named = session.checkout_id().ok_or_else(unknown)?;
    let head = store::find_event_head(tx, named)?.ok_or_else(unknown)?;
    if head.psp_session_id.is_some() || head.payment_method != "hosted_page" {
        return Err(unknown());
    }
    // A stored checkout id: canonical, so it parses to itself.
    let checkout_id = CheckoutId::parse(named).ok_or_else(unknown)?;
    store::set_session(tx, checkout_id.as_str(), &session.id, session.url.as_deref().unwrap_or_default())?;
    for order in store::load_orders_of(tx, checkout_id.as_str())? {
        store::transition_order(
            tx,
            order.payment_order_id.as_str(),
            OrderStatus::NotStarted,
            OrderStatus::Executing,
            None,
            "hosted checkout session recovered from the PSP",
        )?;
    }
    Ok(checkout_id)
}

/// The charge a paid session made: the PSP must have taken exactly what the
/// orders add up to, in their currency, through a payment intent.
fn session_charge(session: &CheckoutSession, checkout_id: &CheckoutId, orders: &[Order]) -> Result<Charge, ApplyError> {
    let ours: i64 = orders.iter().map(|o| o.amount.amount_minor()).sum();
    let currency = orders.first().map(|o| o.amount.currency());
    let code = currency.map(|c| c.stripe_code()).unwrap_or_default();
    let theirs_currency = session.currency.clone().unwrap_or_default().to_ascii_lowercase();
    let mismatch = |psp: String| ApplyError::Mismatch {
        session: session.id.clone(),
        checkout_id: checkout_id.to_string(),
        psp,
        ours: format!("{ours} {code}"),
    };
    if session.amount_total != Some(ours) || theirs_currency != code {
        return Err(mismatch(format!("{:?} {theirs_currency}", session.amount_total)));
    }
    let intent = session.payment_intent.clone().ok_or_else(|| mismatch("paid with no payment intent".into()))?;
    let currency = currency.ok_or_else(|| anyhow::anyhow!("checkout {checkout_id} has no orders"))?;
    Ok(Charge {
        payment_intent_id: intent,
        checkout_id: checkout_id.clone(),
        payment_order_id: None,
        amount: Money::from_minor(ours, currency).map_err(anyhow::Error::from)?,
    })
}

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
pub(crate) fn fail_order(
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
    use crate::payments::model::PaymentOrderId;

    fn order(id: &str, seller: &str, amount_minor: i64) -> Order {
        Order {
            payment_order_id: PaymentOrderId::from_stored(id.into()),
            checkout_id: CheckoutId::from_stored(format!("c-{id}")),
            seller_id: SellerId::parse(seller).unwrap(),
            amount: Money::from_minor(amount_minor, Currency::parse("EUR").unwrap()).unwrap(),
            status: OrderStatus::Success,
            refunded_minor: 0,
            failure_code: None,
            psp_payment_intent_id: None,
            wallet_updated: true,
            ledger_updated: true,
            created_at: String::new(),
            updated_at: String::new(),
            description: None,
            metadata: Default::default(),
            captured_minor: Some(amount_minor),
            authorized_at: None,
            capture_before: None,
            capture_minor: None,
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
