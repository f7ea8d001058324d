//! A full disk: till's SQLite database on a 6 MiB file system that fills
//! up. Writes answer `503 storage_unavailable` with `Retry-After`,
//! `/readyz` fails while `/healthz` (liveness) still answers, and once
//! space is freed, without a restart, readiness returns, one alert says
//! what happened, and every payment answered 201 before completes.
//! SQLite only (PostgreSQL's disk is the server's), and it mounts a tmpfs:
//! skipped, saying so, where it cannot (not root, no mount).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_app_with, test_postgres, token_body};

/// A small tmpfs, unmounted when dropped.
pub struct TinyDisk(PathBuf);

impl TinyDisk {
    pub fn mount(at: &Path, size: &str) -> Option<TinyDisk> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(at).output();
        match out {
            Ok(o) if o.status.success() => Some(TinyDisk(at.to_path_buf())),
            Ok(o) => {
                eprintln!("SKIPPED ops_storage: cannot mount a tmpfs ({})", String::from_utf8_lossy(&o.stderr).trim());
                None
            }
            Err(e) => {
                eprintln!("SKIPPED ops_storage: no mount command ({e})");
                None
            }
        }
    }
}

impl TinyDisk {
    /// Makes the file system read-only (as a failing disk's often turns).
    pub fn remount_read_only(&self) {
        let out = Command::new("mount").args(["-o", "remount,ro"]).arg(&self.0).output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system with one file until it refuses more; returns it.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    while file.write_all(&chunk).and_then(|()| file.sync_data()).is_ok() {}
    // The last bytes, a block at a time.
    while file.write_all(&chunk[..512]).and_then(|()| file.sync_data()).is_ok() {}
    path
}

#[tokio::test]
async fn a_full_disk_answers_503_fails_readiness_and_recovers_without_losing_a_payment() {
    if test_postgres().is_some() {
        eprintln!("SKIPPED ops_storage on PostgreSQL: the full disk is SQLite's");
        return;
    }
    let outer = tempfile::tempdir().unwrap();
    let data = outer.path().join("data");
    let Some(_disk) = TinyDisk::mount(&data, "6m") else { return };
    let db_path = data.join("till.db");
    let app = spawn_app_with(|s| {
        s.database.path = db_path.clone();
        // A job whose outcome could not be stored is handed on after its lease.
        s.queue.lease_ms = 20_000;
    })
    .await;
    let post = |n: usize| {
        let body = token_body("pm_card_visa", &[("seller_a", &format!("{}.00", 1 + n % 9), "USD")]);
        let checkout_id = body["checkout_id"].as_str().unwrap().to_string();
        let app = &app;
        async move { (checkout_id, app.post_payment(&body).await) }
    };
    let mut answered_201 = Vec::new();
    for n in 0..5 {
        let (checkout_id, resp) = post(n).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        answered_201.push(checkout_id);
    }

    // Arrange: no room left. Act: payments until one is refused, readiness
    // fails, and the next is refused too. A small write can still fit in
    // space SQLite has already allocated (a WAL it reuses), and any write
    // that commits ends the trouble, so the sequence is looked for, not
    // assumed from the first refusal.
    let filler = fill(&data);
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(60), "no write failed on a full disk");
        let (checkout_id, resp) = post(answered_201.len()).await;
        match resp.status() {
            StatusCode::CREATED => {
                answered_201.push(checkout_id);
                continue;
            }
            StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!("a payment on a full disk answered {other}: {}", resp.text().await.unwrap()),
        }
        assert_eq!(resp.headers()["retry-after"], "5");
        let error: Value = resp.json().await.unwrap();
        assert_eq!(error["error"]["code"], "storage_unavailable", "{error}");
        assert!(!error.to_string().contains("disk is full"), "no internals: {error}");
        let ready = app.client.get(format!("{}/readyz", app.address)).send().await.unwrap();
        if ready.status() != StatusCode::SERVICE_UNAVAILABLE {
            continue; // another write fitted meanwhile: the storage took it
        }
        let live = app.client.get(format!("{}/healthz", app.address)).send().await.unwrap();
        assert_eq!(live.status(), StatusCode::OK, "alive all the same: a restart would not help");
        let (checkout_id, again) = post(answered_201.len()).await;
        match again.status() {
            StatusCode::SERVICE_UNAVAILABLE => break, // still refused while the disk is full
            StatusCode::CREATED => answered_201.push(checkout_id),
            other => panic!("a payment on a full disk answered {other}"),
        }
    }

    // Space comes back: readiness within a few probes, no restart.
    std::fs::remove_file(&filler).unwrap();
    let started = Instant::now();
    while app.client.get(format!("{}/readyz", app.address)).send().await.unwrap().status() != StatusCode::OK {
        assert!(started.elapsed() < Duration::from_secs(20), "readiness never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, after) = post(answered_201.len()).await;
    assert_eq!(after.status(), StatusCode::CREATED);

    // Assert: every payment answered 201 ends SUCCESS; one alert tells the story.
    let started = Instant::now();
    for checkout_id in &answered_201 {
        loop {
            let checkout = app.get_json(&format!("/v1/checkouts/{checkout_id}")).await;
            if checkout["orders"].as_array().unwrap().iter().all(|o| o["status"] == "SUCCESS") {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(90), "{checkout_id} never succeeded: {checkout}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let alerts = || app.count("SELECT COUNT(*) FROM alerts WHERE kind = 'storage_unavailable' AND status = 'open'");
    let started = Instant::now();
    while alerts() == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "no alert was stored once space came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(alerts(), 1, "one alert for the episode");
}
