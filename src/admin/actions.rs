//! The audit trail of dashboard actions, which also makes each one
//! idempotent. Every action form carries a hidden random key; the row
//! inserted first under that key is the lock (brandur's design): a second
//! submit of the same form finds it and shows the first outcome instead of
//! acting twice. A failed action may be tried again with the same key. An
//! action interrupted by a crash stays `running` and is never re-run
//! blindly: the staff member looks at what happened and starts a new one.

use sha2::{Digest, Sha256};

use crate::db::{Row, Tx, params};

pub const MAX_KEY_LEN: usize = 64;

/// What a dashboard action is about to do. Owned, so that it can move into
/// the write that records it.
#[derive(Debug, Clone)]
pub struct NewAction {
    pub key: String,
    pub staff_email: String,
    pub action: String,
    pub subject_id: String,
    /// The form's fields that define the request (not the CSRF token).
    pub fields: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Go ahead; finish the action with this id.
    Run(i64),
    /// This form was submitted before: its action, done or still running.
    Seen(i64),
}

#[derive(Debug, thiserror::Error)]
pub enum BeginError {
    #[error("the form's key is missing or malformed; reload the page and try again")]
    BadKey,
    #[error("this form was already used for a different request; reload the page and try again")]
    KeyReused,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

fn request_hash(new: &NewAction) -> String {
    let mut h = Sha256::new();
    for part in [&new.action, &new.subject_id, &new.staff_email] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for (k, v) in &new.fields {
        h.update(k.as_bytes());
        h.update([1]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

pub fn begin(tx: &Tx, new: &NewAction) -> Result<Begin, BeginError> {
    let key_ok = !new.key.is_empty()
        && new.key.len() <= MAX_KEY_LEN
        && new.key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !key_ok {
        return Err(BeginError::BadKey);
    }
    let hash = request_hash(new);
    let existing: Option<(i64, String, String)> = tx.query_opt(
        "SELECT id, request_hash, status FROM admin_actions WHERE idempotency_key = $1",
        params![new.key],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    match existing {
        Some((_, stored, _)) if stored != hash => Err(BeginError::KeyReused),
        Some((id, _, status)) if status == "failed" => {
            tx.execute(
                "UPDATE admin_actions SET status = 'running', message = NULL, finished_at = NULL WHERE id = $1",
                params![id],
            )?;
            Ok(Begin::Run(id))
        }
        Some((id, _, _)) => Ok(Begin::Seen(id)),
        None => {
            let id = tx.query_value(
                "INSERT INTO admin_actions (idempotency_key, staff_email, action, subject_id, request_hash,
                                            status, created_at)
                 VALUES ($1, $2, $3, $4, $5, 'running', $6) RETURNING id",
                params![new.key, new.staff_email, new.action, new.subject_id, hash, crate::db::now()],
            )?;
            Ok(Begin::Run(id))
        }
    }
}

/// Records how the action ended and what the staff member is told.
pub fn finish(tx: &Tx, id: i64, ok: bool, result_id: Option<&str>, message: &str) -> anyhow::Result<()> {
    tx.execute(
        "UPDATE admin_actions SET status = $2, result_id = $3, message = $4, finished_at = $5
         WHERE id = $1 AND status = 'running'",
        params![id, if ok { "done" } else { "failed" }, result_id, message, crate::db::now()],
    )?;
    Ok(())
}

/// One action as the dashboard shows it.
#[derive(Debug, Clone)]
pub struct ActionView {
    pub id: i64,
    pub staff_email: String,
    pub action: String,
    pub subject_id: String,
    pub status: String,
    pub result_id: Option<String>,
    pub message: Option<String>,
    pub created_at: String,
}

impl ActionView {
    /// When it was done, as the dashboard writes times.
    pub fn when(&self) -> String {
        crate::admin::format::time(&self.created_at)
    }
}

const COLUMNS: &str = "id, staff_email, action, subject_id, status, result_id, message, created_at";

fn from_row(r: &Row) -> anyhow::Result<ActionView> {
    Ok(ActionView {
        id: r.get(0)?,
        staff_email: r.get(1)?,
        action: r.get(2)?,
        subject_id: r.get(3)?,
        status: r.get(4)?,
        result_id: r.get(5)?,
        message: r.get(6)?,
        created_at: r.get(7)?,
    })
}

pub fn load(tx: &Tx, id: i64) -> anyhow::Result<Option<ActionView>> {
    tx.query_opt(&format!("SELECT {COLUMNS} FROM admin_actions WHERE id = $1"), params![id], from_row)
}

/// The latest actions on a subject (an order, a seller, a job), newest first.
pub fn for_subjects(tx: &Tx, subjects: &[String], limit: u32) -> anyhow::Result<Vec<ActionView>> {
    let mut out = Vec::new();
    let sql = format!("SELECT {COLUMNS} FROM admin_actions WHERE subject_id = $1 ORDER BY id DESC LIMIT $2");
    for subject in subjects {
        out.extend(tx.query_map(&sql, params![subject, limit], from_row)?);
    }
    out.sort_by_key(|a| std::cmp::Reverse(a.id));
    out.truncate(limit as usize);
    Ok(out)
}

/// The latest actions of all staff, newest first.
pub fn recent(tx: &Tx, limit: u32) -> anyhow::Result<Vec<ActionView>> {
    tx.query_map(&format!("SELECT {COLUMNS} FROM admin_actions ORDER BY id DESC LIMIT $1"), params![limit], from_row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_form_acts_once_and_a_failed_one_may_be_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("a.db"), 2, 1000, &crate::db::till_migrations()).unwrap();
        fn new(key: &str, fields: &[(&str, &str)]) -> NewAction {
            NewAction {
                key: key.into(),
                staff_email: "a@example.com".into(),
                action: "refund".into(),
                subject_id: "order".into(),
                fields: fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            }
        }
        let (one, two) = (&[("amount", "1.00")][..], &[("amount", "2.00")][..]);
        let begin_tx = |n: NewAction| db.write_now(|tx| Ok(begin(tx, &n))).unwrap();
        let finish_now =
            |id, ok, result_id, message| db.write_now(|tx| finish(tx, id, ok, result_id, message)).unwrap();
        let Begin::Run(id) = begin_tx(new("k1", one)).unwrap() else { panic!("the first submit runs") };
        assert_eq!(begin_tx(new("k1", one)).unwrap(), Begin::Seen(id), "running: not again");
        assert!(matches!(begin_tx(new("k1", two)), Err(BeginError::KeyReused)));
        assert!(matches!(begin_tx(new("no spaces", one)), Err(BeginError::BadKey)));
        finish_now(id, false, None, "refused");
        assert_eq!(begin_tx(new("k1", one)).unwrap(), Begin::Run(id), "a failed action may be tried again");
        finish_now(id, true, Some("r1"), "done");
        assert_eq!(begin_tx(new("k1", one)).unwrap(), Begin::Seen(id), "done: shown, not done again");
        let view = db.read_now(|tx| load(tx, id)).unwrap().unwrap();
        assert_eq!((view.status.as_str(), view.result_id.as_deref()), ("done", Some("r1")));
    }
}
