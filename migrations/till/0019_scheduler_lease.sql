-- Several till processes may share one database; their scheduled jobs run
-- in one of them at a time: the holder of this lease, renewed while it
-- runs, taken over by another process once it has lapsed.
CREATE TABLE scheduler_lease (
    name      TEXT PRIMARY KEY,              -- 'scheduler'
    holder    TEXT NOT NULL,                 -- the process holding it (random per start)
    until_ms  INTEGER NOT NULL               -- unix milliseconds
) STRICT;

-- Each run of a scheduled job: which process ran it, when, and how it ended;
-- at most one per job and second of its tick (a tick the scheduler fires
-- twice, catching up, runs once).
CREATE TABLE scheduled_runs (
    id           INTEGER PRIMARY KEY,
    job          TEXT NOT NULL,
    tick         TEXT NOT NULL,                -- the tick's second, YYYY-MM-DDTHH:MM:SS (UTC)
    holder       TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    outcome      TEXT
) STRICT;
CREATE UNIQUE INDEX scheduled_runs_tick ON scheduled_runs(job, tick);
CREATE INDEX scheduled_runs_started ON scheduled_runs(started_at);
