-- Account balances in parts (SPEC §11, hot accounts). Every pay-in moves
-- the platform's own accounts (assets:psp_balance, revenue:commission);
-- on PostgreSQL one balance row changed by every posting would make all
-- concurrent payments conflict on it. An account's balance is now the sum
-- of its parts: a posting adds to the part its connection owns (SQLite's
-- single writer always uses part 0; a seller's account always part 0).
CREATE TABLE ledger_balance_shards (
    account_id     INTEGER NOT NULL REFERENCES ledger_accounts(id),
    shard          INTEGER NOT NULL CHECK (shard >= 0),
    balance_minor  INTEGER NOT NULL,
    PRIMARY KEY (account_id, shard)
) STRICT;

INSERT INTO ledger_balance_shards (account_id, shard, balance_minor)
    SELECT id, 0, balance_minor FROM ledger_accounts;

ALTER TABLE ledger_accounts DROP COLUMN balance_minor;
