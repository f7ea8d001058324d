//! The storage watch: while the database refuses writes for want of
//! storage (`Db::storage_trouble`), it tells the operator once (the alert
//! webhook, at once; the error was logged by `db`), and keeps trying one
//! small write, the storage alert itself, every few seconds. The first
//! that succeeds ends the trouble (readiness is green again) and leaves
//! one open `storage_unavailable` alert in the dashboard: a person should
//! find out why the disk filled up. Without it a till that a load balancer
//! stopped sending requests to would never write again, so never recover.

use std::time::Duration;

use tokio::sync::watch;

use crate::context::Ctx;
use crate::jobs::tasks::{NewAlert, post_alerts};

/// The kind and subject of the alert.
pub const STORAGE_ALERT: &str = "storage_unavailable";
const SUBJECT: &str = "storage";
/// How often a write is tried while the storage is in trouble.
const PROBE_EVERY: Duration = Duration::from_secs(2);

pub struct StorageWatch {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl StorageWatch {
    pub fn spawn(ctx: Ctx) -> StorageWatch {
        let (stop, stopped) = watch::channel(false);
        StorageWatch { stop, task: tokio::spawn(run(ctx, stopped)) }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(ctx: Ctx, mut stopped: watch::Receiver<bool>) {
    // The latest episode alerted on (told to alerts.webhook_url and stored).
    let mut told = 0;
    let mut stored = 0;
    while !*stopped.borrow() {
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = stopped.changed() => return,
        }
        // An episode may have ended before this looked: it is alerted all the same.
        let Some((episode, trouble)) = ctx.db.latest_storage_trouble() else { continue };
        if episode == stored {
            continue;
        }
        let message = format!(
            "the database refused writes from {} for want of storage ({}): free disk space or fix the \
             storage; writes resumed by themselves when this alert could be stored",
            trouble.since, trouble.error
        );
        if episode != told {
            let alert = NewAlert { kind: STORAGE_ALERT, subject_id: SUBJECT.into(), message: message.clone() };
            post_alerts(&ctx, &[alert]).await;
            told = episode;
        }
        match ctx.db.write(move |tx| crate::alerts::raise_or_restate(tx, STORAGE_ALERT, SUBJECT, &message)).await {
            Ok(_) => stored = episode,
            Err(e) => tracing::debug!(error = format!("{e:#}"), "the storage still refuses writes"),
        }
    }
}
