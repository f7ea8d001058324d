//! `till check`: the ledger invariants of SPEC §5, each listing every
//! violation it finds; a sixth: each PSP charge pays only orders of its
//! own checkout (a token charge: its own order), never more than its
//! amount; and a seventh: every dispute's withdrawal is booked once, and
//! reversed once if (and only if) the PSP gave it back, never disputing
//! more than the order charged. A wallet below zero is allowed by as much
//! as its seller owes of disputes (a debt, listed in the report's notes).
//! The scheduled audit and the tests call the same function.
//!
//! A declared read model: it reads every module's tables directly, in SQL
//! both engines run (each `GROUP BY` names every plain column it selects;
//! a condition counted against a number is written `CASE WHEN … THEN 1
//! ELSE 0 END`).

use serde::Serialize;

use crate::db::{Tx, params};
use crate::money::{Currency, format_minor};

#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub invariant: u8,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub transactions: i64,
    pub entries: i64,
    pub accounts: i64,
    pub wallets: i64,
    pub orders_succeeded: i64,
    pub violations: Vec<Violation>,
    /// What holds but a person should know: wallets below zero by what
    /// their sellers owe of disputes (later pay-ins repay it).
    pub notes: Vec<String>,
}

impl Report {
    pub fn summary(&self) -> String {
        let head = format!(
            "{} transactions, {} entries, {} accounts, {} wallets, {} successful orders",
            self.transactions, self.entries, self.accounts, self.wallets, self.orders_succeeded
        );
        let notes: String = self.notes.iter().map(|n| format!("\n  note: {n}")).collect();
        if self.ok {
            return format!("ledger OK: {head}; all invariants hold{notes}");
        }
        let mut out = format!("ledger BROKEN: {head}; {} violation(s):", self.violations.len());
        for v in &self.violations {
            out.push_str(&format!("\n  [invariant {}] {}", v.invariant, v.message));
        }
        out.push_str(&notes);
        out
    }
}

/// A cap on violations listed per query, so a badly broken database still
/// gives a readable report.
const MAX_PER_RULE: i64 = 1_000;

struct Rule {
    invariant: u8,
    /// Each row is one violation, described by its single text column.
    sql: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        invariant: 1,
        sql: "SELECT 'currency ' || a.currency || ': all entries sum to ' || SUM(e.amount_minor) || ', not 0'
              FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id
              GROUP BY a.currency HAVING SUM(e.amount_minor) <> 0",
    },
    Rule {
        invariant: 1,
        sql: "SELECT 'transaction ' || t.id || ' (' || t.source_type || ' ' || t.source_id || ') sums to '
                     || COALESCE(SUM(e.amount_minor), 0) || ' over ' || COUNT(e.id) || ' entries'
              FROM ledger_transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id
              GROUP BY t.id, t.source_type, t.source_id
              HAVING COALESCE(SUM(e.amount_minor), 0) <> 0 OR COUNT(e.id) < 2",
    },
    Rule {
        invariant: 1,
        sql: "SELECT 'transaction ' || t.id || ' is in ' || t.currency || ' but books to account '
                     || a.name || ' in ' || a.currency
              FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
              JOIN ledger_accounts a ON a.id = e.account_id WHERE a.currency <> t.currency",
    },
    Rule {
        invariant: 1,
        sql: "SELECT 'account ' || a.name || ' ' || a.currency || ' shows balance ' || COALESCE(b.balance, 0)
                     || ' but its entries sum to ' || COALESCE(SUM(e.amount_minor), 0)
              FROM ledger_accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id
              LEFT JOIN (SELECT account_id, SUM(balance_minor) AS balance FROM ledger_balance_shards
                         GROUP BY account_id) b ON b.account_id = a.id
              GROUP BY a.id, a.name, a.currency, b.balance
              HAVING COALESCE(b.balance, 0) <> COALESCE(SUM(e.amount_minor), 0)",
    },
    Rule {
        invariant: 2,
        sql: "SELECT 'wallet ' || w.seller_id || ' ' || w.currency || ' holds ' || w.balance_minor
                     || ' but liabilities:seller:' || w.seller_id || ' says ' || COALESCE(-b.balance, 0)
              FROM wallets w LEFT JOIN ledger_accounts a
                ON a.name = 'liabilities:seller:' || w.seller_id AND a.currency = w.currency
              LEFT JOIN (SELECT account_id, SUM(balance_minor) AS balance FROM ledger_balance_shards
                         GROUP BY account_id) b ON b.account_id = a.id
              WHERE w.balance_minor <> COALESCE(-b.balance, 0)",
    },
    Rule {
        invariant: 2,
        sql: "SELECT 'ledger account ' || a.name || ' ' || a.currency || ' holds ' || -b.balance
                     || ' but the seller has no wallet in that currency'
              FROM ledger_accounts a
              JOIN (SELECT account_id, SUM(balance_minor) AS balance FROM ledger_balance_shards
                    GROUP BY account_id) b ON b.account_id = a.id
              WHERE LOWER(a.name) LIKE 'liabilities:seller:%' AND b.balance <> 0
                AND NOT EXISTS (SELECT 1 FROM wallets w
                                WHERE 'liabilities:seller:' || w.seller_id = a.name AND w.currency = a.currency)",
    },
    Rule {
        invariant: 3,
        sql: "SELECT 'order ' || o.payment_order_id || ' is ' || o.payment_order_status || ' with '
                     || COUNT(t.id) || ' pay-in transactions'
              FROM payment_orders o LEFT JOIN ledger_transactions t
                ON t.source_type = 'payment_order' AND t.source_id = o.payment_order_id
              GROUP BY o.payment_order_id, o.payment_order_status
              HAVING (o.payment_order_status = 'SUCCESS' AND COUNT(t.id) <> 1)
                  OR (o.payment_order_status <> 'SUCCESS' AND COUNT(t.id) <> 0)",
    },
    Rule {
        invariant: 3,
        sql: "SELECT 'pay-in transaction ' || t.id || ' names order ' || t.source_id || ', which does not exist'
              FROM ledger_transactions t
              WHERE t.source_type = 'payment_order'
                AND NOT EXISTS (SELECT 1 FROM payment_orders o WHERE o.payment_order_id = t.source_id)",
    },
    Rule {
        invariant: 3,
        sql: "SELECT 'order ' || payment_order_id || ' is ' || payment_order_status
                     || ' but ledger_updated=' || ledger_updated || ', wallet_updated=' || wallet_updated
              FROM payment_orders
              WHERE CASE WHEN payment_order_status = 'SUCCESS' THEN 1 ELSE 0 END
                    <> CASE WHEN ledger_updated = 1 AND wallet_updated = 1 THEN 1 ELSE 0 END
                 OR ledger_updated <> wallet_updated",
    },
    Rule {
        invariant: 4,
        sql: "SELECT 'order ' || o.payment_order_id || ' of ' || o.amount_minor || ' has ' || o.refunded_minor
                     || ' refunded but its live refunds add up to ' || COALESCE(SUM(r.amount_minor), 0)
              FROM payment_orders o LEFT JOIN refunds r ON r.payment_order_id = o.payment_order_id AND r.status <> 'FAILED'
              GROUP BY o.payment_order_id, o.amount_minor, o.refunded_minor, o.captured_minor
              HAVING o.refunded_minor <> COALESCE(SUM(r.amount_minor), 0)
                  OR o.refunded_minor > COALESCE(o.captured_minor, o.amount_minor)",
    },
    Rule {
        invariant: 4,
        sql: "SELECT 'order ' || o.payment_order_id || ' has ' || o.seller_refunded_minor
                     || ' of its seller''s share refunded but its live refunds took '
                     || COALESCE(SUM(r.seller_part_minor), 0)
              FROM payment_orders o LEFT JOIN refunds r ON r.payment_order_id = o.payment_order_id AND r.status <> 'FAILED'
              GROUP BY o.payment_order_id, o.seller_refunded_minor
              HAVING o.seller_refunded_minor <> COALESCE(SUM(r.seller_part_minor), 0)",
    },
    Rule {
        invariant: 4,
        sql: "SELECT 'refund ' || r.refund_id || ' (' || r.status || ') has ' || COUNT(t.id) || ' refund and '
                     || COUNT(v.id) || ' reversal transactions'
              FROM refunds r
              LEFT JOIN ledger_transactions t ON t.source_type = 'refund' AND t.source_id = r.refund_id
              LEFT JOIN ledger_transactions v ON v.source_type = 'refund_reversal' AND v.source_id = r.refund_id
              GROUP BY r.refund_id, r.status
              HAVING COUNT(t.id) <> 1 OR COUNT(v.id) <> CASE WHEN r.status = 'FAILED' THEN 1 ELSE 0 END",
    },
    Rule {
        invariant: 4,
        sql: "SELECT 'refund ' || r.refund_id || ' is for ' || r.amount_minor || ' ' || r.currency || ' on order '
                     || o.payment_order_id || ' which is ' || o.payment_order_status || ' in ' || o.currency
              FROM refunds r JOIN payment_orders o ON o.payment_order_id = r.payment_order_id
              WHERE o.payment_order_status <> 'SUCCESS' OR o.currency <> r.currency",
    },
    Rule {
        invariant: 5,
        sql: "SELECT 'payout ' || p.payout_id || ' (' || p.status || ') is booked ' || COUNT(DISTINCT b.id)
                     || ' time(s), paid out ' || COUNT(DISTINCT d.id) || ' and reversed ' || COUNT(DISTINCT v.id)
              FROM payouts p
              LEFT JOIN ledger_transactions b ON b.source_type = 'payout' AND b.source_id = p.payout_id
              LEFT JOIN ledger_transactions d ON d.source_type = 'payout_paid' AND d.source_id = p.payout_id
              LEFT JOIN ledger_transactions v ON v.source_type = 'payout_reversal' AND v.source_id = p.payout_id
              GROUP BY p.payout_id, p.status
              HAVING COUNT(DISTINCT b.id) <> 1
                  OR COUNT(DISTINCT d.id) <> CASE WHEN p.status = 'PAID' THEN 1 ELSE 0 END
                  OR COUNT(DISTINCT v.id) <> CASE WHEN p.status = 'FAILED' THEN 1 ELSE 0 END",
    },
    Rule {
        invariant: 5,
        sql: "SELECT t.source_type || ' transaction ' || t.id || ' names ' || t.source_id || ', which does not exist'
              FROM ledger_transactions t
              WHERE (t.source_type IN ('refund', 'refund_reversal')
                     AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.refund_id = t.source_id))
                 OR (t.source_type IN ('payout', 'payout_paid', 'payout_reversal')
                     AND NOT EXISTS (SELECT 1 FROM payouts p WHERE p.payout_id = t.source_id))
                 OR (t.source_type IN ('dispute', 'dispute_reversal')
                     AND NOT EXISTS (SELECT 1 FROM disputes d WHERE d.dispute_id = t.source_id))",
    },
    Rule {
        invariant: 6,
        sql: "SELECT 'order ' || o.payment_order_id || ' is SUCCESS but no PSP charge of its is recorded'
              FROM payment_orders o
              WHERE o.payment_order_status = 'SUCCESS'
                AND NOT EXISTS (SELECT 1 FROM psp_charges c WHERE c.payment_intent_id = o.psp_payment_intent_id)",
    },
    Rule {
        invariant: 6,
        sql: "SELECT 'PSP charge ' || c.payment_intent_id || ' of checkout ' || c.checkout_id
                     || COALESCE(' (order ' || c.payment_order_id || ')', '') || ' pays order ' || o.payment_order_id
                     || ' of checkout ' || o.checkout_id || ' in ' || o.currency
              FROM payment_orders o JOIN psp_charges c ON c.payment_intent_id = o.psp_payment_intent_id
              WHERE o.payment_order_status = 'SUCCESS'
                AND (o.checkout_id <> c.checkout_id OR o.currency <> c.currency
                     OR (c.payment_order_id IS NOT NULL AND c.payment_order_id <> o.payment_order_id))",
    },
    Rule {
        invariant: 6,
        sql: "SELECT 'PSP charge ' || c.payment_intent_id || ' of ' || c.amount_minor || ' ' || c.currency
                     || ' pays orders adding up to ' || COALESCE(s.paid, 0) || ' (recorded: ' || c.backed_minor || ')'
              FROM psp_charges c LEFT JOIN (
                  SELECT psp_payment_intent_id AS intent, SUM(captured_minor) AS paid FROM payment_orders
                  WHERE payment_order_status = 'SUCCESS' AND psp_payment_intent_id IS NOT NULL
                  GROUP BY psp_payment_intent_id) s ON s.intent = c.payment_intent_id
              WHERE COALESCE(s.paid, 0) > c.amount_minor OR COALESCE(s.paid, 0) <> c.backed_minor",
    },
    Rule {
        invariant: 7,
        sql: "SELECT 'dispute ' || d.dispute_id || ' (' || d.status || ') is booked ' || COUNT(DISTINCT w.id)
                     || ' time(s) and reversed ' || COUNT(DISTINCT v.id) || ' time(s)'
              FROM disputes d
              LEFT JOIN ledger_transactions w ON w.source_type = 'dispute' AND w.source_id = d.dispute_id
              LEFT JOIN ledger_transactions v ON v.source_type = 'dispute_reversal' AND v.source_id = d.dispute_id
              GROUP BY d.dispute_id, d.status, d.withdrawn_at, d.reinstated_at
              HAVING COUNT(DISTINCT w.id) <> CASE WHEN d.withdrawn_at IS NULL THEN 0 ELSE 1 END
                  OR COUNT(DISTINCT v.id) <> CASE WHEN d.reinstated_at IS NULL THEN 0 ELSE 1 END",
    },
    Rule {
        invariant: 7,
        sql: "SELECT 'dispute ' || dispute_id || ' is ' || status || ' but its money was given back'
              FROM disputes WHERE reinstated_at IS NOT NULL AND status <> 'won'",
    },
    Rule {
        invariant: 7,
        sql: "SELECT 'order ' || o.payment_order_id || ' charged ' || COALESCE(o.captured_minor, 0)
                     || ' but its disputes take ' || SUM(d.amount_minor)
              FROM payment_orders o JOIN disputes d ON d.payment_order_id = o.payment_order_id
              GROUP BY o.payment_order_id, o.captured_minor
              HAVING SUM(d.amount_minor) > COALESCE(o.captured_minor, 0)",
    },
];

/// What the configuration allows, which some invariants depend on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub allow_seller_debt: bool,
    pub hold_days: i64,
}

impl Options {
    pub fn of(settings: &crate::config::Settings) -> Options {
        Options { allow_seller_debt: settings.refunds.allow_seller_debt, hold_days: settings.payouts.hold_days }
    }
}

/// `run_with` under the default configuration (no seller debt allowed).
pub fn run(tx: &Tx) -> anyhow::Result<Report> {
    run_with(tx, &Options::default())
}

/// Runs every rule on `tx`: opened by `Db::read_snapshot`, the report is
/// one consistent snapshot.
pub fn run_with(tx: &Tx, options: &Options) -> anyhow::Result<Report> {
    let count = |sql: &str| -> anyhow::Result<i64> { tx.query_value(sql, params![]) };
    let mut report = Report {
        ok: true,
        transactions: count("SELECT COUNT(*) FROM ledger_transactions")?,
        entries: count("SELECT COUNT(*) FROM ledger_entries")?,
        accounts: count("SELECT COUNT(*) FROM ledger_accounts")?,
        wallets: count("SELECT COUNT(*) FROM wallets")?,
        orders_succeeded: count("SELECT COUNT(*) FROM payment_orders WHERE payment_order_status = 'SUCCESS'")?,
        violations: Vec::new(),
        notes: Vec::new(),
    };
    for rule in RULES {
        let sql = format!("{} LIMIT $1", rule.sql);
        let messages = tx.query_map(&sql, params![MAX_PER_RULE], |r| r.get::<String>(0))?;
        report.violations.extend(messages.into_iter().map(|message| Violation { invariant: rule.invariant, message }));
    }
    let (violations, notes) = negative_wallets(tx, options)?;
    report.violations.extend(violations);
    report.notes = notes;
    report.ok = report.violations.is_empty();
    Ok(report)
}

/// Invariant 4's second half: no wallet's available money below zero,
/// unless the configuration allows seller debt, or but for what its
/// seller owes of disputes (a debt the report notes).
fn negative_wallets(tx: &Tx, options: &Options) -> anyhow::Result<(Vec<Violation>, Vec<String>)> {
    let wallets: Vec<(String, Currency)> = tx.query_map(
        "SELECT seller_id, currency FROM wallets WHERE balance_minor < 0 ORDER BY seller_id, currency",
        params![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (mut violations, mut notes) = (Vec::new(), Vec::new());
    for (seller, currency) in wallets {
        let b = crate::wallet::balances(tx, &seller, currency, options.hold_days)?;
        let owed = crate::disputes::seller_debt_minor(tx, &seller, currency)?;
        let show = |minor: i64| format_minor(minor, currency);
        if owed > 0 && -b.balance <= owed {
            notes.push(format!(
                "wallet {seller} {currency} is {} below zero: the seller owes it of disputes ({} in all), \
                 repaid by its next pay-ins; no payout until then",
                show(-b.balance),
                show(owed)
            ));
        } else if b.available < 0 && !options.allow_seller_debt {
            violations.push(Violation {
                invariant: 4,
                message: format!(
                    "wallet {seller} {currency} has {} available (balance {}), and seller debt is not allowed",
                    show(b.available),
                    show(b.balance)
                ),
            });
        }
    }
    Ok((violations, notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    /// Books broken behind till's back, row by row, one fault per rule.
    const BROKEN: &[&str] = &[
        "INSERT INTO api_keys (id, name, key_hash, key_prefix, created_at) VALUES ('k', 'k', 'h', 'p', 'now')",
        "INSERT INTO payment_events (checkout_id, api_key_id, buyer_info, payment_method, request_hash, created_at,
                                     updated_at) VALUES ('c', 'k', '{}', 'token', 'h', 'now', 'now')",
        // Paid, but flagged as booked in the wallet only, with no pay-in and 50 refunded by nothing
        // (30 of it of the seller's share).
        "INSERT INTO payment_orders (payment_order_id, checkout_id, position, buyer_account, seller_id, amount_minor,
             currency, payment_order_status, ledger_updated, wallet_updated, refunded_minor, seller_refunded_minor,
             created_at, updated_at, captured_minor)
         VALUES ('o1', 'c', 0, 'b', 's', 1000, 'USD', 'SUCCESS', 0, 1, 50, 30, 'now', 'now', 1000)",
        "INSERT INTO payment_orders (payment_order_id, checkout_id, position, buyer_account, seller_id, amount_minor,
             currency, payment_order_status, created_at, updated_at)
         VALUES ('o2', 'c', 1, 'b', 's', 1000, 'USD', 'EXECUTING', 'now', 'now')",
        // A failed refund booked but never reversed.
        "INSERT INTO refunds (refund_id, payment_order_id, amount_minor, currency, status, seller_part_minor,
             commission_part_minor, created_by, created_at, updated_at)
         VALUES ('r1', 'o2', 100, 'USD', 'FAILED', 100, 0, 'k', 'now', 'now')",
        "INSERT INTO ledger_transactions (source_type, source_id, currency, description, created_at)
         VALUES ('refund', 'r1', 'USD', 'refund', 'now')",
        // A paid payout booked but never paid out.
        "INSERT INTO payouts (payout_id, seller_id, amount_minor, currency, status, destination, created_by,
             created_at, updated_at) VALUES ('p1', 's', 100, 'USD', 'PAID', 'acct', 'k', 'now', 'now')",
        "INSERT INTO ledger_transactions (source_type, source_id, currency, description, created_at)
         VALUES ('payout', 'p1', 'USD', 'payout', 'now')",
        // A dispute of more than the order charged, withdrawn but never booked, and
        // reinstated though lost.
        "INSERT INTO disputes (dispute_id, psp_dispute_id, part, payment_order_id, checkout_id, seller_id,
             payment_intent_id, amount_minor, currency, seller_liable, seller_part_minor, commission_part_minor,
             reason, status, withdrawn_at, reinstated_at, created_at, updated_at)
         VALUES ('d1', 'du_1', 0, 'o1', 'c', 's', 'pi', 1500, 'USD', 1, 1500, 0, 'fraudulent', 'lost', 'now', 'now',
                 'now', 'now')",
        // An account whose balance its (no) entries do not explain.
        "INSERT INTO ledger_accounts (name, currency, kind) VALUES ('assets:bank', 'USD', 'asset')",
        "INSERT INTO ledger_balance_shards (account_id, shard, balance_minor)
         SELECT id, 3, 5 FROM ledger_accounts WHERE name = 'assets:bank'",
    ];

    #[test]
    fn each_rule_reports_its_fault_and_only_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("k.db"), 2, 1000, &crate::db::till_migrations()).unwrap();
        db.write_now(|tx| BROKEN.iter().try_for_each(|sql| tx.execute(sql, params![]).map(drop))).unwrap();
        let report = db.read_snapshot(run).unwrap();
        let messages: Vec<(u8, &str)> = report.violations.iter().map(|v| (v.invariant, v.message.as_str())).collect();
        for (invariant, expected) in [
            (1, "(refund r1) sums to 0 over 0 entries"),
            (1, "account assets:bank USD shows balance 5 but its entries sum to 0"),
            (3, "order o1 is SUCCESS with 0 pay-in transactions"),
            (3, "order o1 is SUCCESS but ledger_updated=0, wallet_updated=1"),
            (4, "order o1 of 1000 has 50 refunded but its live refunds add up to 0"),
            (4, "order o1 has 30 of its seller's share refunded but its live refunds took 0"),
            (4, "refund r1 (FAILED) has 1 refund and 0 reversal transactions"),
            (5, "payout p1 (PAID) is booked 1 time(s), paid out 0 and reversed 0"),
            (7, "dispute d1 (lost) is booked 0 time(s) and reversed 0 time(s)"),
            (7, "dispute d1 is lost but its money was given back"),
            (7, "order o1 charged 1000 but its disputes take 1500"),
        ] {
            assert!(messages.iter().any(|&(i, m)| i == invariant && m.contains(expected)), "{expected}: {messages:#?}");
        }
        assert!(!messages.iter().any(|(_, m)| m.contains("order o2 is EXECUTING")), "o2 is consistent: {messages:#?}");
        assert!(!report.ok);
    }
}
