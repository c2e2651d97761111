-- 002_metrics.sql: evaluation results, a run heartbeat, and an index for
-- the per-run state changes (recover, release, images per minute).

-- One row per computed number (FID, precision, recall, CLIP score, ...).
-- run_id is NULL when the metric was computed outside a render run.
CREATE TABLE metrics (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       INTEGER REFERENCES runs(id),
    name         TEXT    NOT NULL CHECK (length(name) > 0),
    value        REAL,   -- NULL for NaN
    details_json TEXT,
    created_at   REAL    NOT NULL
);
CREATE INDEX metrics_name ON metrics (name, created_at);

-- Updated by every claim/finish/fail of the run: the last sign of life of a
-- master, so an operator (or a guard) can tell a dead run from a live one.
ALTER TABLE runs ADD COLUMN last_seen_at REAL;

CREATE INDEX jobs_run_status ON jobs (run_id, status);

PRAGMA user_version = 2;
