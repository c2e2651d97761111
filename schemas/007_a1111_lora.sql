-- 007_a1111_lora.sql: per-job prompt syntax and LoRAs (AUTOMATIC1111 prompts, kohya/PEFT LoRA files).
--
-- prompt_syntax: 'plain' (diffusers: 77 tokens, no weights) or 'a1111' (weights, BREAK, chunks, <lora:...> tags).
-- loras: the job's explicit LoRAs, one 'FILE:MULTIPLIER' per line (absolute paths); NULL for none.
-- lora_dir: where the prompt's <lora:NAME:M> tags find NAME.safetensors (absolute); NULL for none.
-- lora_set: the whole set (explicit LoRAs, then the tags), 'name:0.8, other:0.5', '' for none: claims
--           prefer the set a worker already has merged, and `status` shows it.

ALTER TABLE jobs ADD COLUMN prompt_syntax TEXT NOT NULL DEFAULT 'plain' CHECK (prompt_syntax IN ('plain', 'a1111'));
ALTER TABLE jobs ADD COLUMN loras TEXT;
ALTER TABLE jobs ADD COLUMN lora_dir TEXT;
ALTER TABLE jobs ADD COLUMN lora_set TEXT NOT NULL DEFAULT '';

-- A claim that prefers a LoRA set looks for the lowest pending id of that set.
CREATE INDEX jobs_status_lora_set_id ON jobs (status, lora_set, id);

PRAGMA user_version = 7;
