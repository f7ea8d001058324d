//! Running till as an operator does: the configuration file (a missing
//! `--config` is an error, relative paths are read from its folder, other
//! `TILL_…` variables are none of till's), the logs of `till serve` (no
//! colour off a terminal, one line naming everything at start, one at
//! stop, warnings for failures), quiet commands, the port checked before
//! the database is touched, `till check` that writes nothing, and the
//! commands for staff users, API keys' last use and reconciliation.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{OnDatabase, TestApp, spawn_app, token_body, uuid};

/// `till` with only the environment a test gives it (and PATH).
fn till(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_till"));
    cmd.current_dir(cwd).args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_config_file_that_does_not_exist_is_an_error_and_creates_nothing() {
    let cwd = tempfile::tempdir().unwrap();
    let out = run(&mut till(cwd.path(), &["--config", "nonexist.toml", "api-key", "list"], &[]));
    assert!(!out.status.success(), "{out:?}");
    let said = text(&out.stderr);
    assert!(said.contains("nonexist.toml") && said.contains("does not exist"), "{said}");
    assert!(!cwd.path().join("data").exists(), "no database was created");
}

#[test]
fn relative_paths_are_read_from_the_config_files_folder_and_other_till_variables_are_ignored() {
    let (shop, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = shop.path().join("config.toml");
    std::fs::write(&config, "[database]\npath = \"data/till.db\"\n").unwrap();
    let config = config.to_str().unwrap();
    let foreign = [("TILL_BIN", "/usr/local/bin/till"), ("TILL_X", "1"), ("TILL_TEST_DATABASE", "postgres")];

    let created = run(&mut till(elsewhere.path(), &["--config", config, "api-key", "create", "--name", "k"], &foreign));
    assert!(created.status.success(), "{created:?}");
    assert!(shop.path().join("data/till.db").is_file(), "the database is beside the configuration file");
    assert!(!elsewhere.path().join("data").exists(), "not in the working directory");
    // A command prints its result, and nothing on stderr unless -v.
    assert!(text(&created.stdout).contains("created API key"));
    assert_eq!(text(&created.stderr), "", "a quiet command");

    let listed = run(&mut till(shop.path(), &["--config", "config.toml", "api-key", "list"], &[]));
    assert!(text(&listed.stdout).contains("  k  "), "the same database from its own folder: {listed:?}");

    // -v logs at log.level, and the migration line names the database.
    let fresh = tempfile::tempdir().unwrap();
    std::fs::write(fresh.path().join("config.toml"), "").unwrap();
    let verbose = run(&mut till(fresh.path(), &["-v", "migrate"], &[]));
    let logged = text(&verbose.stderr);
    assert!(verbose.status.success(), "{verbose:?}");
    assert!(logged.contains("database migrated") && logged.contains("data/till.db"), "{logged}");
    assert!(!logged.contains('\u{1b}'), "no colour when stderr is not a terminal: {logged:?}");
}

#[test]
fn without_a_config_file_the_defaults_are_used_and_said() {
    let cwd = tempfile::tempdir().unwrap();
    let out = run(&mut till(cwd.path(), &["migrate"], &[]));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout).trim(), "database SQLite data/till.db is migrated");
    assert!(cwd.path().join("data/till.db").is_file());
}

#[test]
fn a_port_in_use_stops_till_before_it_creates_a_database() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = taken.local_addr().unwrap().to_string();
    let cwd = tempfile::tempdir().unwrap();
    let out = run(&mut till(cwd.path(), &["serve"], &[("TILL_SERVER__BIND", &bind)]));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("server.bind"), "{out:?}");
    assert!(!cwd.path().join("data").exists(), "nothing was created or migrated");
}

#[test]
fn till_check_writes_nothing_and_runs_on_read_only_storage() {
    let outer = tempfile::tempdir().unwrap();
    let data = outer.path().join("data");
    let Some(disk) = crate::ops_storage::TinyDisk::mount(&data, "8m") else { return };
    let env = [("TILL_DATABASE__PATH", data.join("till.db"))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.to_str().unwrap())).collect();
    assert!(run(&mut till(outer.path(), &["migrate"], &env)).status.success());
    // The files and their bytes; SQLite's shared-memory index (-shm) is
    // written by readers too (their read marks): its name only.
    let files = || {
        let mut names: Vec<(String, Vec<u8>)> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                let bytes = if name.ends_with("-shm") { Vec::new() } else { std::fs::read(&p).unwrap() };
                (name, bytes)
            })
            .collect();
        names.sort();
        names
    };
    let before = files();
    let checked = run(&mut till(outer.path(), &["check"], &env));
    assert!(checked.status.success(), "{checked:?}");
    assert!(before == files(), "till check changed or created no file");

    disk.remount_read_only();
    let checked = run(&mut till(outer.path(), &["check"], &env));
    assert!(checked.status.success(), "till check on a read-only file system: {checked:?}");
    let write = run(&mut till(outer.path(), &["api-key", "create", "--name", "k"], &env));
    let said = text(&write.stderr);
    assert!(!write.status.success());
    assert!(said.contains("is not writable") && said.contains(data.to_str().unwrap()), "{said}");
}

/// `till serve`'s stderr, line by line, as it comes.
struct Served {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Served {
    fn start(cwd: &Path) -> Served {
        let mut child = till(cwd, &["--config", "config.toml", "serve"], &[])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Served { child, lines }
    }

    async fn wait_for(&self, what: &str) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.lines.lock().unwrap().iter().find(|l| l.contains(what)) {
                return line.clone();
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no '{what}' in {:#?}", self.lines.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn all(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// The value of `key=` in a log line (up to the next space).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line.find(&format!(" {key}=")).map(|i| i + key.len() + 2).unwrap_or_else(|| panic!("{key}: {line}"));
    line[start..].split(' ').next().unwrap().trim_matches('"')
}

#[tokio::test]
async fn serve_logs_one_start_line_warnings_for_failures_and_one_stop_line_without_colour() {
    let cwd = tempfile::tempdir().unwrap();
    let config = "[server]\nbind = \"127.0.0.1:0\"\n[sandbox]\nbind = \"127.0.0.1:0\"\nwebhook_retry_base_ms = 50\n\
                  [metrics]\nbind = \"127.0.0.1:0\"\n[webhooks]\nallow_private_urls = true\nbackoff_base_ms = 50\n\
                  backoff_cap_ms = 100\n[queue]\nbackoff_base_ms = 20\nbackoff_cap_ms = 100\n";
    std::fs::write(cwd.path().join("config.toml"), config).unwrap();
    let key = run(&mut till(cwd.path(), &["--config", "config.toml", "api-key", "create", "--name", "shop"], &[]));
    let key = text(&key.stdout).lines().last().unwrap().to_string();

    let served = Served::start(cwd.path());
    let start = served.wait_for("till is listening").await;
    assert!(start.contains(" INFO "), "{start}");
    assert_eq!(field(&start, "config"), "config.toml");
    assert!(start.contains("database=SQLite data/till.db"), "{start}");
    let api = field(&start, "api").to_string();
    assert!(api.starts_with("http://127.0.0.1:") && api.ends_with("/v1"), "{start}");
    assert!(field(&start, "dashboard").ends_with("/admin"), "{start}");
    assert!(field(&start, "hosted_pages").starts_with("http://127.0.0.1:"), "{start}");
    assert!(field(&start, "metrics").ends_with("/metrics"), "{start}");
    let at_start = served.all();
    assert!(at_start.iter().all(|l| !l.contains('\u{1b}')), "no colour in a pipe: {at_start:#?}");
    let info: Vec<&String> = at_start.iter().filter(|l| l.contains(" INFO ")).collect();
    assert!(info.len() <= 3, "the start is the migrations and one line: {info:#?}");
    assert!(info.iter().filter(|l| l.contains("database migrated")).all(|l| l.contains("database=")), "{info:#?}");

    // A merchant endpoint that refuses, and a refund the PSP fails: warnings.
    let client = reqwest::Client::new();
    let base = api.trim_end_matches("/v1");
    let post = |path: &str, body: Value| {
        client.post(format!("{base}{path}")).bearer_auth(&key).header("Idempotency-Key", uuid()).json(&body).send()
    };
    let endpoint = json!({"url": "http://127.0.0.1:9/hooks", "enabled_events": ["payment_order.succeeded"]});
    assert_eq!(post("/v1/webhook_endpoints", endpoint).await.unwrap().status(), StatusCode::CREATED);
    let paid = post("/v1/payments", token_body("pm_card_visa", &[("seller_a", "25.00", "USD")])).await.unwrap();
    let paid: Value = paid.json().await.unwrap();
    let order = paid["orders"][0]["payment_order_id"].as_str().unwrap().to_string();
    let started = Instant::now();
    loop {
        let o: Value = client
            .get(format!("{base}/v1/payments/{order}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if o["status"] == "SUCCESS" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{o}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed_delivery = served.wait_for("webhook delivery failed").await;
    assert!(failed_delivery.contains(" WARN "), "{failed_delivery}");
    let refund = post(&format!("/v1/payments/{order}/refunds"), json!({"amount": "0.13"})).await.unwrap();
    assert_eq!(refund.status(), StatusCode::CREATED);
    let alerted = served.wait_for("refund_failed").await;
    assert!(alerted.contains(" WARN ") && alerted.contains("alert raised"), "{alerted}");

    // Stopped as a service manager stops it: one line.
    let pid = served.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let stop = served.wait_for("till stopped").await;
    assert!(stop.contains(" INFO ") && stop.contains("uptime_s="), "{stop}");
    let mut served = served;
    assert!(served.child.wait().unwrap().success());
    let scheduler_at_info = served.all().into_iter().filter(|l| l.contains(" INFO ") && l.contains("job")).count();
    assert_eq!(scheduler_at_info, 0, "scheduler lines are DEBUG: {:#?}", served.all());
}

fn till_on(app: &TestApp, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_till"));
    cmd.args(["--config", crate::helpers::empty_config()]).args(args).on_database(&app.settings.database);
    cmd.env("TILL_PSP__API_BASE", &app.sandbox);
    cmd
}

fn with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

async fn signs_in(app: &TestApp, email: &str, password: &str) -> bool {
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap();
    let page = client.get(format!("{}/admin/login", app.address)).send().await.unwrap().text().await.unwrap();
    let csrf = crate::admin::field(&page, "csrf").unwrap();
    let form = [("email", email), ("password", password), ("csrf", &csrf), ("next", "/admin")];
    let resp = client.post(format!("{}/admin/login", app.address)).form(&form).send().await.unwrap();
    resp.status() == StatusCode::SEE_OTHER && resp.headers()["location"] == "/admin"
}

#[tokio::test]
async fn staff_users_are_listed_disabled_and_given_new_passwords() {
    let app = spawn_app().await;
    for email in ["kim@example.com", "lee@example.com"] {
        let created = with_stdin(till_on(&app, &["user", "create", "--email", email]), "a long enough password\n");
        assert!(created.status.success(), "{created:?}");
    }
    assert!(signs_in(&app, "kim@example.com", "a long enough password").await);

    let disabled = run(&mut till_on(&app, &["user", "disable", "--email", "kim@example.com"]));
    assert!(disabled.status.success(), "{disabled:?}");
    assert!(!signs_in(&app, "kim@example.com", "a long enough password").await, "a disabled user cannot sign in");
    let listed = text(&run(&mut till_on(&app, &["user", "list"])).stdout);
    let kim = listed.lines().find(|l| l.starts_with("kim@example.com")).unwrap();
    let lee = listed.lines().find(|l| l.starts_with("lee@example.com")).unwrap();
    assert!(listed.starts_with("EMAIL") && kim.contains("disabled") && lee.contains("active"), "{listed}");

    let reset =
        with_stdin(till_on(&app, &["user", "reset-password", "--email", "lee@example.com"]), "another password 2\n");
    assert!(reset.status.success(), "{reset:?}");
    assert!(!signs_in(&app, "lee@example.com", "a long enough password").await, "the old password is gone");
    assert!(signs_in(&app, "lee@example.com", "another password 2").await);

    let nobody = run(&mut till_on(&app, &["user", "disable", "--email", "nobody@example.com"]));
    assert_eq!(nobody.status.code(), Some(1));
    assert!(text(&nobody.stderr).contains("no staff user nobody@example.com"), "{nobody:?}");
}

#[tokio::test]
async fn api_key_list_shows_when_each_key_was_last_used() {
    let app = spawn_app().await;
    let list = || text(&run(&mut till_on(&app, &["api-key", "list"])).stdout);
    let before = list();
    assert!(before.starts_with("ID") && before.contains("LAST USED"), "{before}");
    assert!(before.lines().nth(1).unwrap().contains("never"), "{before}");
    assert_eq!(app.get("/v1/payments").await.status(), StatusCode::OK);
    let started = Instant::now();
    while list().lines().nth(1).unwrap().contains("never") {
        assert!(started.elapsed() < Duration::from_secs(10), "the key's use was never recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn till_reconcile_exits_3_when_it_opened_exceptions() {
    let app = spawn_app().await;
    let csv = crate::reconciliation::crafted(&[(
        "txn_x",
        "charge",
        "usd",
        "99.00",
        "3.17",
        "95.83",
        "ch_x",
        "pi_unknown",
        &uuid(),
        "",
    )]);
    let file = app.dir.path().join("report.csv");
    std::fs::write(&file, csv).unwrap();
    let out = run(&mut till_on(&app, &["reconcile", file.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(text(&out.stdout).contains("missing_in_till    1"), "{out:?}");
    let again = run(&mut till_on(&app, &["reconcile", file.to_str().unwrap()]));
    assert_eq!(again.status.code(), Some(0), "a file imported before changes nothing: {again:?}");
}

#[tokio::test]
async fn the_api_says_what_is_wrong_in_its_own_words() {
    let app = spawn_app().await;
    let wrong_method = app.client.delete(format!("{}/v1/payments", app.address)).send().await.unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.headers()["allow"], "GET, POST");

    let bad_status: Value = app.get("/v1/payments?status=PAID").await.json().await.unwrap();
    let message = bad_status["error"]["message"].as_str().unwrap();
    assert!(message.contains("NOT_STARTED, EXECUTING, AUTHORIZED, SUCCESS, FAILED"), "{message}");

    let unknown: Value = app.get("/v1/payments?created_gte=").await.json().await.unwrap();
    assert_eq!(unknown["error"]["param"], "created_gte", "{unknown}");
    assert!(!unknown.to_string().contains("deserialize"), "{unknown}");
    assert!(unknown["error"]["message"].as_str().unwrap().contains("'limit'"), "{unknown}");

    let body = token_body("pm_card_visa", &[("seller_a", "-5.00", "USD")]);
    let negative: Value = app.post_payment(&body).await.json().await.unwrap();
    assert_eq!(negative["error"]["message"], "orders[0].amount must be greater than zero", "{negative}");
}

#[tokio::test]
async fn the_overview_counts_payments_in_words() {
    let app = spawn_app().await;
    app.paid_checkout(&[("seller_a", "25.00", "USD")]).await;
    app.paid_checkout(&[("seller_a", "5.00", "USD")]).await;
    app.paid_checkout(&[("seller_b", "7.00", "EUR")]).await;
    let browser = crate::admin::sign_in(&app).await;
    let overview = browser.page("/admin").await;
    assert!(overview.contains("2 payments in USD") && overview.contains("1 payment in EUR"), "{overview}");
    assert!(!overview.contains("payment(s)"));
}
