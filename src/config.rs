//! Typed settings: `config.toml` (every key documented there), overridden by
//! environment variables `TILL_SECTION__KEY` (nested:
//! `TILL_SANDBOX__FAULTS__ERROR_RATE`), validated once at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub psp: PspSettings,
    pub sandbox: SandboxSettings,
    pub payments: PaymentSettings,
    pub reconciliation: ReconciliationSettings,
    pub fees: FeeSettings,
    pub queue: QueueSettings,
    pub webhooks: WebhookSettings,
    pub events: EventSettings,
    pub refunds: RefundSettings,
    pub disputes: DisputeSettings,
    pub payouts: PayoutSettings,
    pub alerts: AlertSettings,
    pub jobs: JobSettings,
    pub admin: AdminSettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
    /// The configuration file these settings were read from; None: built-in defaults.
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub bind: String,
    /// Largest request body accepted by the merchant API and the webhook endpoint.
    pub max_body_bytes: usize,
    /// Worker threads of the HTTP server (0 = one per core).
    pub workers: usize,
    /// A request body must arrive whole within this; one that trickles in is cut off (408).
    pub body_timeout_ms: u64,
    /// Where people and programs reach till (behind a proxy: its public
    /// address); empty = `http://{bind}`, 0.0.0.0 and [::] written as 127.0.0.1.
    pub public_url: String,
    /// Addresses or CIDR blocks of the proxies in front of till. Only a
    /// request from one of them has its X-Forwarded-For believed.
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            max_body_bytes: 256 * 1024,
            workers: 0,
            body_timeout_ms: 30_000,
            public_url: String::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Most entries in `server.trusted_proxies`.
pub const MAX_TRUSTED_PROXIES: usize = 256;

/// An address or a block of them ("10.0.0.0/8", "::1"), as
/// `server.trusted_proxies` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: std::net::IpAddr,
    prefix_len: u8,
}

impl IpRange {
    /// Host bits past the prefix are ignored ("192.168.1.10/24" is 192.168.1.0/24).
    pub fn parse(s: &str) -> Result<IpRange, String> {
        use std::net::IpAddr;
        let bad = || format!("'{s}' is not an address or a CIDR block like 10.0.0.0/8");
        let (addr, prefix) = s.trim().split_once('/').map_or((s.trim(), None), |(a, p)| (a, Some(p)));
        let network: IpAddr = addr.parse().map_err(|_| bad())?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            None => bits,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= bits).ok_or_else(bad)?,
        };
        Ok(IpRange { network, prefix_len })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let (network, ip, bits) = match (self.network, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u128::from(n.to_bits()), u128::from(i.to_bits()), 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (n.to_bits(), i.to_bits(), 128),
            _ => return false,
        };
        let host_bits = u32::from(bits - self.prefix_len);
        network.checked_shr(host_bits).unwrap_or(0) == ip.checked_shr(host_bits).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// Empty: SQLite at `path`. `postgres://user:pass@host:port/db?…`:
    /// PostgreSQL (libpq style; several hosts with
    /// `target_session_attrs=read-write` find the primary after a failover).
    pub url: String,
    pub path: PathBuf,
    pub pool_size: u32,
    pub busy_timeout_ms: u64,
}

impl DatabaseSettings {
    /// The database as logs and commands name it: the SQLite file, or the
    /// PostgreSQL server and database (never the password).
    pub fn describe(&self) -> String {
        if self.url.is_empty() {
            return format!("SQLite {}", self.path.display());
        }
        format!("PostgreSQL {}", crate::db::pg::describe(&self.url))
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self { url: String::new(), path: "data/till.db".into(), pool_size: 8, busy_timeout_ms: 5_000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PspSettings {
    /// Empty: the embedded sandbox, wherever it is bound. Stripe: `https://api.stripe.com`.
    pub api_base: String,
    /// Where files (report run results) are downloaded. Empty: `api_base`.
    /// Stripe: `https://files.stripe.com`.
    pub files_base: String,
    pub secret_key: String,
    pub webhook_secret: String,
    pub request_timeout_ms: u64,
    /// How old a signed webhook may be before it is refused as a replay.
    pub webhook_tolerance_seconds: i64,
    /// The `Stripe-Version` sent with every call: the API version the
    /// connector is written against, whatever the account's default is.
    pub api_version: String,
    /// Added to the account's statement descriptor prefix on the buyer's
    /// card statement (`statement_descriptor_suffix`); empty: not sent.
    pub statement_descriptor_suffix: String,
}

/// The Stripe API version the connector is written against: the first of
/// the Dahlia release (later Dahlia versions only add). What it reads and
/// sends is as this version has it: a Checkout Session makes its
/// PaymentIntent when paid (2022-08-01), a PaymentIntent has `latest_charge`
/// and no `charges` (2022-11-15), and one given no payment method types
/// accepts the Dashboard's, redirects included, unless told
/// `automatic_payment_methods[allow_redirects]=never` (2023-08-16).
pub const STRIPE_API_VERSION: &str = "2026-03-25.dahlia";

/// Stripe's rules for a statement descriptor suffix.
pub const MAX_STATEMENT_DESCRIPTOR_SUFFIX_CHARS: usize = 22;

impl Default for PspSettings {
    fn default() -> Self {
        Self {
            api_base: String::new(),
            files_base: String::new(),
            secret_key: "sk_test_till_sandbox_0000000000000000".into(),
            webhook_secret: "whsec_till_sandbox_0000000000000000".into(),
            request_timeout_ms: 10_000,
            webhook_tolerance_seconds: 300,
            api_version: STRIPE_API_VERSION.into(),
            statement_descriptor_suffix: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSettings {
    pub enabled: bool,
    pub bind: String,
    /// The base of the hosted page's URL (`redirect_url`) and of report
    /// files; empty = `http://{bind}`, 0.0.0.0 and [::] written as 127.0.0.1.
    pub public_url: String,
    pub database_path: PathBuf,
    /// Where the sandbox sends till's events when it runs alone
    /// (`till sandbox-psp`). Empty: till's `/webhooks/psp` at `server.bind`.
    pub webhook_url: String,
    /// Percentage fee on each charge, as a decimal string ("2.9").
    pub fee_percent: Decimal,
    /// Fixed fee on each charge, in minor units of the charge's currency.
    pub fee_fixed: i64,
    /// Base of the exponential backoff between webhook delivery attempts.
    pub webhook_retry_base_ms: u64,
    /// Attempts per webhook delivery before the sandbox gives up on it.
    pub webhook_max_attempts: u32,
    /// An authorized PaymentIntent (`capture_method=manual`) not captured
    /// within this many days is canceled (`cancellation_reason=automatic`),
    /// as on Stripe (7). A decimal string, so tests can make it seconds.
    pub authorization_days: Decimal,
    /// The dispute test card (4000000000000259, `pm_card_createDispute`) is
    /// disputed this long after its charge is captured.
    pub dispute_after_ms: u64,
    /// The fee withdrawn with each dispute, in major units of the charge's
    /// currency (Stripe: 15.00 USD), a decimal string.
    pub dispute_fee: Decimal,
    pub faults: FaultSettings,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: "127.0.0.1:8081".into(),
            public_url: String::new(),
            database_path: "data/sandbox.db".into(),
            webhook_url: String::new(),
            fee_percent: Decimal::new(29, 1),
            fee_fixed: 30,
            webhook_retry_base_ms: 1_000,
            webhook_max_attempts: 10,
            authorization_days: Decimal::from(7),
            dispute_after_ms: 3_000,
            dispute_fee: Decimal::new(1500, 2),
            faults: FaultSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSettings {
    pub latency_ms: u64,
    pub error_rate: f64,
    pub timeout_rate: f64,
    pub webhook_drop_rate: f64,
    pub webhook_duplicate_rate: f64,
    pub webhook_delay_ms: u64,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentSettings {
    /// A hosted checkout session expires this long after it is created
    /// (Stripe allows 30 to 1440).
    pub checkout_expires_minutes: i64,
    /// An open hosted checkout is asked about at the PSP this often from its
    /// creation (and once after it expires), so a lost webhook is noticed
    /// within this time. At most 900 (15 minutes).
    pub sync_every_seconds: i64,
    /// A manual capture's authorization must be captured within this many
    /// days (Stripe's 7 for most cards); uncaptured, its orders end FAILED
    /// `authorization_expired` (voided at the PSP), with an alert a day
    /// before. A decimal, so tests can shorten it.
    pub authorization_days: Decimal,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        Self { checkout_expires_minutes: 60, sync_every_seconds: 600, authorization_days: Decimal::from(7) }
    }
}

impl PaymentSettings {
    /// `authorization_days` in milliseconds (at least 1).
    pub fn authorization_ms(&self) -> i64 {
        use rust_decimal::prelude::ToPrimitive;
        (self.authorization_days * Decimal::from(86_400_000)).round().to_i64().unwrap_or(i64::MAX).max(1)
    }
}

/// Reconciliation against the PSP's settlement files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconciliationSettings {
    /// Cron (with seconds) of the nightly job that fetches yesterday's report; empty disables it.
    pub schedule: String,
    /// A till record the files do not mention is `missing_in_psp` only this many days after it.
    pub grace_days: i64,
    /// Largest settlement file accepted (CLI, upload, fetched report), in bytes.
    pub max_file_bytes: usize,
    /// Most lines in one settlement file.
    pub max_rows: usize,
}

impl Default for ReconciliationSettings {
    fn default() -> Self {
        Self { schedule: "0 30 2 * * *".into(), grace_days: 2, max_file_bytes: 32 * 1024 * 1024, max_rows: 100_000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeeSettings {
    /// The platform's take of every order, in percent, as a decimal string.
    pub commission_percent: Decimal,
}

impl Default for FeeSettings {
    fn default() -> Self {
        Self { commission_percent: Decimal::ZERO }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// Jobs run at the same time.
    pub workers: usize,
    /// Jobs claimed per poll of the queue.
    pub batch_size: u32,
    /// How often an idle queue is polled (enqueues in this process wake it at once).
    pub poll_interval_ms: u64,
    /// Retry delay: a random wait up to min(cap, base × 2^attempt) ("full jitter").
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    /// Attempts before a job goes to the dead-letter queue and raises an alert.
    pub max_attempts: u32,
    /// A claimed job not finished within this is handed to another worker.
    pub lease_ms: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            workers: 64,
            batch_size: 64,
            poll_interval_ms: 250,
            backoff_base_ms: 500,
            backoff_cap_ms: 300_000,
            max_attempts: 15,
            lease_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefundSettings {
    /// May a refund take a seller's available balance below zero? If not, a
    /// refund larger than what the seller has is refused with a clear error.
    pub allow_seller_debt: bool,
}

/// Chargebacks: who bears a disputed amount.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisputeSettings {
    /// true: a dispute takes the seller's share of the disputed amount out
    /// of its wallet (which may go below zero: a debt later pay-ins repay,
    /// and no payout meanwhile), and the platform gives back its commission;
    /// false: the platform bears it all (`expenses:disputes`). The PSP's
    /// dispute fee is always the platform's (`expenses:dispute_fees`).
    pub seller_liable: bool,
}

impl Default for DisputeSettings {
    fn default() -> Self {
        Self { seller_liable: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PayoutSettings {
    /// Money from a payment is pending this many days, then available.
    pub hold_days: i64,
    /// Smallest payout per currency, as decimal strings: { USD = "10.00" }.
    /// A currency not listed has no minimum beyond one minor unit.
    pub minimum_amount: std::collections::BTreeMap<String, String>,
    /// Cron (with seconds) of the scheduled payouts; empty disables them.
    pub schedule: String,
}

impl Default for PayoutSettings {
    fn default() -> Self {
        Self { hold_days: 0, minimum_amount: Default::default(), schedule: "0 0 6 * * *".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// An order not final this long after it was created raises an alert.
    pub unfinished_after_minutes: i64,
    /// If set, each new alert is also POSTed here as JSON.
    pub webhook_url: String,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self { unfinished_after_minutes: 90, webhook_url: String::new() }
    }
}

/// Cron strings (with seconds: "sec min hour day month weekday") of the
/// scheduled jobs; an empty string disables one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobSettings {
    pub unfinished_alert: String,
    pub psp_sync: String,
    pub idempotency_cleanup: String,
    pub ledger_audit: String,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            unfinished_alert: "0 * * * * *".into(),
            psp_sync: "30 */5 * * * *".into(),
            idempotency_cleanup: "0 17 * * * *".into(),
            ledger_audit: "0 0 3 * * *".into(),
        }
    }
}

/// Deliveries of merchant webhooks: their own backoff, long enough to ride
/// out a shop's outage of about three days.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    pub max_attempts: u32,
    /// Timeout of one delivery.
    pub timeout_ms: u64,
    /// May an endpoint's URL name, or resolve to, a loopback, private,
    /// link-local or other non-public address? Off, an API key holder cannot
    /// make till reach into the network it runs in (SSRF).
    pub allow_private_urls: bool,
    /// An endpoint whose every delivery attempt has failed for this long
    /// is disabled, with an alert.
    pub disable_after_failing_hours: i64,
}

/// The merchant events till keeps (every one, whether an endpoint wants it or not).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    /// Events older than this are removed (with their deliveries) by the
    /// cleanup job (`jobs.idempotency_cleanup`).
    pub retention_days: i64,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self { retention_days: 30 }
    }
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            backoff_base_ms: 10_000,
            backoff_cap_ms: 12 * 3600 * 1000,
            max_attempts: 24,
            timeout_ms: 10_000,
            allow_private_urls: false,
            disable_after_failing_hours: 72,
        }
    }
}

/// The staff dashboard at `/admin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// A sign-in lasts this long, then the staff member signs in again.
    pub session_minutes: i64,
    /// The session cookie's Secure flag: "auto" (when the request came over
    /// HTTPS, as a TLS-terminating proxy says with X-Forwarded-Proto),
    /// "always" or "never".
    pub cookie_secure: String,
    /// Failed sign-ins allowed per account from one client address within
    /// `login_window_seconds` (and five times as many per client address
    /// across all accounts); past it, sign-in is refused until the window ends.
    pub login_attempts: u32,
    pub login_window_seconds: u64,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self { session_minutes: 720, cookie_secure: "auto".into(), login_attempts: 10, login_window_seconds: 900 }
    }
}

/// Prometheus metrics at `GET /metrics` (SPEC §9): on an address of their
/// own, never on the public port unless a bearer token guards them there.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// An address of their own, without authentication; empty: none.
    pub bind: String,
    /// If set, `/metrics` is also served on `server.bind`, to requests
    /// that send `Authorization: Bearer <token>`.
    pub token: String,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self { bind: "127.0.0.1:9464".into(), token: String::new() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// A tracing filter: "info", "till=debug,actix_web=info", …
    pub level: String,
    /// "text" or "json".
    pub format: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { level: "info".into(), format: "text".into() }
    }
}

/// A base URL for links to a server: `configured` (without a trailing
/// slash) if set, else `http://{bound}` with an unspecified address (0.0.0.0,
/// [::]) written as 127.0.0.1, which a browser on the same machine reaches.
pub fn public_base(configured: &str, bound: SocketAddr) -> String {
    if !configured.is_empty() {
        return configured.trim_end_matches('/').to_string();
    }
    let mut addr = bound;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{addr}")
}

/// Checks a cron string the way the scheduler will read it ("" = disabled).
pub fn check_cron(cron: &str) -> Result<(), String> {
    if cron.is_empty() {
        return Ok(());
    }
    tokio_cron_scheduler::Job::new_async(cron, |_, _| Box::pin(async {})).map(|_| ()).map_err(|e| e.to_string())
}

/// The configuration file read when no `--config` is given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "config.toml";

impl Settings {
    /// Reads the configuration, then the environment, then validates.
    /// `path` is the `--config` given, which must exist; without one,
    /// `./config.toml` is read if it exists, else the built-in defaults.
    /// Relative paths (`database.path`, `sandbox.database_path`) are read
    /// against the configuration file's folder, or the working directory
    /// when they come from the environment or no file is read.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Settings> {
        let file = match path {
            Some(p) if !p.is_file() => {
                let why = if p.exists() { "is not a file" } else { "does not exist" };
                anyhow::bail!("--config {}: the configuration file {why}", p.display())
            }
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
        };
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = &file {
            figment = figment.merge(Toml::file(file));
        }
        // Only TILL_SECTION__KEY overrides: another TILL_… variable of the
        // environment (TILL_BIN, TILL_TEST_DATABASE, …) is none of till's keys.
        let figment = figment.merge(Env::prefixed("TILL_").filter(|key| key.as_str().contains("__")).split("__"));
        let shown = file.as_ref().map_or_else(|| "defaults".to_string(), |f| f.display().to_string());
        let mut settings: Settings = figment.extract().map_err(|e| anyhow::anyhow!("configuration {shown}: {e}"))?;
        if let Some(file) = &file {
            let folder = file.parent().unwrap_or(Path::new(""));
            let from_env = |key: &str| figment.find_metadata(key).is_some_and(|m| m.name.contains("environment"));
            for (key, value) in [
                ("database.path", &mut settings.database.path),
                ("sandbox.database_path", &mut settings.sandbox.database_path),
            ] {
                if value.is_relative() && !from_env(key) {
                    *value = folder.join(&*value);
                }
            }
        }
        settings.config_file = file;
        settings.validate()?;
        Ok(settings)
    }

    /// Every problem at once, each naming its key.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if self.server.bind.parse::<SocketAddr>().is_err() {
            problems.push(format!("server.bind: '{}' is not an address like 127.0.0.1:8080", self.server.bind));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.server.max_body_bytes) {
            problems.push("server.max_body_bytes: must be between 1024 and 16777216".into());
        }
        for (key, url) in
            [("server.public_url", &self.server.public_url), ("sandbox.public_url", &self.sandbox.public_url)]
        {
            let valid = url.is_empty()
                || ((url.starts_with("http://") || url.starts_with("https://"))
                    && url.len() <= 2048
                    && !url.chars().any(|c| c.is_whitespace() || c.is_control()));
            if !valid {
                problems.push(format!("{key}: '{url}' must be empty or an http(s) URL like https://pay.shop.example"));
            }
        }
        if !(100..=600_000).contains(&self.server.body_timeout_ms) {
            problems.push("server.body_timeout_ms: must be between 100 and 600000".into());
        }
        let proxies = &self.server.trusted_proxies;
        if proxies.len() > MAX_TRUSTED_PROXIES {
            problems.push(format!("server.trusted_proxies: at most {MAX_TRUSTED_PROXIES} entries"));
        }
        problems.extend(
            proxies.iter().filter_map(|p| IpRange::parse(p).err()).map(|e| format!("server.trusted_proxies: {e}")),
        );
        if !self.metrics.bind.is_empty() && self.metrics.bind.parse::<SocketAddr>().is_err() {
            problems
                .push(format!("metrics.bind: '{}' is not empty or an address like 127.0.0.1:9464", self.metrics.bind));
        }
        if !self.metrics.token.is_empty() && !(16..=256).contains(&self.metrics.token.len()) {
            problems.push("metrics.token: empty, or 16 to 256 characters".into());
        }
        if !(1..=64).contains(&self.database.pool_size) {
            problems.push("database.pool_size: must be between 1 and 64".into());
        }
        if self.database.path.as_os_str().is_empty() {
            problems.push("database.path: must not be empty".into());
        }
        let url = &self.database.url;
        if !(url.is_empty() || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            problems.push("database.url: must be empty (SQLite at database.path) or a postgres:// URL".into());
        }
        let api_base = &self.psp.api_base;
        let known_scheme = api_base.starts_with("http://") || api_base.starts_with("https://");
        if !api_base.is_empty() && !known_scheme {
            problems.push(format!("psp.api_base: '{api_base}' must start with http:// or https://"));
        }
        let files_base = &self.psp.files_base;
        if !files_base.is_empty() && !files_base.starts_with("http://") && !files_base.starts_with("https://") {
            problems.push(format!("psp.files_base: '{files_base}' must be empty or start with http:// or https://"));
        }
        if !self.psp.secret_key.starts_with("sk_") {
            problems.push("psp.secret_key: must be a secret key starting with sk_".into());
        }
        if !self.psp.webhook_secret.starts_with("whsec_") {
            problems.push("psp.webhook_secret: must start with whsec_".into());
        }
        if api_base.is_empty() && !self.sandbox.enabled {
            problems.push("psp.api_base: empty means the embedded sandbox, but sandbox.enabled is false".into());
        }
        if !(100..=120_000).contains(&self.psp.request_timeout_ms) {
            problems.push("psp.request_timeout_ms: must be between 100 and 120000".into());
        }
        if !(1..=3600).contains(&self.psp.webhook_tolerance_seconds) {
            problems.push("psp.webhook_tolerance_seconds: must be between 1 and 3600".into());
        }
        if let Err(why) = check_api_version(&self.psp.api_version) {
            problems.push(format!("psp.api_version: {why}"));
        }
        if let Err(why) = check_statement_descriptor_suffix(&self.psp.statement_descriptor_suffix) {
            problems.push(format!("psp.statement_descriptor_suffix: {why}"));
        }
        self.validate_sandbox(&mut problems);
        self.validate_reconciliation(&mut problems);
        if !(30..=1440).contains(&self.payments.checkout_expires_minutes) {
            problems.push("payments.checkout_expires_minutes: must be between 30 and 1440".into());
        }
        if !(1..=900).contains(&self.payments.sync_every_seconds) {
            problems.push("payments.sync_every_seconds: must be between 1 and 900".into());
        }
        if self.payments.authorization_days <= Decimal::ZERO || self.payments.authorization_days > Decimal::from(30) {
            problems.push("payments.authorization_days: must be more than 0 and at most 30".into());
        }
        let pct = self.fees.commission_percent;
        if pct < Decimal::ZERO || pct > Decimal::ONE_HUNDRED {
            problems.push("fees.commission_percent: must be between 0 and 100".into());
        }
        self.validate_queue(&mut problems);
        self.validate_schedules(&mut problems);
        self.validate_admin(&mut problems);
        if !matches!(self.log.format.as_str(), "text" | "json") {
            problems.push("log.format: must be \"text\" or \"json\"".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("invalid configuration:\n  - {}", problems.join("\n  - "))
        }
    }

    fn validate_admin(&self, problems: &mut Vec<String>) {
        let a = &self.admin;
        if !(5..=30 * 24 * 60).contains(&a.session_minutes) {
            problems.push("admin.session_minutes: must be between 5 and 43200".into());
        }
        if !matches!(a.cookie_secure.as_str(), "auto" | "always" | "never") {
            problems.push("admin.cookie_secure: must be \"auto\", \"always\" or \"never\"".into());
        }
        if !(1..=1000).contains(&a.login_attempts) || !(1..=86_400).contains(&a.login_window_seconds) {
            problems.push("admin: login_attempts 1 to 1000 and login_window_seconds 1 to 86400".into());
        }
    }

    fn validate_schedules(&self, problems: &mut Vec<String>) {
        let j = &self.jobs;
        for (key, cron) in [
            ("jobs.unfinished_alert", &j.unfinished_alert),
            ("jobs.psp_sync", &j.psp_sync),
            ("jobs.idempotency_cleanup", &j.idempotency_cleanup),
            ("jobs.ledger_audit", &j.ledger_audit),
            ("payouts.schedule", &self.payouts.schedule),
        ] {
            if let Err(e) = check_cron(cron) {
                problems.push(format!("{key}: '{cron}' is not a cron string with seconds ({e})"));
            }
        }
        if !(0..=365).contains(&self.payouts.hold_days) {
            problems.push("payouts.hold_days: must be between 0 and 365".into());
        }
        for (code, amount) in &self.payouts.minimum_amount {
            let valid = crate::money::Currency::parse(code).and_then(|c| crate::money::Money::parse(amount, c));
            if let Err(e) = valid {
                problems.push(format!("payouts.minimum_amount.{code}: {e}"));
            }
        }
        if !(0..=7 * 24 * 60).contains(&self.alerts.unfinished_after_minutes) {
            problems.push("alerts.unfinished_after_minutes: must be between 0 and 10080".into());
        }
        let hook = &self.alerts.webhook_url;
        let is_url = hook.starts_with("http://") || hook.starts_with("https://");
        if !hook.is_empty() && !is_url {
            problems.push("alerts.webhook_url: must be empty or an http(s) URL".into());
        }
    }

    fn validate_queue(&self, problems: &mut Vec<String>) {
        let q = &self.queue;
        if !(1..=256).contains(&q.workers) {
            problems.push("queue.workers: must be between 1 and 256".into());
        }
        if !(1..=1000).contains(&q.batch_size) {
            problems.push("queue.batch_size: must be between 1 and 1000".into());
        }
        if !(10..=60_000).contains(&q.poll_interval_ms) {
            problems.push("queue.poll_interval_ms: must be between 10 and 60000".into());
        }
        if q.backoff_base_ms == 0 || q.backoff_cap_ms < q.backoff_base_ms {
            problems.push("queue.backoff_base_ms must be > 0 and ≤ queue.backoff_cap_ms".into());
        }
        if !(1..=100).contains(&q.max_attempts) {
            problems.push("queue.max_attempts: must be between 1 and 100".into());
        }
        let w = &self.webhooks;
        if w.backoff_base_ms == 0 || w.backoff_cap_ms < w.backoff_base_ms || !(1..=100).contains(&w.max_attempts) {
            problems.push("webhooks: backoff_base_ms > 0, ≤ backoff_cap_ms, and max_attempts 1 to 100".into());
        }
        if !(100..=60_000).contains(&w.timeout_ms) || q.lease_ms < 2 * w.timeout_ms {
            problems.push("webhooks.timeout_ms: 100 to 60000, and at most half of queue.lease_ms".into());
        }
        if !(1..=8_760).contains(&w.disable_after_failing_hours) {
            problems.push("webhooks.disable_after_failing_hours: must be between 1 and 8760".into());
        }
        if !(1..=3_650).contains(&self.events.retention_days) {
            problems.push("events.retention_days: must be between 1 and 3650".into());
        }
        // A lease shorter than a PSP call would hand a job to a second worker mid-call.
        if q.lease_ms < 2 * self.psp.request_timeout_ms {
            problems.push("queue.lease_ms: must be at least twice psp.request_timeout_ms".into());
        }
    }

    fn validate_reconciliation(&self, problems: &mut Vec<String>) {
        let r = &self.reconciliation;
        if let Err(e) = check_cron(&r.schedule) {
            problems.push(format!("reconciliation.schedule: '{}' is not a cron string with seconds ({e})", r.schedule));
        }
        if !(0..=60).contains(&r.grace_days) {
            problems.push("reconciliation.grace_days: must be between 0 and 60".into());
        }
        if !(1024..=1024 * 1024 * 1024).contains(&r.max_file_bytes) {
            problems.push("reconciliation.max_file_bytes: must be between 1024 and 1073741824".into());
        }
        if !(1..=1_000_000).contains(&r.max_rows) {
            problems.push("reconciliation.max_rows: must be between 1 and 1000000".into());
        }
    }

    fn validate_sandbox(&self, problems: &mut Vec<String>) {
        let s = &self.sandbox;
        if s.enabled && s.bind.parse::<SocketAddr>().is_err() {
            problems.push(format!("sandbox.bind: '{}' is not an address like 127.0.0.1:8081", s.bind));
        }
        if s.fee_percent < Decimal::ZERO || s.fee_percent > Decimal::ONE_HUNDRED {
            problems.push("sandbox.fee_percent: must be between 0 and 100".into());
        }
        if s.fee_fixed < 0 {
            problems.push("sandbox.fee_fixed: must not be negative".into());
        }
        if !(1..=100).contains(&s.webhook_max_attempts) {
            problems.push("sandbox.webhook_max_attempts: must be between 1 and 100".into());
        }
        if s.authorization_days <= Decimal::ZERO || s.authorization_days > Decimal::from(31) {
            problems.push("sandbox.authorization_days: must be more than 0 and at most 31".into());
        }
        if s.dispute_after_ms > 3_600_000 {
            problems.push("sandbox.dispute_after_ms: must be at most 3600000 (an hour)".into());
        }
        if s.dispute_fee < Decimal::ZERO || s.dispute_fee > Decimal::from(1_000) {
            problems.push("sandbox.dispute_fee: must be between 0 and 1000 (major units)".into());
        }
        let f = &s.faults;
        for (name, rate) in [
            ("error_rate", f.error_rate),
            ("timeout_rate", f.timeout_rate),
            ("webhook_drop_rate", f.webhook_drop_rate),
            ("webhook_duplicate_rate", f.webhook_duplicate_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                problems.push(format!("sandbox.faults.{name}: must be between 0.0 and 1.0"));
            }
        }
        if f.latency_ms > 60_000 || f.webhook_delay_ms > 600_000 {
            problems.push("sandbox.faults: latency_ms ≤ 60000 and webhook_delay_ms ≤ 600000".into());
        }
    }
}

/// A Stripe API version: `YYYY-MM-DD` (a real day), optionally followed by
/// `.name` in lower-case letters (`2026-03-25.dahlia`).
pub fn check_api_version(version: &str) -> Result<(), String> {
    let (date, name) = version.split_once('.').map_or((version, None), |(d, n)| (d, Some(n)));
    let real_day = date.len() == 10 && chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok();
    let name_ok = name.is_none_or(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_lowercase()));
    if real_day && name_ok {
        Ok(())
    } else {
        Err(format!("'{version}' is not a Stripe API version like {STRIPE_API_VERSION}"))
    }
}

/// Stripe's rules: at most 22 characters, at least one letter, none of
/// `<>\'"*`. Stripe checks them too; checking at start names the key.
pub fn check_statement_descriptor_suffix(suffix: &str) -> Result<(), String> {
    if suffix.is_empty() {
        return Ok(());
    }
    if suffix.chars().count() > MAX_STATEMENT_DESCRIPTOR_SUFFIX_CHARS {
        return Err(format!("at most {MAX_STATEMENT_DESCRIPTOR_SUFFIX_CHARS} characters"));
    }
    if !suffix.chars().any(char::is_alphabetic) {
        return Err("must contain at least one letter".into());
    }
    if suffix.contains(['<', '>', '\\', '\'', '"', '*']) {
        return Err("must not contain any of < > \\ ' \" *".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_never_point_at_an_unspecified_address() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(public_base("", at("0.0.0.0:8081")), "http://127.0.0.1:8081");
        assert_eq!(public_base("", at("[::]:8081")), "http://127.0.0.1:8081");
        assert_eq!(public_base("", at("10.1.2.3:80")), "http://10.1.2.3:80");
        assert_eq!(public_base("https://pay.shop.example/", at("0.0.0.0:1")), "https://pay.shop.example");
    }

    #[test]
    fn api_versions_are_dated() {
        for good in [STRIPE_API_VERSION, "2024-06-20", "2025-03-31.basil"] {
            assert_eq!(check_api_version(good), Ok(()), "{good}");
        }
        for bad in ["", "latest", "2019-2-19", "2026-02-30.dahlia", "2026-03-25.", "2026-03-25.Dahlia", "2026-03-25 "] {
            assert!(check_api_version(bad).is_err(), "{bad:?}");
        }
        let mut s = Settings::default();
        s.psp.api_version = "2026-13-01".into();
        let msg = s.validate().unwrap_err().to_string();
        assert!(msg.contains("psp.api_version: '2026-13-01'"), "{msg}");
    }

    #[test]
    fn statement_descriptor_suffixes_follow_stripes_rules() {
        for good in ["", "TILL", "Order 42", "Épicerie-7", "abcdefghijklmnopqrstuv"] {
            assert_eq!(check_statement_descriptor_suffix(good), Ok(()), "{good}");
        }
        for bad in ["abcdefghijklmnopqrstuvw", "12345", "  ", "a<b", "a>b", "a\\b", "it's", "a\"b", "a*b"] {
            assert!(check_statement_descriptor_suffix(bad).is_err(), "{bad:?}");
        }
        let mut s = Settings::default();
        s.psp.statement_descriptor_suffix = "***".into();
        assert!(s.validate().unwrap_err().to_string().contains("psp.statement_descriptor_suffix"));
    }

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().unwrap();
    }

    /// The shipped config.toml names every key, each with its default value.
    #[test]
    fn shipped_config_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        let figment = Figment::from(Toml::file(&path));
        let from_file: Settings = figment.extract().unwrap();
        let as_toml = |s: &Settings| serde_json::to_value(s).unwrap();
        assert_eq!(as_toml(&from_file), as_toml(&Settings::default()));
    }

    #[test]
    fn every_problem_is_named() {
        let mut s = Settings::default();
        s.server.bind = "nope".into();
        s.sandbox.faults.error_rate = 2.0;
        s.psp.files_base = "files.stripe.com".into();
        let msg = s.validate().unwrap_err().to_string();
        assert!(msg.contains("server.bind"), "{msg}");
        assert!(msg.contains("psp.files_base"), "{msg}");
        assert!(msg.contains("sandbox.faults.error_rate"), "{msg}");
    }

    #[test]
    fn trusted_proxies_are_addresses_or_blocks() {
        let range = |s: &str| IpRange::parse(s).unwrap();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(range("10.0.0.0/8").contains(ip("10.200.3.4")));
        assert!(!range("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(range("192.168.1.10/24").contains(ip("192.168.1.77")), "host bits are ignored");
        assert!(range("127.0.0.1").contains(ip("::ffff:127.0.0.1")), "IPv4-mapped IPv6 is IPv4");
        assert!(!range("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(range("0.0.0.0/0").contains(ip("203.0.113.7")) && !range("0.0.0.0/0").contains(ip("::1")));
        assert!(range("fd00::/8").contains(ip("fd12::1")) && !range("fd00::/8").contains(ip("fe80::1")));
        assert!(range("::/0").contains(ip("2001:db8::1")));
        for bad in ["", "10.0.0.0/33", "::/129", "10.0.0/8", "localhost", "10.0.0.0/", "10.0.0.0/-1"] {
            assert!(IpRange::parse(bad).is_err(), "{bad:?}");
        }
        let mut s = Settings::default();
        s.server.trusted_proxies = vec!["10.0.0.0/8".into(), "proxy.internal".into()];
        let msg = s.validate().unwrap_err().to_string();
        assert!(msg.contains("server.trusted_proxies: 'proxy.internal'"), "{msg}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API, not ours
    fn other_till_variables_of_the_environment_are_not_keys() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TILL_BIN", "/usr/local/bin/till");
            jail.set_env("TILL_TEST_DATABASE", "postgres");
            jail.set_env("TILL_SERVER__BIND", "127.0.0.1:9998");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.server.bind, "127.0.0.1:9998");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API, not ours
    fn env_overrides_nested_keys() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("till.toml", "[sandbox.faults]\nerror_rate = 0.1\n")?;
            jail.set_env("TILL_SANDBOX__FAULTS__ERROR_RATE", "0.25");
            jail.set_env("TILL_SERVER__BIND", "127.0.0.1:9999");
            let s = Settings::load(Some(Path::new("till.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(s.sandbox.faults.error_rate, 0.25);
            assert_eq!(s.server.bind, "127.0.0.1:9999");
            Ok(())
        });
    }
}
