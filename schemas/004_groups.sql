-- 004_groups.sql: worker groups (`run --tp K`): K ranks render each image together, sharing the
-- U-Net by a strategy ('cfg' or 'tensor'; see core/pipeline/group.h). Runs before this: 1, NULL.

ALTER TABLE runs ADD COLUMN group_size INTEGER NOT NULL DEFAULT 1 CHECK (group_size >= 1);
ALTER TABLE runs ADD COLUMN parallel TEXT CHECK (parallel IS NULL OR parallel IN ('cfg', 'tensor'));

PRAGMA user_version = 4;
