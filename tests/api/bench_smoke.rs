//! The throughput benchmark's short run, as CI runs it, so it cannot rot:
//! every scenario runs for seconds and `till check` passes after each.

use std::process::Command;

#[test]
fn the_benchmark_runs_every_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_till-bench"))
        .args(["--smoke", "--prefill-orders", "2500", "--dir"])
        .arg(dir.path().join("data"))
        .arg("--json")
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "durable single-row commits/s",
        "inserted raw into the ledger's tables",
        "ledger postings (pay-in postings with their wallet credits): ",
        "order bookings (order state and history, postings, wallets, checkout): ",
        "batched (",
        "one per write (",
        "prefilled 2500 paid orders",
        "token:",
        "hosted:",
        "token at",
    ] {
        assert!(stdout.contains(line), "the report has '{line}':\n{stdout}");
    }
    assert_eq!(stdout.matches("till check: ledger OK").count(), 8, "{stdout}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(json["raw_single_commits_per_s"].as_f64().unwrap() > 0.0);
    assert!(json["raw_batched_postings_per_s"].as_f64().unwrap() > 0.0);
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), 7);
    for r in results {
        let booked = r["scenario"] == "ledger" || r["scenario"] == "bookings";
        let rate = if booked { &r["postings_per_s"] } else { &r["completed_per_s"] };
        assert!(rate.as_f64().unwrap() > 0.0, "{r}");
        if !booked {
            assert!(r["webhooks_pending_at_window_end"].as_i64().unwrap() >= 0, "{r}");
            assert!(r["completed_per_s_until_drained"].as_f64().unwrap() <= rate.as_f64().unwrap(), "{r}");
        }
    }
}
