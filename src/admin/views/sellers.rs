//! `/admin/sellers` and a seller's page: wallets (balance, pending,
//! available per currency, from `wallet::balances`; a debt when disputes
//! took the balance below zero; what buyers authorized and the shop has not
//! captured), payouts, disputes, and what a payout form needs.

use crate::admin::format;
use crate::admin::views::disputes::{self, DisputeItem, Scope};
use crate::db::{Tx, params};
use crate::money::Currency;
use crate::payouts::store as payouts;

pub const PAGE_SIZE: u32 = 50;

#[derive(Debug, Clone)]
pub struct WalletRow {
    pub currency: String,
    pub balance: String,
    pub pending: String,
    pub available: String,
    /// Available as a form field wants it ("15.00"); None when nothing is.
    pub available_plain: Option<String>,
    /// What the seller owes when disputes of money already paid out took
    /// its balance below zero (later pay-ins repay it); None otherwise.
    pub debt: Option<String>,
    /// Authorized for the seller, not captured yet (not in the balance); None when nothing is.
    pub authorized: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SellerRow {
    pub seller_id: String,
    pub name: String,
    pub payout_destination: String,
    pub wallets: Vec<WalletRow>,
}

#[derive(Debug, Clone)]
pub struct SellerList {
    pub rows: Vec<SellerRow>,
    pub next_after: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PayoutRow {
    pub payout_id: String,
    pub seller_id: String,
    pub amount: String,
    pub status: String,
    pub destination: String,
    pub failure_code: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone)]
pub struct SellerPage {
    pub seller: SellerRow,
    /// Whether the seller was registered with PUT /v1/sellers (payouts need it).
    pub registered: bool,
    pub payouts: Vec<PayoutRow>,
    pub payouts_more: bool,
    /// Its disputes, open first (the latest few; the disputes page has all).
    pub disputes: Vec<DisputeItem>,
    pub disputes_more: bool,
    pub actions: Vec<crate::admin::actions::ActionView>,
}

/// The seller's wallets, in every currency it has one or has payments
/// authorized in (awaiting capture), as `wallet::read_wallet` has them.
pub fn wallets(tx: &Tx, seller_id: &str, hold_days: i64) -> anyhow::Result<Vec<WalletRow>> {
    let authorized = crate::payments::store::authorized_of_seller(tx, seller_id)?;
    let mut currencies = crate::wallet::currencies_of(tx, seller_id)?;
    for (currency, _) in &authorized {
        if !currencies.contains(currency) {
            currencies.push(*currency);
        }
    }
    currencies.sort_by_key(|c| c.code());
    let mut rows = Vec::with_capacity(currencies.len());
    for currency in currencies {
        let code = currency.code();
        let b = crate::wallet::balances(tx, seller_id, currency, hold_days)?;
        let held = authorized.iter().find(|(c, _)| *c == currency).map_or(0, |(_, minor)| *minor);
        rows.push(WalletRow {
            balance: format::money(b.balance, code),
            pending: format::money(b.pending, code),
            available: format::money(b.available, code),
            available_plain: (b.available > 0).then(|| format::plain_amount(b.available, code)),
            debt: (b.balance < 0).then(|| format::money(-b.balance, code)),
            authorized: (held > 0).then(|| format::money(held, code)),
            currency: code.to_string(),
        });
    }
    Ok(rows)
}

fn seller_row(tx: &Tx, seller_id: &str, hold_days: i64) -> anyhow::Result<(SellerRow, bool)> {
    let registered = payouts::seller(tx, seller_id)?;
    let row = SellerRow {
        seller_id: seller_id.to_string(),
        name: registered.as_ref().and_then(|s| s.name.clone()).unwrap_or_default(),
        payout_destination: registered.as_ref().and_then(|s| s.payout_destination.clone()).unwrap_or_default(),
        wallets: wallets(tx, seller_id, hold_days)?,
    };
    Ok((row, registered.is_some()))
}

/// Every seller that is registered, has a wallet or has payments
/// authorized (awaiting capture), by id.
pub fn list(tx: &Tx, after: Option<&str>, hold_days: i64) -> anyhow::Result<SellerList> {
    let mut ids: Vec<String> = tx.query_map(
        "SELECT seller_id FROM (SELECT seller_id FROM sellers UNION SELECT seller_id FROM wallets
                                UNION SELECT seller_id FROM payment_orders WHERE payment_order_status = 'AUTHORIZED')
                          AS known
         WHERE CAST($1 AS TEXT) IS NULL OR seller_id > $1 ORDER BY seller_id LIMIT $2",
        params![after, i64::from(PAGE_SIZE) + 1],
        |r| r.get(0),
    )?;
    let has_more = ids.len() > PAGE_SIZE as usize;
    ids.truncate(PAGE_SIZE as usize);
    let next_after = if has_more { ids.last().cloned() } else { None };
    let rows = ids.iter().map(|id| Ok(seller_row(tx, id, hold_days)?.0)).collect::<anyhow::Result<Vec<_>>>()?;
    Ok(SellerList { rows, next_after })
}

pub fn payout_rows(tx: &Tx, filter: &payouts::PayoutFilter) -> anyhow::Result<(Vec<PayoutRow>, bool)> {
    let (views, more) = payouts::list(tx, filter)?;
    let rows = views
        .into_iter()
        .map(|p| {
            let minor = Currency::parse(&p.currency)
                .ok()
                .and_then(|c| crate::money::parse_minor(&p.amount, c).ok())
                .unwrap_or_default();
            PayoutRow {
                amount: format::money(minor, &p.currency),
                payout_id: p.payout_id,
                seller_id: p.seller_id,
                status: p.status.to_string(),
                destination: p.destination,
                failure_code: p.failure_code.unwrap_or_default(),
                created_at: format::time(&p.created_at),
                updated_at: format::time(&p.updated_at),
            }
        })
        .collect();
    Ok((rows, more))
}

/// A seller's page; None if till has never heard of the seller.
pub fn page(tx: &Tx, seller_id: &str, hold_days: i64) -> anyhow::Result<Option<SellerPage>> {
    let (seller, registered) = seller_row(tx, seller_id, hold_days)?;
    if !registered && seller.wallets.is_empty() {
        return Ok(None);
    }
    let filter =
        payouts::PayoutFilter { seller_id: Some(seller_id.to_string()), status: None, starting_after: None, limit: 25 };
    let (payouts, payouts_more) = payout_rows(tx, &filter)?;
    let scope = Scope { seller_id: Some(seller_id.to_string()), ..Scope::default() };
    let (disputes, disputes_more) = disputes::listed(tx, &scope)?;
    let actions = crate::admin::actions::for_subjects(tx, &[seller_id.to_string()], 10)?;
    Ok(Some(SellerPage { seller, registered, payouts, payouts_more, disputes, disputes_more, actions }))
}
