//! Scheduled jobs (tokio-cron-scheduler; cron strings with seconds from
//! `[jobs]`, an empty string disables one): alerts on unfinished orders, PSP
//! status sync of stuck work, cleanup of old idempotency keys, the ledger
//! audit. Each task is a plain async function, so tests and operators can
//! run it directly.

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
            match task(ctx).await {
                Ok(summary) => tracing::debug!(job = name, %summary, "scheduled job ran"),
                Err(e) => tracing::error!(job = name, error = format!("{e:#}"), "scheduled job failed"),
            }
        })
    })
    .map_err(|e| anyhow::anyhow!("jobs.{name}: {e}"))?;
    sched.add(job).await?;
    Ok(())
}
