//! Staff users: an email and an argon2id password hash. Created from the
//! command line (`till user create --email E`, password on stdin); there is
//! no sign-up page.

use std::sync::{Arc, LazyLock, Mutex};

use anyhow::Context;
use argon2::password_hash::PasswordHasher;
use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

use crate::db::{Tx, params};

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
    #[error("there is no staff user {0}")]
    Missing(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A signed-in (or signing-in) staff member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff {
    pub id: i64,
    pub email: String,
}

fn password_ok(password: &str) -> bool {
    password.chars().count() >= MIN_PASSWORD_CHARS && password.len() <= MAX_PASSWORD_BYTES
}

/// argon2id with the crate's recommended parameters and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let hash = Argon2::default().hash_password(password.as_bytes()).map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(hash.to_string())
}

/// argon2's working memory (`m_cost` KiB), kept from one verification to
/// the next. Left to argon2, each verification allocates 19 MiB afresh and
/// the allocator keeps many of them resident: about ten (some 200 MiB) after
/// sequential verifications on a single thread, measured with glibc.
#[derive(Default)]
pub struct Workspace(Vec<Block>);

/// The most working memory a stored hash may ask for: its `m_cost` is ours
/// (`Params::DEFAULT_M_COST`, 19 MiB), so anything far beyond it is refused.
const MAX_WORKSPACE_BLOCKS: usize = 64 * 1024;

/// Whether `password` is the one `stored` (a PHC string) was made from,
/// computed in `workspace`. What `PasswordVerifier::verify_password` does,
/// but in memory the caller keeps.
fn verify_hash(workspace: &mut Workspace, password: &str, stored: &str) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else { return false };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else { return false };
    let algorithm = Algorithm::try_from(hash.algorithm.as_str());
    let version = hash.version.map_or(Ok(Version::default()), Version::try_from);
    let (Ok(algorithm), Ok(version), Ok(params)) = (algorithm, version, Params::try_from(&hash)) else {
        return false;
    };
    let blocks = params.block_count();
    if blocks > MAX_WORKSPACE_BLOCKS {
        return false;
    }
    if workspace.0.len() < blocks {
        workspace.0.resize(blocks, Block::new());
    }
    let mut computed = [0u8; Output::MAX_LENGTH];
    let Some(computed) = computed.get_mut(..expected.len()) else { return false };
    let argon2 = Argon2::new(algorithm, version, params);
    argon2.hash_password_into_with_memory(password.as_bytes(), salt, computed, &mut workspace.0[..blocks]).is_ok()
        // `Output`'s equality takes the same time wherever the outputs differ.
        && Output::new(computed).is_ok_and(|computed| computed == *expected)
}

/// A staff user about to be created: the email parsed, the password checked
/// and hashed. Hashing takes tens of milliseconds, so it happens here,
/// before any transaction is open.
#[derive(Debug, Clone)]
pub struct NewStaff {
    email: StaffEmail,
    password_hash: String,
}

impl NewStaff {
    pub fn new(email: &str, password: &str) -> Result<NewStaff, UserError> {
        let email = StaffEmail::parse(email).ok_or_else(|| UserError::BadEmail(email.to_string()))?;
        if !password_ok(password) {
            return Err(UserError::BadPassword);
        }
        Ok(NewStaff { email, password_hash: hash_password(password)? })
    }

    pub fn email(&self) -> &StaffEmail {
        &self.email
    }
}

/// A staff user as `till user list` shows one.
#[derive(Debug, Clone)]
pub struct StaffRow {
    pub email: String,
    pub created_at: String,
    pub disabled_at: Option<String>,
}

/// Every staff user, in the order they were created.
pub fn list(tx: &Tx) -> anyhow::Result<Vec<StaffRow>> {
    tx.query_map("SELECT email, created_at, disabled_at FROM staff_users ORDER BY id", params![], |r| {
        Ok(StaffRow { email: r.get(0)?, created_at: r.get(1)?, disabled_at: r.get(2)? })
    })
}

/// Disables a staff user and ends their sign-ins. Returns false if there
/// is no such user (disabling a disabled user again is fine).
pub fn disable(tx: &Tx, email: &StaffEmail) -> anyhow::Result<bool> {
    let n = tx.execute(
        "UPDATE staff_users SET disabled_at = COALESCE(disabled_at, $2) WHERE email = $1",
        params![email.as_str(), crate::db::now()],
    )?;
    end_sign_ins(tx, email)?;
    Ok(n == 1)
}

/// Gives a staff user a new password (hashed beforehand) and ends their
/// sign-ins. Returns false if there is no such user.
pub fn reset_password(tx: &Tx, new: &NewStaff) -> anyhow::Result<bool> {
    let n = tx.execute(
        "UPDATE staff_users SET password_hash = $2 WHERE email = $1",
        params![new.email.as_str(), new.password_hash],
    )?;
    end_sign_ins(tx, &new.email)?;
    Ok(n == 1)
}

fn end_sign_ins(tx: &Tx, email: &StaffEmail) -> anyhow::Result<usize> {
    tx.execute(
        "DELETE FROM staff_sessions WHERE user_id IN (SELECT id FROM staff_users WHERE email = $1)",
        params![email.as_str()],
    )
}

/// Creates a staff user. Returns its id.
pub fn create(tx: &Tx, new: &NewStaff) -> Result<i64, UserError> {
    let inserted = tx.query_value(
        "INSERT INTO staff_users (email, password_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
        params![new.email.as_str(), new.password_hash, crate::db::now()],
    );
    match inserted {
        Ok(id) => Ok(id),
        Err(e) if crate::db::is_unique_violation(&e) => Err(UserError::Exists(new.email.as_str().to_string())),
        Err(e) => Err(UserError::Internal(e.context("storing the staff user"))),
    }
}

/// A hash to verify against when the email is unknown, so that an unknown
/// email takes as long to refuse as a wrong password.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let random = uuid::Uuid::new_v4().to_string();
    hash_password(&random).unwrap_or_default()
});

/// A staff user as stored, read before the password is verified so that
/// the (slow) verification holds no database connection.
#[derive(Debug, Clone)]
pub struct Credentials {
    id: i64,
    email: String,
    password_hash: String,
    disabled: bool,
}

/// The stored credentials of this email, if it is a staff user's.
pub fn find(tx: &Tx, email: &StaffEmail) -> anyhow::Result<Option<Credentials>> {
    tx.query_opt(
        "SELECT id, email, password_hash, disabled_at FROM staff_users WHERE email = $1",
        params![email.as_str()],
        |r| {
            Ok(Credentials {
                id: r.get(0)?,
                email: r.get(1)?,
                password_hash: r.get(2)?,
                disabled: r.get::<Option<String>>(3)?.is_some(),
            })
        },
    )
}

/// The staff member whose credentials these are, if the password is right
/// and the user is not disabled. Always spends one argon2 verification
/// (against a dummy hash when there is no such user): run it through
/// [`PasswordHashing`], which lends the workspace.
pub fn verify(workspace: &mut Workspace, credentials: Option<&Credentials>, password: &str) -> Option<Staff> {
    let too_long = password.len() > MAX_PASSWORD_BYTES;
    let stored = credentials.map_or(DUMMY_HASH.as_str(), |c| c.password_hash.as_str());
    let matches = !too_long && verify_hash(workspace, password, stored);
    credentials.filter(|c| matches && !c.disabled).map(|c| Staff { id: c.id, email: c.email.clone() })
}

/// Waiting verifications allowed per running one; past that, "busy" at once.
pub const QUEUED_PER_HASHER: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    #[error("too many passwords are being checked; try again in a moment")]
    Busy,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Bounds this process's argon2 work. One verification needs 19 MiB for
/// tens of milliseconds on a blocking thread; unbounded, a burst of sign-ins
/// became a burst of threads and of memory the allocator kept. So at most
/// one runs per core, each in a workspace kept for the next, a bounded
/// number wait (holding no thread and no memory), and any more are turned
/// away at once: memory stays at one workspace per core.
pub struct PasswordHashing {
    running: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
    /// Never more than `running`'s permits: one is taken out per running hash.
    workspaces: Arc<Mutex<Vec<Workspace>>>,
}

impl PasswordHashing {
    pub fn new(parallelism: usize) -> PasswordHashing {
        let parallelism = parallelism.max(1);
        PasswordHashing {
            running: Arc::new(Semaphore::new(parallelism)),
            admitted: Arc::new(Semaphore::new(parallelism * (1 + QUEUED_PER_HASHER))),
            workspaces: Arc::default(),
        }
    }

    /// One verification at a time per core.
    pub fn sized_to_cores() -> PasswordHashing {
        PasswordHashing::new(std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// Runs `hash` in a workspace on a blocking thread once a slot is free.
    /// The permits move into the thread: a caller that goes away does not
    /// free its slot while its hash still runs.
    pub async fn run<T, F>(&self, hash: F) -> Result<T, HashingError>
    where
        F: FnOnce(&mut Workspace) -> T + Send + 'static,
        T: Send + 'static,
    {
        let admitted = self.admitted.clone().try_acquire_owned().map_err(|_| HashingError::Busy)?;
        let running = self.running.clone().acquire_owned().await.context("the hashing semaphore is closed")?;
        let workspaces = self.workspaces.clone();
        tokio::task::spawn_blocking(move || {
            let _permits = (admitted, running);
            let taken = workspaces.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut workspace = taken.unwrap_or_default();
            let value = hash(&mut workspace);
            workspaces.lock().unwrap_or_else(|p| p.into_inner()).push(workspace);
            value
        })
        .await
        .map_err(|e| anyhow::anyhow!("password hashing failed: {e}").into())
    }
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

    fn create_now(db: &crate::db::Db, email: &str, password: &str) -> Result<i64, UserError> {
        let new = NewStaff::new(email, password)?;
        db.write_now(|tx| Ok(create(tx, &new))).map_err(UserError::Internal)?
    }

    #[test]
    fn a_user_signs_in_with_the_right_password_only() {
        let (_dir, db) = db();
        let id = create_now(&db, "Staff@Example.com", "correct horse battery").unwrap();
        let stored: String = db
            .read_now(|tx| tx.query_value("SELECT password_hash FROM staff_users WHERE id = $1", params![id]))
            .unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        let authenticate = |email: &str, password: &str| {
            let credentials = db.read_now(|tx| find(tx, &StaffEmail::parse(email).unwrap())).unwrap();
            verify(&mut Workspace::default(), credentials.as_ref(), password)
        };
        let staff = authenticate("staff@example.com", "correct horse battery").unwrap();
        assert_eq!(staff, Staff { id, email: "staff@example.com".into() });
        assert!(authenticate("staff@example.com", "wrong horse battery").is_none());
        assert!(authenticate("nobody@example.com", "correct horse battery").is_none());
        assert!(matches!(create_now(&db, "staff@example.com", "another long one"), Err(UserError::Exists(_))));
        db.write_now(|tx| tx.execute("UPDATE staff_users SET disabled_at = 'x'", params![])).unwrap();
        assert!(authenticate("staff@example.com", "correct horse battery").is_none());
    }

    #[test]
    fn short_passwords_and_bad_emails_are_refused() {
        let (_dir, db) = db();
        assert!(matches!(create_now(&db, "a@b.c", "short"), Err(UserError::BadPassword)));
        assert!(matches!(create_now(&db, "a@b.c", &"x".repeat(2000)), Err(UserError::BadPassword)));
        assert!(matches!(create_now(&db, "not-an-email", "long enough password"), Err(UserError::BadEmail(_))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashing_runs_one_per_slot_and_turns_away_the_overflow() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pool = Arc::new(PasswordHashing::new(1));
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        let (running, most_running) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let capacity = 1 + QUEUED_PER_HASHER;
        let tasks: Vec<_> = (0..capacity)
            .map(|_| {
                let (pool, released) = (pool.clone(), released.clone());
                let (running, most_running) = (running.clone(), most_running.clone());
                tokio::spawn(async move {
                    pool.run(move |_| {
                        most_running.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                        released.lock().unwrap().recv().unwrap();
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        while pool.admitted.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(pool.run(|_| ()).await, Err(HashingError::Busy)), "one more than admitted is turned away");
        for _ in 0..capacity {
            release.send(()).unwrap();
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(most_running.load(Ordering::SeqCst), 1, "one verification at a time per slot");
        assert!(pool.run(|_| ()).await.is_ok(), "the slots are free again");
        assert_eq!(pool.workspaces.lock().unwrap().len(), 1, "one workspace per slot, kept");
    }

    #[test]
    fn verification_in_a_kept_workspace_agrees_with_argon2() {
        use argon2::password_hash::PasswordVerifier;
        let mut workspace = Workspace::default();
        let ours = hash_password("correct horse battery").unwrap();
        // A hash made with other parameters (and the same workspace after it).
        let small = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(1024, 1, 1, Some(32)).unwrap());
        let theirs = small.hash_password(b"correct horse battery").unwrap().to_string();
        for stored in [&ours, &theirs, &ours] {
            let parsed = PasswordHash::new(stored).unwrap();
            assert!(Argon2::default().verify_password(b"correct horse battery", &parsed).is_ok());
            assert!(verify_hash(&mut workspace, "correct horse battery", stored), "{stored}");
            assert!(!verify_hash(&mut workspace, "correct horse batterz", stored), "{stored}");
        }
        assert_eq!(workspace.0.len(), Params::DEFAULT_M_COST as usize, "the workspace grew once, to the largest");
        let tampered = ours.replace("$argon2id$", "$argon2i$");
        let huge = ours.replace("m=19456", "m=4000000");
        for bad in ["", "not a hash", tampered.as_str(), huge.as_str(), &ours[..ours.len() - 4]] {
            assert!(!verify_hash(&mut workspace, "correct horse battery", bad), "{bad}");
        }
    }
}
