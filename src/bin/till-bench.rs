//! till-bench: the throughput benchmark (docs/PERFORMANCE.md).
//!
//! Starts till with its embedded sandbox PSP on fresh databases in a folder
//! on the project's disk, measures in the same run what SQLite itself can
//! commit there (single-row commits, batched rows, and the rows of pay-in
//! postings in the ledger's own tables), then drives token pay-ins, hosted
//! pay-ins, token pay-ins at a fixed rate and, last, bookings of paid orders
//! straight through the core booking function. It reports completed payments
//! per second, latencies, CPU and peak memory, and the ratios to SQLite's raw
//! rates. `till check` must pass after every scenario.
//!
//!   cargo run --release --bin till-bench -- [--duration-s 60] [--scenario all]
//!   cargo run --release --bin till-bench -- --smoke   (a few seconds, as CI runs it)
//!   cargo run --release --bin till-bench -- --database-url postgres://… [--tills 2]
//!     (till on PostgreSQL, one or several tills on one database, with
//!     PostgreSQL's own commit rates and CPU per payment on both sides)

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use serde_json::json;
use till::config::Settings;
use till::context::Ctx;
use till::db::params;
use till::startup::Application;

#[derive(Parser)]
#[command(about = "Throughput benchmark of till and its sandbox PSP")]
struct Args {
    #[arg(long, value_enum, default_value = "all")]
    scenario: Scenario,
    /// Length of each timed scenario.
    #[arg(long, default_value_t = 60)]
    duration_s: u64,
    /// Concurrent clients of the closed-loop scenarios.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Requests per second of the open-loop latency scenario.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Orders booked in each of the ledger scenario's runs.
    #[arg(long, default_value_t = 100_000)]
    postings: usize,
    /// Where the databases go (default: target/bench-data, on the project's disk).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Paid orders booked before the payment scenarios, to measure them on
    /// a database the size a running shop has rather than a fresh one.
    #[arg(long, default_value_t = 0)]
    prefill_orders: usize,
    /// A short run of every scenario (seconds), for CI.
    #[arg(long)]
    smoke: bool,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Measure till on this PostgreSQL server rather than on SQLite: every
    /// till of the run gets a fresh database of its own on it (the URL's
    /// user must be allowed to create databases), and PostgreSQL's own
    /// commit rates are measured beside SQLite's. The databases
    /// (`till_bench_…`) are left for inspection: drop them afterwards.
    #[arg(long)]
    database_url: Option<String>,
    /// Tills sharing the one database of each payment scenario (more than
    /// one needs --database-url); the first runs the sandbox PSP for all,
    /// and the clients spread their payments across them.
    #[arg(long, default_value_t = 1)]
    tills: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    All,
    Raw,
    Ledger,
    Token,
    Hosted,
    Latency,
}

#[derive(Default, serde::Serialize)]
struct Report {
    raw_single_commits_per_s: f64,
    raw_batched_rows_per_s: f64,
    /// Pay-in postings (a ledger transaction and its three entries) inserted
    /// raw into the ledger's own tables, in batches of BATCH.
    raw_batched_postings_per_s: f64,
    /// With --database-url: PostgreSQL's single-row commits from one
    /// connection and from 16, and rows in batches.
    raw_pg_single_commits_per_s: Option<f64>,
    raw_pg_concurrent_commits_per_s: Option<f64>,
    raw_pg_batched_rows_per_s: Option<f64>,
    results: Vec<serde_json::Value>,
}

/// Where a scenario's tills keep their books.
struct Database {
    /// A PostgreSQL server, or SQLite in the run's folder.
    url: Option<String>,
    tills: usize,
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    anyhow::ensure!(args.tills >= 1, "--tills is at least 1");
    anyhow::ensure!(
        args.tills == 1 || args.database_url.is_some(),
        "several tills share one PostgreSQL database: give --database-url"
    );
    if args.smoke {
        args.duration_s = 2;
        args.concurrency = args.concurrency.min(16);
        args.rate = args.rate.min(50);
        args.postings = args.postings.min(2_000);
    }
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("target/bench-data"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = rt.block_on(run(&args, &dir))?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

async fn run(args: &Args, dir: &Path) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let want = |s: Scenario| args.scenario == Scenario::All || args.scenario == s;
    let raw_secs = if args.smoke { 1 } else { 10 };
    report.raw_single_commits_per_s = best_raw(dir, "raw1", 1, |path, wal| raw_single_commits(path, wal, raw_secs))?;
    report.raw_batched_rows_per_s = best_raw(dir, "raw2", 1, |path, wal| raw_batched_rows(path, wal, raw_secs))?;
    // A few seconds each: the best of three, against this disk's swings.
    report.raw_batched_postings_per_s =
        best_raw(dir, "raw3", 3, |path, wal| raw_batched_postings(path, wal, args.postings))?;
    println!(
        "SQLite on this disk (WAL, synchronous=FULL): {:.0} durable single-row commits/s, {:.0} rows/s in batches of {BATCH}; \
         {:.0} pay-in postings/s ({:.0} rows/s) inserted raw into the ledger's tables in batches of {BATCH}",
        report.raw_single_commits_per_s,
        report.raw_batched_rows_per_s,
        report.raw_batched_postings_per_s,
        report.raw_batched_postings_per_s * ROWS_PER_POSTING,
    );
    if let Some(url) = &args.database_url {
        let (url, secs) = (url.clone(), raw_secs);
        let (one, many, rows) = tokio::task::spawn_blocking(move || -> anyhow::Result<(f64, f64, f64)> {
            let db = fresh_postgres_database(&url)?;
            Ok((raw_pg_commits(&db, 1, secs)?, raw_pg_commits(&db, 16, secs)?, raw_pg_batched_rows(&db, secs)?))
        })
        .await??;
        report.raw_pg_single_commits_per_s = Some(one);
        report.raw_pg_concurrent_commits_per_s = Some(many);
        report.raw_pg_batched_rows_per_s = Some(rows);
        println!(
            "PostgreSQL at that URL: {one:.0} durable single-row commits/s from one connection, {many:.0}/s from 16 \
             at once (its group commit), {rows:.0} rows/s in batches of {BATCH}"
        );
    }
    if args.scenario == Scenario::Raw {
        return Ok(report);
    }
    let database = Database { url: args.database_url.clone(), tills: args.tills };
    let bench = Bench::start(dir, &database).await?;
    if args.prefill_orders > 0 {
        let r = bench.prefill(args.prefill_orders).await?;
        println!("prefilled {} paid orders in {:.1}s", r.count, r.secs);
        bench.check()?;
    }
    for (scenario, name) in [(Scenario::Token, "token"), (Scenario::Hosted, "hosted")] {
        if want(scenario) {
            let r = bench.closed_loop(scenario, args.concurrency, Duration::from_secs(args.duration_s)).await?;
            r.print(name, &report);
            report.results.push(r.json(name, &report));
            bench.check()?;
        }
    }
    if want(Scenario::Latency) {
        let r = bench.open_loop(args.rate, Duration::from_secs(args.duration_s)).await?;
        r.print(&format!("token at {}/s", args.rate), &report);
        report.results.push(r.json("latency", &report));
        bench.check()?;
    }
    // Each on a till of its own with fresh databases, as the raw ledger
    // rows were inserted into a fresh one: both grow the same indexes as far.
    if want(Scenario::Ledger) {
        for booking in [Booking::Ledger, Booking::Orders] {
            for (batch, concurrency, name) in [(BATCH, 2, "batched"), (1, 64, "one per write")] {
                let one = Database { url: args.database_url.clone(), tills: 1 };
                let bench = Bench::start(&dir.join(format!("{}-{batch}", booking.label())), &one).await?;
                let r = bench.book(booking, args.postings, batch, concurrency).await?;
                let ratio = r.rate / report.raw_batched_postings_per_s;
                println!(
                    "{}: {:.0}/s, {name} ({} in {:.2}s) = {:.1}% of SQLite's raw batched insert of the same ledger rows; \
                     {:.1}% of its raw row rate counting the {ROWS_PER_POSTING} rows each",
                    booking.title(),
                    r.rate,
                    r.count,
                    r.secs,
                    ratio * 100.0,
                    r.rate * ROWS_PER_POSTING / report.raw_batched_rows_per_s * 100.0,
                );
                if bench.ctx.db.is_postgres() {
                    println!("  on PostgreSQL: {} writes run again after a serialization conflict", r.reruns);
                }
                report.results.push(json!({"scenario": booking.label(), "batch": batch, "postings_per_s": r.rate,
                                           "ratio_to_raw_batched_postings": ratio,
                                           "ratio_to_raw_batched_rows": r.rate * ROWS_PER_POSTING / report.raw_batched_rows_per_s,
                                           "write_reruns": r.reruns}));
                bench.check()?;
            }
        }
    }
    let (cpu, peak_mb) = process_usage();
    println!("process: {cpu:.1} CPU-seconds in all, peak resident memory {peak_mb:.0} MiB");
    Ok(report)
}

const BATCH: usize = 1_000;
/// A pay-in posting with a commission: its transaction row and three entries.
const ROWS_PER_POSTING: f64 = 4.0;

/// The best of `tries` runs of a raw measure in each of two settings, each
/// run on a fresh database: with SQLite's own checkpoints (every 1,000 WAL
/// pages, in the writing thread) and with none (the WAL only grows). Which
/// is faster depends on the measure: a reused WAL syncs less, a checkpoint
/// costs a sync of its own.
fn best_raw(
    dir: &Path,
    name: &str,
    tries: usize,
    run: impl Fn(&Path, u32) -> anyhow::Result<f64>,
) -> anyhow::Result<f64> {
    let mut best = 0f64;
    for i in 0..tries {
        for wal_autocheckpoint in [1000, 0] {
            let path = dir.join(format!("{name}-{wal_autocheckpoint}-{i}.db"));
            best = best.max(run(&path, wal_autocheckpoint)?);
            // Only the rate is kept: the files go, so runs do not fill the disk.
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
    }
    Ok(best)
}

fn open_raw(path: &Path, wal_autocheckpoint: u32) -> anyhow::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    conn.execute_batch(&format!("PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = {wal_autocheckpoint};"))?;
    Ok(conn)
}

const TINY_TABLE: &str = "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b TEXT)";

/// One row per transaction, each durable before the next.
fn raw_single_commits(path: &Path, wal_autocheckpoint: u32, secs: u64) -> anyhow::Result<f64> {
    let conn = open_raw(path, wal_autocheckpoint)?;
    conn.execute_batch(TINY_TABLE)?;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        conn.execute("INSERT INTO t (a, b) VALUES (?1, 'x')", [n as i64])?;
        n += 1;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Rows inserted in transactions of BATCH rows.
fn raw_batched_rows(path: &Path, wal_autocheckpoint: u32, secs: u64) -> anyhow::Result<f64> {
    let mut conn = open_raw(path, wal_autocheckpoint)?;
    conn.execute_batch(TINY_TABLE)?;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        let tx = conn.transaction()?;
        {
            let mut st = tx.prepare_cached("INSERT INTO t (a, b) VALUES (?1, 'x')")?;
            for _ in 0..BATCH {
                st.execute([n as i64])?;
                n += 1;
            }
        }
        tx.commit()?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// The rows `n` pay-in postings write (a ledger transaction, three entries
/// each), inserted with plain prepared statements into the ledger's own
/// tables and indexes in a fresh database, BATCH postings per transaction
/// and the entries of each in one statement, as till writes them: what
/// SQLite itself can commit of the ledger's data, with none of till's logic
/// or checks (its foreign keys apart, which this SQLite build enforces by
/// default). As many as the ledger scenario books, so both grow the same
/// indexes as far.
fn raw_batched_postings(path: &Path, wal_autocheckpoint: u32, n: usize) -> anyhow::Result<f64> {
    let mut conn = open_raw(path, wal_autocheckpoint)?;
    till::db::migrate_sqlite(&mut conn, &till::db::till_migrations())?;
    let mut account =
        conn.prepare("INSERT INTO ledger_accounts (name, currency, kind) VALUES (?1, 'USD', ?2) RETURNING id")?;
    let mut id = |name: &str, kind: &str| account.query_row([name, kind], |r| r.get::<_, i64>(0));
    let (psp, commission) = (id("assets:psp_balance", "asset")?, id("revenue:commission", "revenue")?);
    let sellers =
        (0..100).map(|i| id(&format!("liabilities:seller:s{i}"), "liability")).collect::<Result<Vec<_>, _>>()?;
    drop(account);
    let started = Instant::now();
    let mut done = 0usize;
    while done < n {
        let tx = conn.transaction()?;
        {
            let mut txn = tx.prepare_cached(
                "INSERT INTO ledger_transactions (source_type, source_id, currency, description, created_at)
                 VALUES ('payment_order', ?1, 'USD', ?2, ?3)",
            )?;
            let mut entries = tx.prepare_cached(
                "INSERT INTO ledger_entries (transaction_id, account_id, amount_minor)
                 VALUES (?1, ?2, 1234), (?1, ?3, -1111), (?1, ?4, -123)",
            )?;
            let now = till::db::now();
            for _ in 0..BATCH.min(n - done) {
                let (order, seller) = (uuid::Uuid::new_v4().to_string(), done % 100);
                txn.execute(rusqlite::params![order, format!("pay-in of order {order} for seller s{seller}"), now])?;
                let t = tx.last_insert_rowid();
                entries.execute(rusqlite::params![t, psp, sellers[seller], commission])?;
                done += 1;
            }
        }
        tx.commit()?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

struct Bench {
    /// Each till's address; clients spread their payments across them.
    bases: Vec<String>,
    /// Each till's database handle.
    dbs: Vec<till::db::Db>,
    key: String,
    ctx: Ctx,
    client: reqwest::Client,
    /// The sandbox PSP's database, to see its webhook outbox.
    sandbox_db: PathBuf,
}

struct Outcome {
    created: u64,
    completed: u64,
    secs: f64,
    post_ms: Vec<f64>,
    done_ms: Vec<f64>,
    drained: Drained,
    cpu: Cpu,
}

/// CPU-seconds a scenario took, window and drain.
struct Cpu {
    /// This process: the tills, the sandbox PSP and the clients.
    process_s: f64,
    /// PostgreSQL's backends serving the tills (its WAL writer and
    /// checkpointer, shared by the server, not counted).
    postgres_s: Option<f64>,
    /// Writes run again after a serialization conflict or a deadlock.
    reruns: u64,
}

/// What was still owed when a window closed.
struct Drained {
    /// Webhooks the sandbox had yet to send.
    webhooks_pending: i64,
    /// Seconds until every payment was final and every webhook sent.
    secs: f64,
}

struct Rate {
    rate: f64,
    count: usize,
    secs: f64,
    /// Writes run again after a serialization conflict (PostgreSQL).
    reruns: u64,
}

impl Bench {
    async fn start(dir: &Path, database: &Database) -> anyhow::Result<Bench> {
        let mut settings = Settings::default();
        settings.server.bind = "127.0.0.1:0".into();
        settings.database.path = dir.join("till.db");
        if let Some(server) = &database.url {
            let server = server.clone();
            settings.database.url = tokio::task::spawn_blocking(move || fresh_postgres_database(&server)).await??;
        }
        settings.sandbox.bind = "127.0.0.1:0".into();
        settings.sandbox.database_path = dir.join("sandbox.db");
        // One bench runs several tills one after the other (or side by
        // side): no fixed metrics port. Requests are still counted.
        settings.metrics.bind = String::new();
        settings.log.level = "warn".into();
        // A marketplace's take: every pay-in posting has three entries, as
        // in the raw reference.
        settings.fees.commission_percent = "10".parse()?;
        settings.validate()?;
        till::telemetry::init(&settings.log);
        let app = Application::build(settings.clone())?;
        let mut bases = vec![format!("http://{}", app.address())];
        let sandbox = app.sandbox_address().context("the first till runs the sandbox")?;
        let ctx = app.context().clone();
        let mut dbs = vec![ctx.db.clone()];
        tokio::spawn(app.run_until_stopped());
        // The other tills on the same database, paying through the first's sandbox.
        for _ in 1..database.tills {
            let mut settings = settings.clone();
            settings.sandbox.enabled = false;
            settings.psp.api_base = format!("http://{sandbox}");
            let app = Application::build(settings)?;
            bases.push(format!("http://{}", app.address()));
            dbs.push(app.context().db.clone());
            tokio::spawn(app.run_until_stopped());
        }
        let key = ctx.db.write_now(|tx| till::api_keys::create(tx, "bench"))?.key;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Bench { bases, dbs, key, ctx, client, sandbox_db: dir.join("sandbox.db") })
    }

    /// Writes run again after a serialization conflict, across the tills.
    fn reruns(&self) -> u64 {
        self.dbs.iter().map(|db| db.write_reruns()).sum()
    }

    /// CPU-seconds so far of this process (tills, sandbox and clients) and,
    /// on PostgreSQL, of the server backends serving this run's databases.
    fn cpu(&self) -> (f64, Option<f64>, u64) {
        let (process, _) = process_usage();
        let backends = self.ctx.db.is_postgres().then(|| {
            let pids: Vec<i64> = self
                .ctx
                .db
                .read_now(|tx| {
                    tx.query_map(
                        "SELECT pid::BIGINT FROM pg_stat_activity WHERE datname = current_database()",
                        params![],
                        |r| r.get(0),
                    )
                })
                .unwrap_or_default();
            pids.iter().map(|pid| cpu_of(&format!("/proc/{pid}/stat"))).sum()
        });
        (process, backends, self.reruns())
    }

    fn check(&self) -> anyhow::Result<()> {
        let report = self.ctx.db.read_snapshot(till::ledger::check::run)?;
        anyhow::ensure!(report.ok, "{}", report.summary());
        println!("  till check: {}", report.summary());
        Ok(())
    }

    /// Books `n` prepared orders, `batch` orders per write, from
    /// `concurrency` tasks at once, through the core function of `booking`.
    async fn book(&self, booking: Booking, n: usize, batch: usize, concurrency: usize) -> anyhow::Result<Rate> {
        let orders = prepare_orders(&self.ctx, n, booking).await?;
        let reruns = self.reruns();
        let policy = till::payments::Policy::of(&self.ctx.settings);
        let queue = Arc::new(std::sync::Mutex::new(orders));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (ctx, queue) = (self.ctx.clone(), queue.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let orders = {
                        let mut queue = queue.lock().unwrap();
                        let from = queue.len().saturating_sub(batch);
                        queue.split_off(from)
                    };
                    if orders.is_empty() {
                        return anyhow::Ok(());
                    }
                    let job = move |tx: &till::db::Tx| booking.run(tx, &orders, policy);
                    if batch > 1 { ctx.db.write_alone(job).await? } else { ctx.db.write(job).await? }
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        let secs = started.elapsed().as_secs_f64();
        Ok(Rate { rate: n as f64 / secs, count: n, secs, reruns: self.reruns() - reruns })
    }

    /// Books `n` paid orders, in chunks, before the payment scenarios.
    async fn prefill(&self, n: usize) -> anyhow::Result<Rate> {
        let policy = till::payments::Policy::of(&self.ctx.settings);
        let started = Instant::now();
        let mut done = 0;
        while done < n {
            let chunk = (n - done).min(10 * BATCH);
            let mut orders = prepare_orders(&self.ctx, chunk, Booking::Orders).await?;
            while !orders.is_empty() {
                let batch = orders.split_off(orders.len().saturating_sub(BATCH));
                self.ctx.db.write_alone(move |tx| Booking::Orders.run(tx, &batch, policy)).await?;
            }
            done += chunk;
        }
        let secs = started.elapsed().as_secs_f64();
        Ok(Rate { rate: n as f64 / secs, count: n, secs, reruns: 0 })
    }

    /// `concurrency` clients, each paying and waiting until its payment is
    /// final before the next: completed payments per second, end to end.
    async fn closed_loop(&self, scenario: Scenario, concurrency: usize, duration: Duration) -> anyhow::Result<Outcome> {
        let stop = Arc::new(AtomicBool::new(false));
        let created = Arc::new(AtomicU64::new(0));
        let completed = Arc::new(AtomicU64::new(0));
        let watcher = Watcher::spawn(self.ctx.clone(), stop.clone());
        let started = Instant::now();
        let mut tasks = Vec::new();
        let cpu_before = self.cpu();
        for i in 0..concurrency {
            let base = self.bases[i % self.bases.len()].clone();
            let (client, key) = (self.client.clone(), self.key.clone());
            let (stop, created, completed, watcher) =
                (stop.clone(), created.clone(), completed.clone(), watcher.clone());
            tasks.push(tokio::spawn(async move {
                let (mut post_ms, mut done_ms) = (Vec::new(), Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    let checkout_id = uuid::Uuid::new_v4().to_string();
                    let finished = watcher.wait_for(&checkout_id);
                    let ok = match scenario {
                        Scenario::Hosted => hosted_payment(&client, &base, &key, &checkout_id).await,
                        _ => token_payment(&client, &base, &key, &checkout_id).await,
                    }?;
                    if ok.is_none() {
                        continue;
                    }
                    post_ms.extend(ok);
                    created.fetch_add(1, Ordering::Relaxed);
                    tokio::time::timeout(Duration::from_secs(60), finished)
                        .await
                        .context("a payment never finished")??;
                    if !stop.load(Ordering::Relaxed) {
                        completed.fetch_add(1, Ordering::Relaxed);
                        done_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                anyhow::Ok((post_ms, done_ms))
            }));
        }
        tokio::time::sleep(duration).await;
        stop.store(true, Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        let completed = completed.load(Ordering::Relaxed);
        let (mut post_ms, mut done_ms) = (Vec::new(), Vec::new());
        for t in tasks {
            let (p, d) = t.await??;
            post_ms.extend(p);
            done_ms.extend(d);
        }
        let drained = self.drain(Duration::from_secs(120)).await?;
        let cpu = self.cpu_since(cpu_before);
        Ok(Outcome { created: created.load(Ordering::Relaxed), completed, secs, post_ms, done_ms, drained, cpu })
    }

    /// Token payments sent at a fixed rate, whatever the answers take.
    async fn open_loop(&self, rate: u64, duration: Duration) -> anyhow::Result<Outcome> {
        let done_before = self.done_count()?;
        let cpu_before = self.cpu();
        let started = Instant::now();
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        let mut tasks = Vec::new();
        while started.elapsed() < duration {
            interval.tick().await;
            let base = self.bases[tasks.len() % self.bases.len()].clone();
            let (client, key) = (self.client.clone(), self.key.clone());
            tasks.push(tokio::spawn(async move {
                token_payment(&client, &base, &key, &uuid::Uuid::new_v4().to_string()).await
            }));
        }
        let secs = started.elapsed().as_secs_f64();
        let mut post_ms = Vec::new();
        for t in tasks {
            post_ms.extend(t.await??);
        }
        let drained = self.drain(Duration::from_secs(120)).await?;
        let completed = self.done_count()? - done_before;
        let done_ms = self.completion_ms(started)?;
        let cpu = self.cpu_since(cpu_before);
        Ok(Outcome { created: post_ms.len() as u64, completed, secs, post_ms, done_ms, drained, cpu })
    }

    fn cpu_since(&self, (process, backends, reruns): (f64, Option<f64>, u64)) -> Cpu {
        let (now, backends_now, reruns_now) = self.cpu();
        Cpu {
            process_s: now - process,
            postgres_s: backends_now.zip(backends).map(|(now, then)| now - then),
            reruns: reruns_now - reruns,
        }
    }

    fn done_count(&self) -> anyhow::Result<u64> {
        let n: usize = self.ctx.db.read_now(|tx| {
            tx.query_value("SELECT COUNT(*) FROM payment_events WHERE is_payment_done = 1", params![])
        })?;
        Ok(n as u64)
    }

    /// Waits until every stored payment is final, then until the sandbox
    /// has sent every webhook it owes (the next scenario's webhooks would
    /// otherwise queue behind this one's), and says how far behind it was.
    async fn drain(&self, limit: Duration) -> anyhow::Result<Drained> {
        let started = Instant::now();
        // The sandbox PSP's own database, another party's: read as it is.
        let sandbox = rusqlite::Connection::open(&self.sandbox_db)?;
        let pending = || -> anyhow::Result<i64> {
            Ok(sandbox
                .query_row("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'", [], |r| r.get(0))?)
        };
        let behind = pending()?;
        loop {
            let open: i64 = self.ctx.db.read_now(|tx| {
                tx.query_value(
                    "SELECT COUNT(*) FROM payment_orders WHERE payment_order_status IN ('NOT_STARTED', 'EXECUTING')",
                    params![],
                )
            })?;
            let unsent = pending()?;
            if open == 0 && unsent == 0 {
                break;
            }
            anyhow::ensure!(started.elapsed() < limit, "{open} payments never finished, {unsent} webhooks never sent");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let drained = Drained { webhooks_pending: behind, secs: started.elapsed().as_secs_f64() };
        println!(
            "  drained in {:.1}s: the sandbox still had {behind} webhooks to send when the window closed",
            drained.secs
        );
        Ok(drained)
    }

    /// Creation-to-final times of the payments created since `since`.
    fn completion_ms(&self, since: Instant) -> anyhow::Result<Vec<f64>> {
        let from = chrono::Utc::now() - chrono::Duration::from_std(since.elapsed())?;
        let from = from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let times: Vec<(String, String)> = self.ctx.db.read_now(|tx| {
            tx.query_map(
                "SELECT created_at, updated_at FROM payment_events WHERE created_at >= $1 AND is_payment_done = 1",
                params![from],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })?;
        let ms = |at: &str| chrono::DateTime::parse_from_rfc3339(at).map(|t| t.timestamp_millis());
        times.iter().map(|(created, updated)| Ok((ms(updated)? - ms(created)?) as f64)).collect()
    }
}

fn body(checkout_id: &str, method: serde_json::Value) -> serde_json::Value {
    let mut b = json!({
        "checkout_id": checkout_id,
        "buyer": {"id": "buyer_bench"},
        "orders": [{"payment_order_id": uuid::Uuid::new_v4().to_string(), "seller_id": "seller_bench",
                    "amount": "12.34", "currency": "USD"}],
        "payment_method": method,
    });
    if b["payment_method"]["type"] == "hosted_page" {
        b["success_url"] = json!("https://shop.example/ok");
        b["cancel_url"] = json!("https://shop.example/cancel");
    }
    b
}

/// `POST /v1/payments`: the answer if it was 201 Created, and its latency in ms.
async fn create_payment(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    checkout_id: &str,
    method: serde_json::Value,
) -> anyhow::Result<Option<(reqwest::Response, f64)>> {
    let t0 = Instant::now();
    let resp =
        client.post(format!("{base}/v1/payments")).bearer_auth(key).json(&body(checkout_id, method)).send().await?;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    Ok((resp.status() == reqwest::StatusCode::CREATED).then_some((resp, ms)))
}

/// Creates a token payment; the POST's latency in ms if it was accepted.
async fn token_payment(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    checkout_id: &str,
) -> anyhow::Result<Option<f64>> {
    let created =
        create_payment(client, base, key, checkout_id, json!({"type": "token", "token": "pm_card_visa"})).await?;
    Ok(created.map(|(_, ms)| ms))
}

/// The shop creates the checkout; the buyer opens the page and pays. The
/// create POST's latency in ms if the payment went through.
async fn hosted_payment(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    checkout_id: &str,
) -> anyhow::Result<Option<f64>> {
    let Some((resp, post_ms)) = create_payment(client, base, key, checkout_id, json!({"type": "hosted_page"})).await?
    else {
        return Ok(None);
    };
    let created: serde_json::Value = resp.json().await?;
    let url = created["redirect_url"].as_str().context("redirect_url")?.to_string();
    client.get(&url).send().await?.bytes().await?;
    let paid = client
        .post(&url)
        .form(&[("card_number", "4242424242424242"), ("exp_month", "12"), ("exp_year", "2034"), ("cvc", "123")])
        .send()
        .await?;
    Ok((paid.status() == reqwest::StatusCode::SEE_OTHER).then_some(post_ms))
}

/// Checkouts final since $1, through the orders' indexes of recent
/// outcomes: payment_events has no index on updated_at, and a scan of it
/// every 10 ms would take a core from till as the table grows. Each
/// benchmark checkout has one order, final in the write that completes it.
const DONE_SINCE: &str = "SELECT checkout_id, succeeded_at FROM payment_orders
                           WHERE payment_order_status = 'SUCCESS' AND succeeded_at >= $1
                          UNION ALL
                          SELECT checkout_id, updated_at FROM payment_orders
                           WHERE payment_order_status = 'FAILED' AND updated_at >= $1";
/// [`DONE_SINCE`] for SQLite, whose planner without statistics would scan
/// every SUCCESS: the indexes named (INDEXED BY is SQLite's).
const DONE_SINCE_SQLITE: &str = "SELECT checkout_id, succeeded_at FROM payment_orders INDEXED BY payment_orders_succeeded
                                  WHERE payment_order_status = 'SUCCESS' AND succeeded_at >= $1
                                 UNION ALL
                                 SELECT checkout_id, updated_at FROM payment_orders INDEXED BY payment_orders_list_by_status
                                  WHERE payment_order_status = 'FAILED' AND updated_at >= $1";

/// Tells waiting clients when their checkout became final: one query every
/// few milliseconds for all of them, rather than a poll per client.
#[derive(Clone)]
struct Watcher {
    waiting: Arc<std::sync::Mutex<std::collections::HashMap<String, tokio::sync::oneshot::Sender<()>>>>,
}

impl Watcher {
    fn spawn(ctx: Ctx, stop: Arc<AtomicBool>) -> Watcher {
        let watcher = Watcher { waiting: Arc::default() };
        let w = watcher.clone();
        tokio::spawn(async move {
            let mut since = till::db::now();
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                // Timestamps are taken before commit: look back a little so a
                // slower commit with an earlier time is not missed.
                let from = chrono::DateTime::parse_from_rfc3339(&since)
                    .map(|t| {
                        (t - chrono::Duration::milliseconds(500)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    })
                    .unwrap_or_else(|_| since.clone());
                let sql = if ctx.db.is_postgres() { DONE_SINCE } else { DONE_SINCE_SQLITE };
                let done: anyhow::Result<Vec<(String, String)>> = ctx
                    .db
                    .run(move |tx| {
                        // Through the orders' indexes of recent outcomes: payment_events
                        // has no index on updated_at, and a scan of it every 10 ms would
                        // take a core from till as the table grows. Each benchmark
                        // checkout has one order, final in the write that completes it.
                        // (INDEXED BY is SQLite's: this benchmark measures till on SQLite,
                        // and without statistics its planner would scan every SUCCESS.)
                        tx.query_map(sql, params![from], |r| Ok((r.get(0)?, r.get(1)?)))
                    })
                    .await;
                let Ok(done) = done else { continue };
                let mut waiting = w.waiting.lock().unwrap();
                for (id, at) in done {
                    if let Some(tx) = waiting.remove(&id) {
                        let _ = tx.send(());
                    }
                    if at > since {
                        since = at;
                    }
                }
                if stop.load(Ordering::Relaxed) && waiting.is_empty() {
                    return;
                }
            }
        });
        watcher
    }

    fn wait_for(&self, checkout_id: &str) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.waiting.lock().unwrap().insert(checkout_id.to_string(), tx);
        rx
    }
}

/// What the ledger scenario books, each through the function the binary uses.
#[derive(Clone, Copy)]
enum Booking {
    /// Ledger postings alone: the pay-in postings of orders already marked
    /// paid, with their wallet credits and the wallet-equals-ledger check
    /// (`book::book_payins`).
    Ledger,
    /// Everything the PSP's word that orders are paid writes: each order's
    /// state and history, the same postings and wallets, and each
    /// checkout's completion (`book::succeed_orders`).
    Orders,
}

impl Booking {
    fn label(self) -> &'static str {
        match self {
            Booking::Ledger => "ledger",
            Booking::Orders => "bookings",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Booking::Ledger => "ledger postings (pay-in postings with their wallet credits)",
            Booking::Orders => "order bookings (order state and history, postings, wallets, checkout)",
        }
    }

    fn run(
        self,
        tx: &till::db::Tx,
        orders: &[till::payments::model::Order],
        policy: till::payments::Policy,
    ) -> anyhow::Result<()> {
        match self {
            Booking::Ledger => till::payments::book::book_payins(tx, &orders.iter().collect::<Vec<_>>(), policy),
            Booking::Orders => {
                // As when the PSP says they are paid: read them in the write, book them together.
                let orders = orders
                    .iter()
                    .map(|o| till::payments::store::load_order(tx, o.payment_order_id.as_str())?.context("order"))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let orders: Vec<_> = orders.iter().collect();
                let booked = till::payments::book::succeed_orders(tx, &orders, None, policy)?;
                anyhow::ensure!(booked == orders.len(), "{booked} of {} orders booked", orders.len());
                for order in orders {
                    till::payments::notify::checkout_progress(tx, order.checkout_id.as_str(), policy)?;
                }
                Ok(())
            }
        }
    }
}

/// `n` orders of one checkout each across 100 sellers: EXECUTING for
/// bookings; for ledger postings alone, already in the state their
/// booking leaves them (SUCCESS, flags set, the seller's share), so that
/// only the money is left to book.
async fn prepare_orders(ctx: &Ctx, n: usize, booking: Booking) -> anyhow::Result<Vec<till::payments::model::Order>> {
    let paid = matches!(booking, Booking::Ledger);
    let share = 1234 - till::money::percentage_minor(1234, ctx.settings.fees.commission_percent);
    ctx.db
        .write_alone(move |tx| -> anyhow::Result<Vec<_>> {
            let key: String = tx.query_value("SELECT id FROM api_keys LIMIT 1", params![])?;
            let now = till::db::now();
            let status = if paid { "SUCCESS" } else { "EXECUTING" };
            let mut orders = Vec::with_capacity(n);
            for i in 0..n {
                let (checkout, id) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
                tx.execute(
                    "INSERT INTO payment_events (checkout_id, api_key_id, buyer_info, payment_method, request_hash,
                                                 created_at, updated_at)
                     VALUES ($1, $2, '{}', 'hosted_page', 'bench', $3, $3)",
                    params![checkout, key, now],
                )?;
                tx.execute(
                    "INSERT INTO payment_orders (payment_order_id, checkout_id, position, buyer_account, seller_id,
                                                 amount_minor, currency, payment_order_status, ledger_updated,
                                                 wallet_updated, seller_amount_minor, succeeded_at, created_at,
                                                 updated_at, psp_payment_intent_id, captured_minor)
                     VALUES ($1, $2, 0, 'buyer', $3, 1234, 'USD', $4, $5, $5, $6, $7, $8, $8, 'pi_bench_' || $1, $9)",
                    params![
                        id,
                        checkout,
                        format!("ledger_seller_{}", i % 100),
                        status,
                        paid,
                        paid.then_some(share),
                        paid.then_some(&now),
                        now,
                        paid.then_some(1234i64)
                    ],
                )?;
                // Each order's charge is recorded with it, as the PSP's word on
                // it would have been: what is timed is the booking alone.
                tx.execute(
                    "INSERT INTO psp_charges (payment_intent_id, checkout_id, amount_minor, currency, backed_minor,
                                              recorded_at)
                     VALUES ('pi_bench_' || $1, $2, 1234, 'USD', 1234, $3)",
                    params![id, checkout, now],
                )?;
                orders.push(till::payments::store::load_order(tx, &id)?.context("order")?);
            }
            Ok(orders)
        })
        .await
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

impl Outcome {
    fn stats(v: &[f64]) -> (f64, f64, f64) {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        (percentile(&s, 0.50), percentile(&s, 0.95), percentile(&s, 0.99))
    }

    fn print(&self, name: &str, report: &Report) {
        let rate = self.completed as f64 / self.secs;
        let (p50, p95, p99) = Self::stats(&self.post_ms);
        let (d50, d95, d99) = Self::stats(&self.done_ms);
        println!(
            "{name}: {rate:.0} payments completed/s over {:.1}s ({} created); POST /v1/payments p50 {p50:.1} p95 {p95:.1} p99 {p99:.1} ms; \
             creation to final p50 {d50:.0} p95 {d95:.0} p99 {d99:.0} ms; {:.2} payments per raw single commit",
            self.secs,
            self.created,
            rate / report.raw_single_commits_per_s
        );
        let per = |s: f64| s * 1000.0 / self.completed.max(1) as f64;
        match self.cpu.postgres_s {
            Some(pg) => println!(
                "  CPU per payment: {:.1} ms in this process (tills, sandbox PSP, clients) + {:.1} ms in PostgreSQL's backends; \
                 {} writes run again after a conflict ({:.3} per payment); {:.2} payments per PostgreSQL single commit",
                per(self.cpu.process_s),
                per(pg),
                self.cpu.reruns,
                self.cpu.reruns as f64 / self.completed.max(1) as f64,
                rate / report.raw_pg_single_commits_per_s.unwrap_or(f64::NAN)
            ),
            None => println!(
                "  CPU per payment: {:.1} ms in this process (till, sandbox PSP, clients)",
                per(self.cpu.process_s)
            ),
        }
    }

    fn json(&self, name: &str, report: &Report) -> serde_json::Value {
        let rate = self.completed as f64 / self.secs;
        let (p50, p95, p99) = Self::stats(&self.post_ms);
        let (d50, d95, d99) = Self::stats(&self.done_ms);
        json!({"scenario": name, "completed_per_s": rate, "created": self.created, "secs": self.secs,
               "post_ms": {"p50": p50, "p95": p95, "p99": p99}, "completion_ms": {"p50": d50, "p95": d95, "p99": d99},
               "ratio_to_raw_single_commits": rate / report.raw_single_commits_per_s,
               "webhooks_pending_at_window_end": self.drained.webhooks_pending, "drain_s": self.drained.secs,
               "completed_per_s_until_drained": self.completed as f64 / (self.secs + self.drained.secs),
               "cpu_ms_per_payment_process": self.cpu.process_s * 1000.0 / self.completed.max(1) as f64,
               "cpu_ms_per_payment_postgres": self.cpu.postgres_s.map(|s| s * 1000.0 / self.completed.max(1) as f64),
               "write_reruns": self.cpu.reruns})
    }
}

/// CPU seconds a process used so far, from its `/proc/…/stat` (Linux; 0
/// if it is gone).
fn cpu_of(stat: &str) -> f64 {
    let stat = std::fs::read_to_string(stat).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line (11 and 12 after the name); 100 ticks/s.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds used so far and peak resident memory, from /proc (Linux).
fn process_usage() -> (f64, f64) {
    let cpu = cpu_of("/proc/self/stat");
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak_kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, peak_kb / 1024.0)
}

/// A new, empty database on the PostgreSQL server at `server`; its URL.
fn fresh_postgres_database(server: &str) -> anyhow::Result<String> {
    let name = format!("till_bench_{}", uuid::Uuid::new_v4().simple());
    let mut client = postgres::Client::connect(server, postgres::NoTls).context("connecting to --database-url")?;
    client.batch_execute(&format!("CREATE DATABASE {name}")).context("creating a database for the run")?;
    let (base, query) = server.split_once('?').map_or((server, None), |(b, q)| (b, Some(q)));
    let at = base.rfind('/').filter(|&at| at > "postgres://".len()).context("--database-url names a database")?;
    let url = format!("{}/{name}", &base[..at]);
    Ok(query.map_or(url.clone(), |q| format!("{url}?{q}")))
}

const TINY_TABLE_PG: &str = "CREATE TABLE IF NOT EXISTS t (id BIGSERIAL PRIMARY KEY, a BIGINT, b TEXT)";

/// One row per transaction from each of `connections` at once, each
/// durable before its next: PostgreSQL's commit rate (several connections
/// share its WAL flushes).
fn raw_pg_commits(url: &str, connections: usize, secs: u64) -> anyhow::Result<f64> {
    postgres::Client::connect(url, postgres::NoTls)?.batch_execute(TINY_TABLE_PG)?;
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let url = url.to_string();
            std::thread::spawn(move || -> anyhow::Result<u64> {
                let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
                let insert = client.prepare("INSERT INTO t (a, b) VALUES ($1, 'x')")?;
                let mut n = 0u64;
                while started.elapsed() < Duration::from_secs(secs) {
                    client.execute(&insert, &[&(n as i64)])?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut n = 0;
    for t in threads {
        n += t.join().map_err(|_| anyhow::anyhow!("a raw writer panicked"))??;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Rows inserted in transactions of BATCH rows, on PostgreSQL.
fn raw_pg_batched_rows(url: &str, secs: u64) -> anyhow::Result<f64> {
    let mut client = postgres::Client::connect(url, postgres::NoTls)?;
    client.batch_execute(TINY_TABLE_PG)?;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        let mut tx = client.transaction()?;
        let insert = tx.prepare("INSERT INTO t (a, b) VALUES ($1, 'x')")?;
        for _ in 0..BATCH {
            tx.execute(&insert, &[&(n as i64)])?;
            n += 1;
        }
        tx.commit()?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
