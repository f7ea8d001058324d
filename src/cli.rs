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
    /// Configuration file (missing: built-in defaults). TILL_SECTION__KEY variables override it.
    #[arg(long, global = true, default_value = "config.toml")]
    pub config: PathBuf,
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
    /// Exits 1, naming the line and column, if a line does not parse (nothing is booked).
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
    /// List the keys (id, name, first characters, created, revoked).
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
}

/// Runs the parsed command; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let settings = Settings::load(&cli.config)?;
    crate::telemetry::init(&settings.log);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            Application::build(settings)?.run_until_stopped().await?;
            Ok(0)
        }
        Command::Migrate => {
            startup::open_till_db(&settings)?;
            println!("database {} is migrated", settings.database.path.display());
            Ok(0)
        }
        Command::Check { json } => check(&settings, json),
        Command::ApiKey { command: ApiKeyCommand::Create { name } } => {
            let db = startup::open_till_db(&settings)?;
            let key = db.write_now(|tx| crate::api_keys::create(tx, &name))?;
            println!("created API key {} ({}); it is shown only this once:", key.id, key.name);
            println!("{}", key.key);
            Ok(0)
        }
        Command::ApiKey { command: ApiKeyCommand::List } => {
            let db = startup::open_till_db(&settings)?;
            for k in db.read_now(crate::api_keys::list)? {
                let revoked = k.revoked_at.map_or_else(String::new, |t| format!("  revoked {t}"));
                println!("{}  {}…  {}  created {}{revoked}", k.id, k.prefix, k.name, k.created_at);
            }
            Ok(0)
        }
        Command::ApiKey { command: ApiKeyCommand::Revoke { id } } => {
            let db = startup::open_till_db(&settings)?;
            if db.write_now(|tx| crate::api_keys::revoke(tx, &id))? {
                println!("revoked API key {id}");
                Ok(0)
            } else {
                eprintln!("till: no live API key {id}");
                Ok(1)
            }
        }
        Command::User { command: UserCommand::Create { email } } => create_user(&settings, &email),
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
            Ok(0)
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

fn check(settings: &Settings, json: bool) -> anyhow::Result<i32> {
    let db = startup::open_till_db(settings)?;
    let options = crate::ledger::check::Options::of(settings);
    let report = db.read_snapshot(|tx| crate::ledger::check::run_with(tx, &options))?;
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

/// Reads the password from stdin (a prompt on stderr when it is a terminal),
/// so that it never shows in the process list or the shell's history.
fn create_user(settings: &Settings, email: &str) -> anyhow::Result<i32> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password for {email} (at least {} characters): ", crate::admin::users::MIN_PASSWORD_CHARS);
    }
    let mut line = String::new();
    stdin.read_line(&mut line).context("reading the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    // The password is hashed before the write begins: the write lock is held
    // for the insert alone.
    let created = crate::admin::users::NewStaff::new(email, password).and_then(|new| {
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
    println!("backed up {} to {}", settings.database.path.display(), path.display());
    Ok(())
}
