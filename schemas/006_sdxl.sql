-- 006_sdxl.sql: SDXL's size conditioning (add_time_ids) per job: the original size, the crop's
-- top-left corner and the target size. 0 = diffusers' default (the image size; crop 0, 0).

ALTER TABLE jobs ADD COLUMN orig_width    INTEGER NOT NULL DEFAULT 0 CHECK (orig_width >= 0);
ALTER TABLE jobs ADD COLUMN orig_height   INTEGER NOT NULL DEFAULT 0 CHECK (orig_height >= 0);
ALTER TABLE jobs ADD COLUMN crop_top      INTEGER NOT NULL DEFAULT 0 CHECK (crop_top >= 0);
ALTER TABLE jobs ADD COLUMN crop_left     INTEGER NOT NULL DEFAULT 0 CHECK (crop_left >= 0);
ALTER TABLE jobs ADD COLUMN target_width  INTEGER NOT NULL DEFAULT 0 CHECK (target_width >= 0);
ALTER TABLE jobs ADD COLUMN target_height INTEGER NOT NULL DEFAULT 0 CHECK (target_height >= 0);

PRAGMA user_version = 6;
