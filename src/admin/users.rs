//! Staff users: an email and an argon2id password hash. Created from the
//! command line (`till user create --email E`, password on stdin); there is
//! no sign-up page.

use std::sync::LazyLock;

use anyhow::Context;
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use rusqlite::{Connection, OptionalExtension, params};

pub const MIN_PASSWORD_CHARS: usize = 12;
/// Argon2 hashes whatever it is given; a cap keeps a huge "password" from
/// costing more than a normal one.
pub const MAX_PASSWORD_BYTES: usize = 1024;
pub const MAX_EMAIL_LEN: usize = 254;

/// A staff member's email, trimmed and lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffEmail(String);

impl StaffEmail {
    pub fn parse(s: &str) -> Option<StaffEmail> {
        let s = s.trim().to_lowercase();
        let (local, domain) = s.split_once('@')?;
        let ok = !local.is_empty()
            && !domain.is_empty()
            && !domain.contains('@')
            && s.len() <= MAX_EMAIL_LEN
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        ok.then_some(StaffEmail(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("'{0}' is not an email address")]
    BadEmail(String),
    #[error("the password must be at least {MIN_PASSWORD_CHARS} characters and at most {MAX_PASSWORD_BYTES} bytes")]
    BadPassword,
    #[error("a staff user {0} exists already")]
    Exists(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A signed-in (or signing-in) staff member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff {
    pub id: i64,
    pub email: String,
}

impl From<rusqlite::Error> for UserError {
    fn from(e: rusqlite::Error) -> UserError {
        UserError::Internal(e.into())
    }
}

fn password_ok(password: &str) -> bool {
    password.chars().count() >= MIN_PASSWORD_CHARS && password.len() <= MAX_PASSWORD_BYTES
}

/// argon2id with the crate's recommended parameters and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let hash = Argon2::default().hash_password(password.as_bytes()).map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(hash.to_string())
}

fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Creates a staff user. Returns its id.
pub fn create(conn: &Connection, email: &str, password: &str) -> Result<i64, UserError> {
    let email = StaffEmail::parse(email).ok_or_else(|| UserError::BadEmail(email.to_string()))?;
    if !password_ok(password) {
        return Err(UserError::BadPassword);
    }
    let hash = hash_password(password)?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO staff_users (email, password_hash, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (email) DO NOTHING RETURNING id",
        )?
        .query_row(params![email.as_str(), hash, crate::db::now()], |r| r.get(0))
        .optional()
        .context("storing the staff user")?;
    inserted.ok_or_else(|| UserError::Exists(email.as_str().to_string()))
}

/// A hash to verify against when the email is unknown, so that an unknown
/// email takes as long to refuse as a wrong password.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let random = uuid::Uuid::new_v4().to_string();
    hash_password(&random).unwrap_or_default()
});

/// The staff member with this email and password, if both are right and
/// the user is not disabled. Always spends one argon2 verification.
pub fn authenticate(conn: &Connection, email: &str, password: &str) -> anyhow::Result<Option<Staff>> {
    let email = StaffEmail::parse(email);
    let row: Option<(i64, String, String, bool)> = match &email {
        Some(e) => conn
            .prepare_cached(
                "SELECT id, email, password_hash, disabled_at IS NOT NULL FROM staff_users WHERE email = ?1",
            )?
            .query_row([e.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()?,
        None => None,
    };
    let too_long = password.len() > MAX_PASSWORD_BYTES;
    let stored = row.as_ref().map_or(DUMMY_HASH.as_str(), |(_, _, h, _)| h.as_str());
    let matches = !too_long && verify(password, stored);
    Ok(match row {
        Some((id, email, _, false)) if matches => Some(Staff { id, email }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, crate::db::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("u.db"), 2, 1000, &crate::db::till_migrations()).unwrap();
        (dir, db)
    }

    #[test]
    fn emails_parse_to_lower_case() {
        assert_eq!(StaffEmail::parse("  Kim@Example.COM ").unwrap().as_str(), "kim@example.com");
        for bad in ["", "kim", "@example.com", "kim@", "a b@example.com", "a@b@c"] {
            assert!(StaffEmail::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_user_signs_in_with_the_right_password_only() {
        let (_dir, db) = db();
        let conn = db.conn().unwrap();
        let id = create(&conn, "Staff@Example.com", "correct horse battery").unwrap();
        let stored: String =
            conn.query_row("SELECT password_hash FROM staff_users WHERE id = ?1", [id], |r| r.get(0)).unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        let staff = authenticate(&conn, "staff@example.com", "correct horse battery").unwrap().unwrap();
        assert_eq!(staff, Staff { id, email: "staff@example.com".into() });
        assert!(authenticate(&conn, "staff@example.com", "wrong horse battery").unwrap().is_none());
        assert!(authenticate(&conn, "nobody@example.com", "correct horse battery").unwrap().is_none());
        assert!(matches!(create(&conn, "staff@example.com", "another long one"), Err(UserError::Exists(_))));
        conn.execute("UPDATE staff_users SET disabled_at = 'x'", []).unwrap();
        assert!(authenticate(&conn, "staff@example.com", "correct horse battery").unwrap().is_none());
    }

    #[test]
    fn short_passwords_and_bad_emails_are_refused() {
        let (_dir, db) = db();
        let conn = db.conn().unwrap();
        assert!(matches!(create(&conn, "a@b.c", "short"), Err(UserError::BadPassword)));
        assert!(matches!(create(&conn, "a@b.c", &"x".repeat(2000)), Err(UserError::BadPassword)));
        assert!(matches!(create(&conn, "not-an-email", "long enough password"), Err(UserError::BadEmail(_))));
    }
}
