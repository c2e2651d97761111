-- 005_ext.sql: jobs for the models beyond SD 1.x/2.x txt2img/img2img/inpainting.
--
--   task         'generate' (txt2img, img2img, inpainting, and unconditional sampling), or 'upscale'
--                (x4 super-resolution of init_image; width/height are the output size, 4x the picture)
--   rng          'cpu': torch's CPU generator (as before); 'cuda': CUDA's Philox stream (A1111 "NV")
--   noise_level  upscale: the noise added to the low-res picture (0..350)
-- and two constraints of 001 are relaxed: the prompt may be empty (an unconditional model, e.g. a
-- pixel-space DDPM, takes none; a run with a text-conditioned model fails such jobs with a clear
-- error), and sizes need not be multiples of 8 (VAE factors 4 and 16, the upscaler's 4x outputs;
-- the renderer checks each size against its model). SQLite cannot change a CHECK in place, so the
-- table is rebuilt with the same ids, rows and AUTOINCREMENT sequence.

CREATE TABLE jobs_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt          TEXT    NOT NULL,
    negative_prompt TEXT    NOT NULL DEFAULT '',
    seed            INTEGER NOT NULL CHECK (seed >= 0),
    steps           INTEGER NOT NULL CHECK (steps BETWEEN 1 AND 1000),
    cfg_scale       REAL    NOT NULL,
    sampler         TEXT    NOT NULL,
    karras          INTEGER NOT NULL DEFAULT 0 CHECK (karras IN (0, 1)),
    width           INTEGER NOT NULL CHECK (width > 0),
    height          INTEGER NOT NULL CHECK (height > 0),
    clip_skip       INTEGER NOT NULL DEFAULT 1 CHECK (clip_skip >= 1),
    init_image      TEXT,
    mask            TEXT,
    strength        REAL    CHECK (strength IS NULL OR (strength > 0 AND strength <= 1)),
    source          TEXT,

    status          TEXT    NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    run_id          INTEGER REFERENCES runs(id),
    claimed_by      TEXT,
    enqueued_at     REAL    NOT NULL,
    claimed_at      REAL,
    finished_at     REAL,
    output_path     TEXT,
    png_sha256      TEXT,
    render_seconds  REAL,
    error           TEXT,
    error_at        REAL,

    task            TEXT    NOT NULL DEFAULT 'generate' CHECK (task IN ('generate', 'upscale')),
    rng             TEXT    NOT NULL DEFAULT 'cpu' CHECK (rng IN ('cpu', 'cuda')),
    noise_level     INTEGER CHECK (noise_level IS NULL OR noise_level BETWEEN 0 AND 350),

    CHECK (mask IS NULL OR init_image IS NOT NULL),
    CHECK (task <> 'upscale' OR (init_image IS NOT NULL AND mask IS NULL AND noise_level IS NOT NULL)),
    CHECK (status <> 'running' OR (run_id IS NOT NULL AND claimed_by IS NOT NULL)),
    CHECK (status <> 'done' OR (output_path IS NOT NULL AND png_sha256 IS NOT NULL))
);

INSERT INTO jobs_new (id, prompt, negative_prompt, seed, steps, cfg_scale, sampler, karras, width, height,
                      clip_skip, init_image, mask, strength, source, status, attempts, run_id, claimed_by,
                      enqueued_at, claimed_at, finished_at, output_path, png_sha256, render_seconds, error, error_at)
SELECT id, prompt, negative_prompt, seed, steps, cfg_scale, sampler, karras, width, height,
       clip_skip, init_image, mask, strength, source, status, attempts, run_id, claimed_by,
       enqueued_at, claimed_at, finished_at, output_path, png_sha256, render_seconds, error, error_at
FROM jobs;

-- keep the id sequence (ids are never reused, even past deleted rows)
DELETE FROM sqlite_sequence WHERE name = 'jobs_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'jobs_new', seq FROM sqlite_sequence WHERE name = 'jobs';

DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_status_id ON jobs (status, id);
CREATE INDEX jobs_run_status ON jobs (run_id, status);

PRAGMA user_version = 5;
