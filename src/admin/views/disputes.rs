//! `/admin/disputes`: the disputes that need the shop first (needs a
//! response, then under review, each by evidence deadline, soonest first),
//! then the closed ones (won, lost, accepted), latest first; one keyset
//! cursor walks both. Also the disputes of one order (the payment's page)
//! and of one seller (the seller's page).

use chrono::{DateTime, Utc};

use crate::admin::format;
use crate::db::{Row, ToSql, Tx, Value, params};

pub const PAGE_SIZE: u32 = 50;
/// A dispute whose evidence is due within this long is marked urgent.
pub const URGENT_WITHIN_HOURS: i64 = 48;
/// The disputes a payment's or a seller's page lists.
const LISTED: i64 = 25;

/// Where a dispute sorts among the open ones: by status, and those with a
/// deadline before those without; text, so that every engine and
/// collation sorts it the same.
const OPEN_RANK: &str = "CASE WHEN status = 'needs_response' AND evidence_due_by IS NOT NULL THEN 'a'
                              WHEN status = 'needs_response' THEN 'b'
                              WHEN evidence_due_by IS NOT NULL THEN 'c' ELSE 'd' END";
const OPEN_KEY: &str = "COALESCE(evidence_due_by, '')";
/// When a closed dispute closed (a row always has `closed_at` once final;
/// `updated_at` stands in should one not).
const CLOSED_KEY: &str = "COALESCE(closed_at, updated_at)";
const OPEN_STATUSES: &str = "('needs_response', 'under_review')";

const COLUMNS: &str = "dispute_id, psp_dispute_id, payment_order_id, checkout_id, seller_id, amount_minor, fee_minor,
    seller_part_minor, currency, reason, status, evidence_due_by, response, evidence_text, responded_at, withdrawn_at,
    reinstated_at, closed_at, created_at,
    (SELECT COUNT(*) FROM disputes AS parts WHERE parts.psp_dispute_id = disputes.psp_dispute_id)";

/// One dispute as the dashboard shows it.
#[derive(Debug, Clone)]
pub struct DisputeItem {
    pub dispute_id: String,
    pub psp_dispute_id: String,
    pub payment_order_id: String,
    pub checkout_id: String,
    pub seller_id: String,
    pub amount: String,
    pub fee: String,
    /// What the seller's wallet gave up of it ("" when it bore nothing).
    pub seller_part: String,
    pub reason: String,
    pub status: String,
    /// The evidence deadline ("" when the PSP gave none) and how far off it is.
    pub due_by: String,
    pub due_in: String,
    /// The shop must answer within [`URGENT_WITHIN_HOURS`] (or is late).
    pub urgent: bool,
    pub needs_response: bool,
    /// The shop's answer: "evidence", "accept" or "".
    pub response: String,
    pub evidence_text: String,
    pub responded_at: String,
    /// What happened to the money: "withdrawn …", "given back …".
    pub money: String,
    pub closed_at: String,
    pub created_at: String,
    /// How many orders the PSP's dispute is shared by (a hosted checkout's
    /// one charge pays them all): one answer answers it for all of them.
    pub parts: i64,
}

impl DisputeItem {
    /// The status in words: "needs response".
    pub fn status_label(&self) -> String {
        self.status.replace('_', " ")
    }

    /// The evidence shortened for a table cell (the full text is on the disputes page).
    pub fn evidence_preview(&self) -> String {
        const SHOWN: usize = 120;
        let mut preview: String = self.evidence_text.chars().take(SHOWN).collect();
        if self.evidence_text.chars().count() > SHOWN {
            preview.push('…');
        }
        preview
    }
}

/// How far `due` is from `now`, in words, and whether it is urgent.
fn due_in(due: &str, now: DateTime<Utc>) -> (String, bool) {
    let Ok(due) = DateTime::parse_from_rfc3339(due) else { return (String::new(), false) };
    let left = due.with_timezone(&Utc) - now;
    let urgent = left < chrono::Duration::hours(URGENT_WITHIN_HOURS);
    let words = if left < chrono::Duration::zero() {
        "past".to_string()
    } else if left < chrono::Duration::hours(1) {
        format!("in {} min", left.num_minutes())
    } else if left < chrono::Duration::hours(URGENT_WITHIN_HOURS) {
        format!("in {} h", left.num_hours())
    } else {
        format!("in {} days", left.num_days())
    };
    (words, urgent)
}

fn item_from_row(r: &Row, now: DateTime<Utc>) -> anyhow::Result<DisputeItem> {
    let code: String = r.get(8)?;
    let status: String = r.get(10)?;
    let due: Option<String> = r.get(11)?;
    let needs_response = status == "needs_response";
    let (words, soon) = due.as_deref().map_or((String::new(), false), |d| due_in(d, now));
    let seller_part: i64 = r.get(7)?;
    let withdrawn: Option<String> = r.get(15)?;
    let reinstated: Option<String> = r.get(16)?;
    let money = match (withdrawn, reinstated) {
        (Some(_), Some(at)) => format!("given back {}", format::time(&at)),
        (Some(at), None) => format!("withdrawn {}", format::time(&at)),
        (None, _) => "not withdrawn yet".to_string(),
    };
    let time = |t: Option<String>| t.as_deref().map(format::time).unwrap_or_default();
    Ok(DisputeItem {
        dispute_id: r.get(0)?,
        psp_dispute_id: r.get(1)?,
        payment_order_id: r.get(2)?,
        checkout_id: r.get(3)?,
        seller_id: r.get(4)?,
        amount: format::money(r.get(5)?, &code),
        fee: format::money(r.get(6)?, &code),
        seller_part: if seller_part > 0 { format::money(seller_part, &code) } else { String::new() },
        reason: r.get(9)?,
        due_by: time(due),
        // Only a dispute that waits for the shop's answer has a deadline that matters.
        due_in: if needs_response { words } else { String::new() },
        urgent: needs_response && soon,
        needs_response,
        status,
        response: r.get::<Option<String>>(12)?.unwrap_or_default(),
        evidence_text: r.get::<Option<String>>(13)?.unwrap_or_default(),
        responded_at: time(r.get(14)?),
        money,
        closed_at: time(r.get(17)?),
        created_at: format::time(&r.get::<String>(18)?),
        parts: r.get(19)?,
    })
}

/// Which disputes the page lists: all, one order's, or one seller's.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub payment_order_id: Option<String>,
    pub seller_id: Option<String>,
}

impl Scope {
    /// Its conditions (`AND …`), their parameters pushed onto `args`.
    fn conditions(&self, args: &mut Vec<Value>) -> String {
        let mut sql = String::new();
        for (column, value) in [("payment_order_id", &self.payment_order_id), ("seller_id", &self.seller_id)] {
            if let Some(v) = value {
                args.push(Value::Text(v.clone()));
                sql.push_str(&format!(" AND {column} = ${}", args.len()));
            }
        }
        sql
    }

    pub fn is_all(&self) -> bool {
        self.payment_order_id.is_none() && self.seller_id.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct DisputesPage {
    pub open: Vec<DisputeItem>,
    pub closed: Vec<DisputeItem>,
    /// The last dispute shown, when more follow: the next page's cursor.
    pub next_after: Option<String>,
    /// Of all disputes in scope, how many need a response and how many are under review.
    pub needs_response: i64,
    pub under_review: i64,
}

/// Where the cursor's dispute sorts: open (its rank and deadline) or
/// closed (when it closed); None when it names no dispute.
enum Cursor {
    Open { rank: String, key: String, id: String },
    Closed { key: String, id: String },
}

fn cursor(tx: &Tx, after: &str) -> anyhow::Result<Option<Cursor>> {
    tx.query_opt(
        &format!(
            "SELECT status IN {OPEN_STATUSES}, {OPEN_RANK}, {OPEN_KEY}, {CLOSED_KEY}, dispute_id
             FROM disputes WHERE dispute_id = $1"
        ),
        params![after],
        |r| {
            let open: bool = r.get(0)?;
            Ok(match open {
                true => Cursor::Open { rank: r.get(1)?, key: r.get(2)?, id: r.get(4)? },
                false => Cursor::Closed { key: r.get(3)?, id: r.get(4)? },
            })
        },
    )
}

/// Up to `limit` disputes of one kind in scope, from after the cursor.
fn fetch(tx: &Tx, scope: &Scope, open: bool, after: Option<&Cursor>, limit: i64) -> anyhow::Result<Vec<DisputeItem>> {
    let mut args: Vec<Value> = Vec::new();
    let mut sql = format!(
        "SELECT {COLUMNS} FROM disputes WHERE status {} {OPEN_STATUSES}{}",
        if open { "IN" } else { "NOT IN" },
        scope.conditions(&mut args)
    );
    match after {
        Some(Cursor::Open { rank, key, id }) if open => {
            args.extend([Value::Text(rank.clone()), Value::Text(key.clone()), Value::Text(id.clone())]);
            let n = args.len();
            sql.push_str(&format!(" AND ({OPEN_RANK}, {OPEN_KEY}, dispute_id) > (${}, ${}, ${n})", n - 2, n - 1));
        }
        Some(Cursor::Closed { key, id }) if !open => {
            args.extend([Value::Text(key.clone()), Value::Text(id.clone())]);
            let n = args.len();
            sql.push_str(&format!(" AND ({CLOSED_KEY}, dispute_id) < (${}, ${n})", n - 1));
        }
        _ => {}
    }
    let order = if open {
        format!("{OPEN_RANK}, {OPEN_KEY}, dispute_id")
    } else {
        format!("{CLOSED_KEY} DESC, dispute_id DESC")
    };
    sql.push_str(&format!(" ORDER BY {order} LIMIT ${}", args.len() + 1));
    let mut bound: Vec<&dyn ToSql> = args.iter().map(|a| a as &dyn ToSql).collect();
    bound.push(&limit);
    let now = Utc::now();
    tx.query_map(&sql, &bound, |r| item_from_row(r, now))
}

/// One page of the disputes list: the open ones first, then the closed.
/// `after` is the last dispute of the previous page; an unknown one leaves nothing.
pub fn page(tx: &Tx, scope: &Scope, after: Option<&str>) -> anyhow::Result<DisputesPage> {
    let (needs_response, under_review) = open_counts(tx, scope)?;
    let cursor = match after {
        None => None,
        Some(id) => match cursor(tx, id)? {
            Some(c) => Some(c),
            None => {
                return Ok(DisputesPage {
                    open: vec![],
                    closed: vec![],
                    next_after: None,
                    needs_response,
                    under_review,
                });
            }
        },
    };
    let want = i64::from(PAGE_SIZE) + 1;
    let open = match &cursor {
        Some(Cursor::Closed { .. }) => Vec::new(),
        _ => fetch(tx, scope, true, cursor.as_ref(), want)?,
    };
    let rest = want - open.len() as i64;
    let closed = if rest > 0 { fetch(tx, scope, false, cursor.as_ref(), rest)? } else { Vec::new() };
    let (mut open, mut closed) = (open, closed);
    let has_more = open.len() + closed.len() > PAGE_SIZE as usize;
    // One more than a page was read to know whether more follow: drop it.
    if has_more && closed.pop().is_none() {
        open.pop();
    }
    let last = closed.last().or(open.last()).map(|d| d.dispute_id.clone());
    Ok(DisputesPage { open, closed, next_after: if has_more { last } else { None }, needs_response, under_review })
}

fn open_counts(tx: &Tx, scope: &Scope) -> anyhow::Result<(i64, i64)> {
    let mut args = Vec::new();
    let sql = format!(
        "SELECT status, COUNT(*) FROM disputes WHERE status IN {OPEN_STATUSES}{} GROUP BY status",
        scope.conditions(&mut args)
    );
    let bound: Vec<&dyn ToSql> = args.iter().map(|a| a as &dyn ToSql).collect();
    let rows: Vec<(String, i64)> = tx.query_map(&sql, &bound, |r| Ok((r.get(0)?, r.get(1)?)))?;
    let count = |status: &str| rows.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
    Ok((count("needs_response"), count("under_review")))
}

/// The disputes of one order or one seller, open first, for another page.
pub fn listed(tx: &Tx, scope: &Scope) -> anyhow::Result<(Vec<DisputeItem>, bool)> {
    let mut open = fetch(tx, scope, true, None, LISTED + 1)?;
    let rest = LISTED + 1 - open.len() as i64;
    if rest > 0 {
        open.extend(fetch(tx, scope, false, None, rest)?);
    }
    let more = open.len() as i64 > LISTED;
    open.truncate(LISTED as usize);
    Ok((open, more))
}

/// The open disputes: how many, and the soonest evidence deadline of those
/// that need a response (the overview's stat).
pub fn open_summary(tx: &Tx) -> anyhow::Result<(i64, Option<String>, bool)> {
    let (count, due): (i64, Option<String>) = tx.query_row(
        &format!(
            "SELECT COUNT(*), MIN(CASE WHEN status = 'needs_response' THEN evidence_due_by END)
             FROM disputes WHERE status IN {OPEN_STATUSES}"
        ),
        params![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let urgent = due.as_deref().is_some_and(|d| due_in(d, Utc::now()).1);
    Ok((count, due.as_deref().map(format::time), urgent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_within_two_days_is_urgent_and_said_in_words() {
        let now = DateTime::parse_from_rfc3339("2026-11-01T12:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(due_in("2026-11-08T12:00:00.000Z", now), ("in 7 days".into(), false));
        assert_eq!(due_in("2026-11-03T11:00:00.000Z", now), ("in 47 h".into(), true));
        assert_eq!(due_in("2026-11-01T12:30:00.000Z", now), ("in 30 min".into(), true));
        assert_eq!(due_in("2026-10-31T12:00:00.000Z", now), ("past".into(), true));
        assert_eq!(due_in("garbage", now), (String::new(), false));
    }
}
