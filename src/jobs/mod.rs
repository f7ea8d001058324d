//! Scheduled jobs (tokio-cron-scheduler; cron strings with seconds from
//! `[jobs]`, an empty string disables one): alerts on unfinished orders, PSP
//! status sync of stuck work, cleanup of old idempotency keys, the ledger
//! audit. Each task is a plain async function, so tests and operators can
//! run it directly. Among till processes sharing a database, only the one
//! holding the scheduler's lease (`lease`) runs them: each tick runs once.

pub mod lease;
pub mod storage_watch;
pub mod tasks;
pub mod worker;

use std::future::Future;

use tokio_cron_scheduler::{Job, JobScheduler};

use crate::context::Ctx;

pub struct Scheduler {
    inner: JobScheduler,
}

impl Scheduler {
    /// Starts every enabled job on the current runtime.
    pub async fn start(ctx: Ctx) -> anyhow::Result<Scheduler> {
        let inner = JobScheduler::new().await?;
        let jobs = ctx.settings.jobs.clone();
        add(&inner, &ctx, "unfinished_alert", &jobs.unfinished_alert, |c| async move {
            tasks::unfinished_alert(&c).await.map(|n| format!("{n} new alert(s)"))
        })
        .await?;
        add(&inner, &ctx, "psp_sync", &jobs.psp_sync, |c| async move {
            tasks::psp_sync(&c).await.map(|n| format!("{n} item(s) queued for a PSP sync"))
        })
        .await?;
        add(&inner, &ctx, "idempotency_cleanup", &jobs.idempotency_cleanup, |c| async move {
            tasks::idempotency_cleanup(&c).await.map(|n| format!("{n} key(s) deleted"))
        })
        .await?;
        add(&inner, &ctx, "ledger_audit", &jobs.ledger_audit, |c| async move {
            tasks::ledger_audit(&c).await.map(|ok| if ok { "ledger OK".into() } else { "ledger BROKEN".into() })
        })
        .await?;
        add(&inner, &ctx, "reconciliation", &ctx.settings.reconciliation.schedule, |c| async move {
            crate::reconciliation::reconcile_yesterday(&c)
                .await
                .map(|s| format!("run {}: {} open exception(s)", s.run.id, s.run.open_exceptions))
        })
        .await?;
        add(&inner, &ctx, "payouts", &ctx.settings.payouts.schedule, |c| async move {
            crate::payouts::pay_out_all(&c).await.map(|n| format!("{n} payout(s) created"))
        })
        .await?;
        inner.start().await?;
        Ok(Scheduler { inner })
    }

    pub async fn stop(mut self) {
        if let Err(e) = self.inner.shutdown().await {
            tracing::warn!(error = %e, "stopping the scheduler");
        }
    }
}

async fn add<F, Fut>(sched: &JobScheduler, ctx: &Ctx, name: &'static str, cron: &str, task: F) -> anyhow::Result<()>
where
    F: Fn(Ctx) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = anyhow::Result<String>> + Send + 'static,
{
    if cron.is_empty() {
        tracing::debug!(job = name, "scheduled job disabled");
        return Ok(());
    }
    let ctx = ctx.clone();
    let job = Job::new_async(cron, move |_, _| {
        let (ctx, task) = (ctx.clone(), task.clone());
        Box::pin(async move {
            if let Err(e) = run_if_leader(ctx, name, task).await {
                tracing::error!(job = name, error = format!("{e:#}"), "scheduled job could not run");
            }
        })
    })
    .map_err(|e| anyhow::anyhow!("jobs.{name}: {e}"))?;
    sched.add(job).await?;
    Ok(())
}

/// Runs a tick of `name` here if this process holds (or can take) the
/// scheduler's lease, recording the run; otherwise another process runs it.
async fn run_if_leader<F, Fut>(ctx: Ctx, name: &'static str, task: F) -> anyhow::Result<()>
where
    F: Fn(Ctx) -> Fut,
    Fut: Future<Output = anyhow::Result<String>>,
{
    let holder = ctx.process_id.clone();
    let run = ctx
        .db
        .write(move |tx| -> anyhow::Result<Option<i64>> {
            if !lease::acquire(tx, &holder)? {
                return Ok(None);
            }
            lease::start_run(tx, name, &holder)
        })
        .await?;
    let Some(run) = run else {
        tracing::debug!(job = name, "scheduled job left to the process holding the scheduler's lease");
        return Ok(());
    };
    let outcome = match task(ctx.clone()).await {
        Ok(summary) => {
            tracing::debug!(job = name, %summary, "scheduled job ran");
            summary
        }
        Err(e) => {
            tracing::error!(job = name, error = format!("{e:#}"), "scheduled job failed");
            format!("failed: {e:#}")
        }
    };
    ctx.db.write(move |tx| lease::finish_run(tx, run, &outcome)).await
}
