//! The command line: `till [--config PATH] <command>`, `serve` by default.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::startup::{self, Application};

#[derive(Parser)]
#[command(name = "till", version, about = "A self-hosted payment system in one binary")]
pub struct Cli {
    /// Configuration file, which must exist. Without it: ./config.toml if
    /// there is one, else the built-in defaults. TILL_SECTION__KEY variables
    /// override it; relative paths in it are read from its folder.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Log at `log.level` on stderr. Without it a command prints its result
    /// and only warnings and errors (`till serve` always logs at `log.level`).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run till (and the embedded sandbox PSP unless sandbox.enabled = false).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Check the ledger invariants; exit 1 listing every violation.
    Check {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage merchant API keys.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Manage the dashboard's staff users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Run only the sandbox PSP (its events go to sandbox.webhook_url).
    SandboxPsp,
    /// Copy the database to PATH with SQLite's online backup (safe while serving).
    Backup { path: PathBuf },
    /// The database itself: `till db copy --to postgres://…` moves a SQLite
    /// database into an empty PostgreSQL database and verifies the copy.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Import a PSP settlement file (CSV) and reconcile it; prints the count per class.
    /// Exits 1, naming the line and column, if a line does not parse (nothing is booked);
    /// exits 3 when the run opened exceptions that need a person.
    Reconcile { file: PathBuf },
}

#[derive(Subcommand)]
pub enum DbCommand {
    /// Copy every table of the configured SQLite database into an empty
    /// PostgreSQL database (migrated first), then verify: the same rows per
    /// table, the same balance per ledger account, `till check` clean.
    Copy {
        /// The target, a postgres:// URL of an empty database.
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key; it is printed once, alone on the last line.
    Create {
        #[arg(long)]
        name: String,
    },
    /// List the keys (id, first characters, name, created, last used, revoked).
    List,
    /// Revoke a key by its id (key_…); a running till refuses it within a second.
    Revoke { id: String },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a staff user of the dashboard; the password is read from stdin (one line).
    Create {
        #[arg(long)]
        email: String,
    },
    /// List the staff users (email, created, disabled).
    List,
    /// Disable a staff user: their sign-ins end at once and they cannot sign in again.
    Disable {
        #[arg(long)]
        email: String,
    },
    /// Set a staff user's new password, read from stdin (one line); their sign-ins end.
    ResetPassword {
        #[arg(long)]
        email: String,
    },
}

/// The exit code of `till reconcile` when the run opened exceptions.
pub const EXIT_EXCEPTIONS_OPENED: i32 = 3;

/// Runs the parsed command; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let settings = Settings::load(cli.config.as_deref())?;
    let command = cli.command.unwrap_or(Command::Serve);
    if matches!(command, Command::Serve | Command::SandboxPsp) {
        crate::telemetry::init(&settings.log);
    } else {
        crate::telemetry::init_for_command(&settings.log, cli.verbose);
    }
    match command {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            startup::open_till_db(&settings)?;
            println!("database {} is migrated", settings.database.describe());
            Ok(0)
        }
        Command::Check { json } => check(&settings, json),
        Command::ApiKey { command } => api_key(&settings, command),
        Command::User { command: UserCommand::Create { email } } => create_user(&settings, &email),
        Command::User { command } => user(&settings, command),
        Command::SandboxPsp => {
            sandbox_alone(&settings).await?;
            Ok(0)
        }
        Command::Backup { path } => {
            backup(&settings, &path)?;
            Ok(0)
        }
        Command::Reconcile { file } => reconcile(settings, &file).await,
        Command::Db { command: DbCommand::Copy { to } } => db_copy(&settings, &to).await,
    }
}

/// `till serve`: one line when it starts (from `Application::build`), one when it has stopped.
async fn serve(settings: Settings) -> anyhow::Result<i32> {
    let started = std::time::Instant::now();
    let result = Application::build(settings)?.run_until_stopped().await;
    match &result {
        Ok(()) => tracing::info!(uptime_s = started.elapsed().as_secs(), "till stopped"),
        Err(e) => tracing::error!(error = format!("{e:#}"), "till stopped with an error"),
    }
    result.map(|()| 0)
}

fn api_key(settings: &Settings, command: ApiKeyCommand) -> anyhow::Result<i32> {
    let db = startup::open_till_db(settings)?;
    match command {
        ApiKeyCommand::Create { name } => {
            let key = db.write_now(|tx| crate::api_keys::create(tx, &name))?;
            println!("created API key {} ({}); it is shown only this once:", key.id, key.name);
            println!("{}", key.key);
            Ok(0)
        }
        ApiKeyCommand::List => {
            let rows = db.read_now(crate::api_keys::list)?;
            let table = rows.iter().map(|k| {
                vec![
                    k.id.clone(),
                    format!("{}…", k.prefix),
                    k.name.clone(),
                    k.created_at.clone(),
                    k.last_used_at.clone().unwrap_or_else(|| "never".into()),
                    k.revoked_at.clone().map_or_else(String::new, |t| format!("revoked {t}")),
                ]
            });
            print_table(&["ID", "KEY", "NAME", "CREATED", "LAST USED", "REVOKED"], table);
            Ok(0)
        }
        ApiKeyCommand::Revoke { id } => {
            if db.write_now(|tx| crate::api_keys::revoke(tx, &id))? {
                println!("revoked API key {id}");
                Ok(0)
            } else {
                eprintln!("till: no live API key {id}");
                Ok(1)
            }
        }
    }
}

/// Prints rows under a header, each column as wide as its widest cell.
fn print_table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `till user list | disable | reset-password`.
fn user(settings: &Settings, command: UserCommand) -> anyhow::Result<i32> {
    use crate::admin::users;
    let email_of =
        |email: &str| users::StaffEmail::parse(email).ok_or_else(|| users::UserError::BadEmail(email.into()));
    let outcome: Result<String, users::UserError> = match command {
        UserCommand::Create { email } => return create_user(settings, &email),
        UserCommand::List => {
            let db = startup::open_till_db(settings)?;
            let rows = db.read_now(users::list)?;
            let table = rows.iter().map(|u| {
                vec![
                    u.email.clone(),
                    u.created_at.clone(),
                    u.disabled_at.clone().map_or_else(|| "active".into(), |t| format!("disabled {t}")),
                ]
            });
            print_table(&["EMAIL", "CREATED", "STATUS"], table);
            return Ok(0);
        }
        UserCommand::Disable { email } => email_of(&email).and_then(|email| {
            let db = startup::open_till_db(settings)?;
            match db.write_now(|tx| users::disable(tx, &email))? {
                true => Ok(format!("disabled staff user {}; their sign-ins have ended", email.as_str())),
                false => Err(users::UserError::Missing(email.as_str().into())),
            }
        }),
        UserCommand::ResetPassword { email } => read_password(&email).and_then(|password| {
            let new = users::NewStaff::new(&email, &password)?;
            let db = startup::open_till_db(settings)?;
            match db.write_now(|tx| users::reset_password(tx, &new))? {
                true => Ok(format!("set a new password for {}; their sign-ins have ended", new.email().as_str())),
                false => Err(users::UserError::Missing(new.email().as_str().into())),
            }
        }),
    };
    match outcome {
        Ok(done) => {
            println!("{done}");
            Ok(0)
        }
        Err(users::UserError::Internal(e)) => Err(e),
        Err(e) => {
            eprintln!("till: {e}");
            Ok(1)
        }
    }
}

/// `till db copy --to URL`: prints each table's rows and the verification.
async fn db_copy(settings: &Settings, to: &str) -> anyhow::Result<i32> {
    let from = startup::open_till_db(settings)?;
    let d = &settings.database;
    let timeout = std::time::Duration::from_millis(d.busy_timeout_ms);
    let copied = crate::db::copy::copy(&from, to, d.pool_size, timeout).await?;
    for (table, rows) in &copied.tables {
        println!("{table}: {rows} row(s)");
    }
    let total: i64 = copied.tables.values().sum();
    println!(
        "copied {total} row(s) of {} tables; verified: the same rows per table, the same balance on each of {} \
         ledger accounts, till check clean on the copy",
        copied.tables.len(),
        copied.accounts
    );
    Ok(0)
}

/// `till reconcile FILE`. The PSP is asked about lost webhooks at
/// `psp.api_base`, or at the sandbox's `sandbox.bind` when that is empty
/// (the sandbox of a running `till serve`); if it does not answer, those
/// lines stay open and the next run asks again.
async fn reconcile(settings: Settings, file: &Path) -> anyhow::Result<i32> {
    let size = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?.len();
    let limit = settings.reconciliation.max_file_bytes;
    anyhow::ensure!(
        size <= limit as u64,
        "{} has {size} bytes, over reconciliation.max_file_bytes ({limit})",
        file.display()
    );
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned());
    let ctx = command_ctx(settings)?;
    match crate::reconciliation::import_file(&ctx, bytes, name, crate::reconciliation::Source::Cli, None).await {
        Ok(summary) => {
            println!("{}", summary.to_text());
            let opened = !summary.already_imported && summary.run.open_exceptions > 0;
            Ok(if opened { EXIT_EXCEPTIONS_OPENED } else { 0 })
        }
        Err(e @ crate::reconciliation::ImportError::Invalid(_)) => {
            eprintln!("till: {e}");
            Ok(1)
        }
        Err(e) => Err(e.into()),
    }
}

/// The context of a command that works on the database and may call the
/// PSP, without serving (no queue workers, no HTTP server).
fn command_ctx(settings: Settings) -> anyhow::Result<crate::context::Ctx> {
    let db = startup::open_till_db(&settings)?;
    let api_base = match settings.psp.api_base.as_str() {
        "" => format!("http://{}", settings.sandbox.bind),
        base => base.to_string(),
    };
    let psp = crate::psp::PspClient::new(&api_base, &settings.psp, db.clone())?;
    let webhook_http = crate::events::http_client(&settings.webhooks)?;
    Ok(crate::context::Ctx {
        db,
        process_id: uuid::Uuid::new_v4().simple().to_string(),
        psp,
        settings: std::sync::Arc::new(settings),
        checkout_locks: Default::default(),
        queue_wake: Default::default(),
        webhook_http,
        alert_http: reqwest::Client::new(),
        api_keys: Default::default(),
    })
}

/// `till check`: a read. SQLite's database is opened read-only
/// (`mode=ro`), so a check never writes, and runs on a read-only copy too.
fn check(settings: &Settings, json: bool) -> anyhow::Result<i32> {
    let options = crate::ledger::check::Options::of(settings);
    let d = &settings.database;
    let report = if d.url.is_empty() {
        crate::db::read_sqlite_read_only(&d.path, d.busy_timeout_ms, &crate::db::till_migrations(), |tx| {
            crate::ledger::check::run_with(tx, &options)
        })?
    } else {
        startup::open_till_db(settings)?.read_snapshot(|tx| crate::ledger::check::run_with(tx, &options))?
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", report.summary())?;
    }
    Ok(if report.ok { 0 } else { 1 })
}

async fn sandbox_alone(settings: &Settings) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(&settings.sandbox.bind)
        .with_context(|| format!("sandbox.bind: cannot listen on {}", settings.sandbox.bind))?;
    let url = if settings.sandbox.webhook_url.is_empty() {
        let bound = settings.server.bind.parse().context("server.bind")?;
        format!("{}/webhooks/psp", crate::config::public_base(&settings.server.public_url, bound))
    } else {
        settings.sandbox.webhook_url.clone()
    };
    tracing::info!(address = %listener.local_addr()?, webhooks_to = %url, "sandbox PSP is listening");
    crate::sandbox::build(listener, &settings.sandbox, &settings.psp, url)?.await?;
    Ok(())
}

/// Reads a password from stdin (a prompt on stderr when it is a terminal),
/// so that it never shows in the process list or the shell's history.
fn read_password(email: &str) -> Result<String, crate::admin::users::UserError> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password for {email} (at least {} characters): ", crate::admin::users::MIN_PASSWORD_CHARS);
    }
    let mut line = String::new();
    stdin.read_line(&mut line).context("reading the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    Ok(password.strip_suffix('\r').unwrap_or(password).to_string())
}

fn create_user(settings: &Settings, email: &str) -> anyhow::Result<i32> {
    // The password is hashed before the write begins: the write lock is held
    // for the insert alone.
    let created = read_password(email)
        .and_then(|password| crate::admin::users::NewStaff::new(email, &password))
        .and_then(|new| {
            let db = startup::open_till_db(settings)?;
            db.write_now(|tx| Ok(crate::admin::users::create(tx, &new)))?
        });
    match created {
        Ok(_) => {
            println!("created staff user {}; sign in at /admin", email.trim().to_lowercase());
            Ok(0)
        }
        Err(crate::admin::users::UserError::Internal(e)) => Err(e),
        Err(e) => {
            eprintln!("till: {e}");
            Ok(1)
        }
    }
}

fn backup(settings: &Settings, path: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(!path.exists(), "{} exists already; choose a new file", path.display());
    let db = startup::open_till_db(settings)?;
    db.backup(path)?;
    println!("backed up {} to {}", settings.database.describe(), path.display());
    Ok(())
}
