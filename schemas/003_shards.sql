-- 003_shards.sql: a run may work on one shard of the table (`run --shard I/N`: the jobs whose
-- id % N = I), so that N masters (e.g. the tasks of a Slurm job array) share one database.
-- NULL: the run works on every job.

ALTER TABLE runs ADD COLUMN shard_index INTEGER CHECK (shard_index IS NULL OR shard_index >= 0);
ALTER TABLE runs ADD COLUMN shard_count INTEGER CHECK (shard_count IS NULL OR shard_count >= 1);

PRAGMA user_version = 3;
