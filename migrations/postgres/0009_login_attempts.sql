-- Sign-in attempts, for the login rate limit. It lives here rather than in
-- one process's memory so that every till process on this database sees
-- the same limits. An attempt has one row per bucket it counts in
-- ('acct_ip:<email>|<address>', 'ip:<address>'): reserved ('pending')
-- before its password is verified, 'failed' after a wrong one, deleted
-- after a right one. Rows older than the window no longer count and are
-- pruned as new attempts come.
CREATE TABLE login_attempts (
    attempt_id  TEXT NOT NULL,             -- random, shared by the attempt's rows
    bucket      TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'failed')),
    at_ms       BIGINT NOT NULL,          -- unix milliseconds of the reservation
    PRIMARY KEY (attempt_id, bucket)
);
CREATE INDEX login_attempts_by_bucket ON login_attempts(bucket, at_ms);
CREATE INDEX login_attempts_by_time ON login_attempts(at_ms);
