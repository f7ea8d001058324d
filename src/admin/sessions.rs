//! Staff sessions in SQLite. The browser's cookie holds a random token;
//! the table holds its SHA-256, the user, the session's CSRF token and when
//! it expires. Signing out deletes the row. Signing in (`sign_in`) checks
//! the rate limit, then the password, then starts a session.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::admin::rate_limit::{self, Admission, Buckets, Limits, Reservation};
use crate::admin::users::{self, HashingError, PasswordHashing, Staff, StaffEmail};
use crate::context::Ctx;
use crate::db::{Tx, now_ms, params};

/// Longest cookie value looked at; anything longer is not one of our tokens.
const MAX_TOKEN_LEN: usize = 64;
/// Expired sessions deleted per sign-in, so cleanup stays cheap.
const PURGE_BATCH: i64 = 100;

/// A signed-in staff member, as each request sees it.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: i64,
    pub email: String,
    pub csrf_token: String,
    pub expires_at_ms: i64,
}

/// 256 random bits, URL-safe.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Starts a session for `user_id`; returns the cookie's token (shown to the
/// browser only) and the session. Deletes a batch of expired sessions.
pub fn create(tx: &Tx, user_id: i64, lifetime_ms: i64) -> anyhow::Result<(String, Session)> {
    let token = random_token();
    let csrf_token = random_token();
    let expires_at_ms = now_ms() + lifetime_ms;
    tx.execute(
        "DELETE FROM staff_sessions WHERE token_hash IN
             (SELECT token_hash FROM staff_sessions WHERE expires_at_ms <= $1 LIMIT $2)",
        params![now_ms(), PURGE_BATCH],
    )?;
    tx.execute(
        "INSERT INTO staff_sessions (token_hash, user_id, csrf_token, created_at, expires_at_ms)
         VALUES ($1, $2, $3, $4, $5)",
        params![hash(&token), user_id, csrf_token, crate::db::now(), expires_at_ms],
    )?;
    let email = tx.query_value("SELECT email FROM staff_users WHERE id = $1", params![user_id])?;
    Ok((token, Session { user_id, email, csrf_token, expires_at_ms }))
}

/// A sign-in as submitted: the email and password as typed, and the
/// client's address as the HTTP layer resolved it.
pub struct SignIn {
    pub email: String,
    pub password: String,
    pub address: Option<std::net::IpAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the email or the password is wrong")]
    Refused,
    #[error("too many failed sign-ins")]
    Limited { retry_after_ms: i64 },
    #[error("too many sign-ins are being checked")]
    Busy,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<HashingError> for SignInError {
    fn from(e: HashingError) -> SignInError {
        match e {
            HashingError::Busy => SignInError::Busy,
            HashingError::Internal(e) => SignInError::Internal(e),
        }
    }
}

/// Signs a staff member in: reserves the attempt in the rate limit (so no
/// more attempts are verified than it allows, however many arrive at once),
/// verifies the password through `hashing`, then records the outcome and,
/// for the right password, starts a session. Returns the cookie's token.
pub async fn sign_in(ctx: &Ctx, hashing: &PasswordHashing, attempt: SignIn) -> Result<(String, Session), SignInError> {
    let email = StaffEmail::parse(&attempt.email);
    let buckets = Buckets::new(email.as_ref(), attempt.address);
    let limits = Limits::from_settings(&ctx.settings.admin);
    let now = now_ms();
    let reservation = match ctx.db.write(move |tx| rate_limit::reserve(tx, &buckets, &limits, now)).await? {
        Admission::Reserved(reservation) => reservation,
        Admission::Limited { retry_after_ms } => return Err(SignInError::Limited { retry_after_ms }),
    };
    let checked = check_password(ctx, hashing, email, attempt.password).await;
    settle(ctx, reservation, checked).await
}

async fn check_password(
    ctx: &Ctx,
    hashing: &PasswordHashing,
    email: Option<StaffEmail>,
    password: String,
) -> Result<Option<Staff>, SignInError> {
    let credentials = match email {
        Some(email) => ctx.db.run(move |tx| users::find(tx, &email)).await?,
        None => None,
    };
    Ok(hashing.run(move |workspace| users::verify(workspace, credentials.as_ref(), &password)).await?)
}

/// Records how the reserved attempt ended.
async fn settle(
    ctx: &Ctx,
    reservation: Reservation,
    checked: Result<Option<Staff>, SignInError>,
) -> Result<(String, Session), SignInError> {
    match checked {
        Ok(Some(staff)) => {
            let lifetime_ms = ctx.settings.admin.session_minutes * 60_000;
            Ok(ctx
                .db
                .write(move |tx| {
                    rate_limit::succeed(tx, &reservation)?;
                    create(tx, staff.id, lifetime_ms)
                })
                .await?)
        }
        Ok(None) => {
            ctx.db.write(move |tx| rate_limit::fail(tx, &reservation)).await?;
            Err(SignInError::Refused)
        }
        // Never verified: it counts for nothing. Should the release fail,
        // the reservation counts until its window ends, which is safe.
        Err(e) => {
            if let Err(release) = ctx.db.write(move |tx| rate_limit::release(tx, &reservation)).await {
                tracing::warn!(error = format!("{release:#}"), "releasing a sign-in reservation failed");
            }
            Err(e)
        }
    }
}

/// The live session of this token: not expired, its user not disabled.
pub fn load(tx: &Tx, token: &str) -> anyhow::Result<Option<Session>> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Ok(None);
    }
    tx.query_opt(
        "SELECT s.user_id, u.email, s.csrf_token, s.expires_at_ms
         FROM staff_sessions s JOIN staff_users u ON u.id = s.user_id
         WHERE s.token_hash = $1 AND s.expires_at_ms > $2 AND u.disabled_at IS NULL",
        params![hash(token), now_ms()],
        |r| Ok(Session { user_id: r.get(0)?, email: r.get(1)?, csrf_token: r.get(2)?, expires_at_ms: r.get(3)? }),
    )
}

/// Signs a session out. Returns whether it existed.
pub fn delete(tx: &Tx, token: &str) -> anyhow::Result<bool> {
    Ok(tx.execute("DELETE FROM staff_sessions WHERE token_hash = $1", params![hash(token)])? == 1)
}

/// Compares a submitted CSRF token with the session's in constant time.
pub fn csrf_matches(session: &Session, submitted: &str) -> bool {
    constant_time_eq(session.csrf_token.as_bytes(), submitted.as_bytes())
}

/// Equality whose time does not tell how many leading bytes matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_stored_hashed_expire_and_sign_out() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("s.db"), 2, 1000, &crate::db::till_migrations()).unwrap();
        let new = crate::admin::users::NewStaff::new("a@example.com", "a long password!").unwrap();
        let user = db.write_now(|tx| Ok(crate::admin::users::create(tx, &new)?)).unwrap();
        let (token, session) = db.write_now(|tx| create(tx, user, 60_000)).unwrap();
        let stored: i64 = db
            .read_now(|tx| {
                tx.query_value(
                    "SELECT COUNT(*) FROM staff_sessions WHERE token_hash = $1 OR csrf_token = $1",
                    params![token],
                )
            })
            .unwrap();
        assert_eq!(stored, 0, "the token itself is not stored");
        let load_now = |token: &str| db.read_now(|tx| load(tx, token)).unwrap();
        let loaded = load_now(&token).unwrap();
        assert_eq!((loaded.email.as_str(), loaded.csrf_token.as_str()), ("a@example.com", session.csrf_token.as_str()));
        assert!(csrf_matches(&loaded, &session.csrf_token));
        assert!(!csrf_matches(&loaded, "nope"));
        assert!(!csrf_matches(&loaded, ""));
        assert!(load_now("not-a-token").is_none());

        let (expired, _) = db.write_now(|tx| create(tx, user, -1)).unwrap();
        assert!(load_now(&expired).is_none(), "expired");
        assert!(db.write_now(|tx| delete(tx, &token)).unwrap());
        assert!(load_now(&token).is_none(), "signed out");
    }
}
