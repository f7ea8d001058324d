//! The queue's workers, where the jobs are known: the loop claims due jobs in batches, runs at most
//! `queue.workers` at once, records each outcome, and on shutdown stops
//! claiming and lets running jobs finish (an unfinished one is picked up
//! again after its lease, on the next start).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};

use crate::context::Ctx;
use crate::db::Isolation;
use crate::queue::{self, Failed, Job, JobError, JobKind};

pub struct Runner {
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Runner {
    pub fn spawn(ctx: Ctx) -> Runner {
        let (shutdown, stop) = watch::channel(false);
        let task = tokio::spawn(run(ctx, stop));
        Runner { shutdown, task }
    }

    /// Stops claiming and waits (bounded) for running jobs.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

async fn run(ctx: Ctx, mut stop: watch::Receiver<bool>) {
    let settings = ctx.settings.queue.clone();
    let permits = Arc::new(Semaphore::new(settings.workers));
    let idle = Duration::from_millis(settings.poll_interval_ms);
    while !*stop.borrow() {
        let free = permits.available_permits() as u32;
        if free == 0 {
            tokio::select! {
                _ = permits.acquire() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        // While the storage refuses writes, claims would fail too: the
        // storage watch probes it, and the queue waits.
        if ctx.db.storage_trouble().is_some() {
            tokio::select! {
                _ = tokio::time::sleep(idle.max(Duration::from_secs(1))) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let limit = free.min(settings.batch_size);
        let lease = settings.lease_ms;
        let claimed: anyhow::Result<Vec<Job>> =
            ctx.db.write_with(Isolation::ReadCommitted, move |tx| queue::claim(tx, limit, lease)).await;
        let jobs = match claimed {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "could not claim jobs");
                Vec::new()
            }
        };
        if jobs.is_empty() {
            tokio::select! {
                _ = ctx.queue_wake.notified() => {}
                _ = tokio::time::sleep(idle) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        for job in jobs {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let ctx = ctx.clone();
            tokio::spawn(async move {
                run_one(&ctx, job).await;
                drop(permit);
            });
        }
    }
    // Let running jobs finish, within the lease they were given.
    let all = settings.workers as u32;
    let _ = tokio::time::timeout(Duration::from_millis(settings.lease_ms), permits.acquire_many(all)).await;
}

async fn run_one(ctx: &Ctx, job: Job) {
    let result = dispatch(ctx, &job).await;
    if let Ok(true) = result {
        return;
    }
    // A merchant endpoint that fails is worth a warning each time: the shop
    // misses its events until it answers (other jobs' retries are routine).
    let delivery_failed = match (&result, JobKind::parse(&job.kind)) {
        (Err(JobError::Retry(e)), Some(JobKind::DeliverWebhook)) => {
            Some((job.subject_id.clone(), job.attempts, job.max_attempts, e.clone()))
        }
        _ => None,
    };
    let mut settings = ctx.settings.queue.clone();
    if JobKind::parse(&job.kind) == Some(JobKind::DeliverWebhook) {
        settings.backoff_base_ms = ctx.settings.webhooks.backoff_base_ms;
        settings.backoff_cap_ms = ctx.settings.webhooks.backoff_cap_ms;
    }
    let recorded = ctx
        .db
        .write(move |tx| -> anyhow::Result<Option<Failed>> {
            match &result {
                Ok(_) => queue::complete(tx, &job).map(|_| None),
                Err(JobError::Retry(e)) => queue::fail(tx, &job, e, true, &settings).map(Some),
                Err(JobError::Final(e)) => queue::fail(tx, &job, e, false, &settings).map(Some),
                Err(JobError::Later { at_ms, why }) => queue::later(tx, &job, *at_ms, why).map(|_| None),
            }
        })
        .await;
    match recorded {
        Ok(Some(Failed::RetryAt(at_ms))) => {
            if let Some((delivery, attempt, max_attempts, error)) = delivery_failed {
                let in_s = (at_ms - crate::db::now_ms()).max(0) / 1000;
                tracing::warn!(delivery, attempt, max_attempts, retry_in_s = in_s, %error, "webhook delivery failed");
            }
            ctx.queue_wake.notify_one()
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = format!("{e:#}"), "could not record a job's outcome"),
    }
}

/// Runs the job's handler. `Ok(true)`: the handler already marked the job
/// done in the transaction that applied its outcome (one write saved).
async fn dispatch(ctx: &Ctx, job: &Job) -> Result<bool, JobError> {
    let done = |r: Result<(), JobError>| r.map(|()| false);
    match JobKind::parse(&job.kind) {
        Some(JobKind::ChargeOrder) => crate::payments::execute::charge_order(ctx, job).await,
        Some(JobKind::SyncCheckout) => done(crate::payments::sync::sync_checkout(ctx, &job.subject_id).await),
        Some(JobKind::DeliverWebhook) => {
            let last_try = job.attempts >= job.max_attempts;
            done(crate::events::deliver(ctx, &job.subject_id, last_try).await)
        }
        Some(JobKind::SubmitRefund) => done(crate::refunds::submit(ctx, &job.subject_id).await),
        Some(JobKind::SendPayout) => done(crate::payouts::send(ctx, &job.subject_id).await),
        Some(JobKind::SettleAuthorization) => done(crate::payments::capture::settle(ctx, &job.subject_id).await),
        Some(JobKind::SendDisputeResponse) => done(crate::disputes::send_answer(ctx, &job.subject_id).await),
        Some(JobKind::AuthorizationDeadline) => {
            done(crate::payments::capture::authorization_deadline(ctx, &job.subject_id).await)
        }
        None => Err(JobError::Final(format!("unknown job kind '{}'", job.kind))),
    }
}
