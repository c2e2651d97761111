-- 001_init.sql: the job table and the runs that work on it.
--
-- Times are Unix seconds (REAL, UTC). Strings are UTF-8. Applied by jobs/jobdb.c
-- inside one transaction; the file sets its own user_version last.

PRAGMA application_id = 1397965906;  -- 0x53534452, "SSDR": marks an sdrender job database

-- One row per `sdrender run` (one MPI master). `instance` is unique across all
-- runs ever made on this file; jobs name the run that last claimed them.
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    instance      TEXT    NOT NULL UNIQUE,
    model_path    TEXT,
    model_sha256  TEXT,
    settings_json TEXT,
    host          TEXT    NOT NULL,
    pid           INTEGER,
    ranks         INTEGER NOT NULL CHECK (ranks >= 1),
    started_at    REAL    NOT NULL,
    ended_at      REAL,
    end_status    TEXT    -- 'complete', 'stopped', 'error', or 'lost' (set by a later run's recovery)
);

-- One row per image to render. Everything that decides the image (prompt,
-- seed, sampler, size, ...) is fixed when the job is enqueued; the rest is
-- its state. AUTOINCREMENT: ids count from 1 in enqueue order and are never reused.
CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt          TEXT    NOT NULL CHECK (length(prompt) > 0),
    negative_prompt TEXT    NOT NULL DEFAULT '',
    seed            INTEGER NOT NULL CHECK (seed >= 0),
    steps           INTEGER NOT NULL CHECK (steps BETWEEN 1 AND 1000),
    cfg_scale       REAL    NOT NULL,
    sampler         TEXT    NOT NULL,
    karras          INTEGER NOT NULL DEFAULT 0 CHECK (karras IN (0, 1)),
    width           INTEGER NOT NULL CHECK (width > 0 AND width % 8 = 0),
    height          INTEGER NOT NULL CHECK (height > 0 AND height % 8 = 0),
    clip_skip       INTEGER NOT NULL DEFAULT 1 CHECK (clip_skip >= 1),
    init_image      TEXT,
    mask            TEXT,
    strength        REAL    CHECK (strength IS NULL OR (strength > 0 AND strength <= 1)),
    source          TEXT,   -- 'prompts.csv:17': where the row came from

    status          TEXT    NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    run_id          INTEGER REFERENCES runs(id),   -- run of the latest claim
    claimed_by      TEXT,                          -- 'host:rank' of the latest claim
    enqueued_at     REAL    NOT NULL,
    claimed_at      REAL,
    finished_at     REAL,                          -- when it became done or failed
    output_path     TEXT,
    png_sha256      TEXT,
    render_seconds  REAL,
    error           TEXT,                          -- latest error, kept after a retry succeeds
    error_at        REAL,

    CHECK (mask IS NULL OR init_image IS NOT NULL),
    CHECK (status <> 'running' OR (run_id IS NOT NULL AND claimed_by IS NOT NULL)),
    CHECK (status <> 'done' OR (output_path IS NOT NULL AND png_sha256 IS NOT NULL))
);

-- Claiming takes the lowest pending id: one index probe.
CREATE INDEX jobs_status_id ON jobs (status, id);

PRAGMA user_version = 1;
