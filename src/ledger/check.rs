//! `till check`: the ledger invariants of SPEC §5, each listing every
//! violation it finds. The scheduled audit and the tests call the same
//! function.

use rusqlite::Connection;
use serde::Serialize;

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
}

impl Report {
    pub fn summary(&self) -> String {
        let head = format!(
            "{} transactions, {} entries, {} accounts, {} wallets, {} successful orders",
            self.transactions, self.entries, self.accounts, self.wallets, self.orders_succeeded
        );
        if self.ok {
            return format!("ledger OK: {head}; all invariants hold");
        }
        let mut out = format!("ledger BROKEN: {head}; {} violation(s):", self.violations.len());
        for v in &self.violations {
            out.push_str(&format!("\n  [invariant {}] {}", v.invariant, v.message));
        }
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
              GROUP BY t.id HAVING COALESCE(SUM(e.amount_minor), 0) <> 0 OR COUNT(e.id) < 2",
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
        sql: "SELECT 'account ' || a.name || ' ' || a.currency || ' shows balance ' || a.balance_minor
                     || ' but its entries sum to ' || COALESCE(SUM(e.amount_minor), 0)
              FROM ledger_accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id
              GROUP BY a.id HAVING a.balance_minor <> COALESCE(SUM(e.amount_minor), 0)",
    },
    Rule {
        invariant: 2,
        sql: "SELECT 'wallet ' || w.seller_id || ' ' || w.currency || ' holds ' || w.balance_minor
                     || ' but liabilities:seller:' || w.seller_id || ' says ' || COALESCE(-a.balance_minor, 0)
              FROM wallets w LEFT JOIN ledger_accounts a
                ON a.name = 'liabilities:seller:' || w.seller_id AND a.currency = w.currency
              WHERE w.balance_minor <> COALESCE(-a.balance_minor, 0)",
    },
    Rule {
        invariant: 2,
        sql: "SELECT 'ledger account ' || a.name || ' ' || a.currency || ' holds ' || -a.balance_minor
                     || ' but the seller has no wallet in that currency'
              FROM ledger_accounts a
              WHERE a.name LIKE 'liabilities:seller:%' AND a.balance_minor <> 0
                AND NOT EXISTS (SELECT 1 FROM wallets w
                                WHERE 'liabilities:seller:' || w.seller_id = a.name AND w.currency = a.currency)",
    },
    Rule {
        invariant: 3,
        sql: "SELECT 'order ' || o.payment_order_id || ' is ' || o.payment_order_status || ' with '
                     || COUNT(t.id) || ' pay-in transactions'
              FROM payment_orders o LEFT JOIN ledger_transactions t
                ON t.source_type = 'payment_order' AND t.source_id = o.payment_order_id
              GROUP BY o.payment_order_id
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
              WHERE (payment_order_status = 'SUCCESS') <> (ledger_updated = 1 AND wallet_updated = 1)
                 OR ledger_updated <> wallet_updated",
    },
];

/// Runs every rule in one read transaction, so the report is one consistent snapshot.
pub fn run(conn: &mut Connection) -> anyhow::Result<Report> {
    let tx = conn.transaction()?;
    let count = |sql: &str| -> anyhow::Result<i64> { Ok(tx.query_row(sql, [], |r| r.get(0))?) };
    let mut report = Report {
        ok: true,
        transactions: count("SELECT COUNT(*) FROM ledger_transactions")?,
        entries: count("SELECT COUNT(*) FROM ledger_entries")?,
        accounts: count("SELECT COUNT(*) FROM ledger_accounts")?,
        wallets: count("SELECT COUNT(*) FROM wallets")?,
        orders_succeeded: count("SELECT COUNT(*) FROM payment_orders WHERE payment_order_status = 'SUCCESS'")?,
        violations: Vec::new(),
    };
    for rule in RULES {
        let sql = format!("{} LIMIT {MAX_PER_RULE}", rule.sql);
        let mut st = tx.prepare(&sql)?;
        let messages = st.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
        report.violations.extend(messages.into_iter().map(|message| Violation { invariant: rule.invariant, message }));
    }
    report.ok = report.violations.is_empty();
    Ok(report)
}
