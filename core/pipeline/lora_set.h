/*
 * lora_set.h - which LoRAs an image uses, and a model that carries them.
 *
 *     sd_lora_set set;
 *     sd_lora_set_build(&set, "style.safetensors:0.8", "a cat <lora:ink:0.5>", SD_PROMPT_A1111, "loras", &err);
 *     sd_lora_ctx c;
 *     sd_lora_ctx_init(&c, &model);
 *     char *hashes;                       // "style: 0123456789ab, ink: ba9876543210"
 *     sd_lora_ctx_apply(&c, &set, &hashes, &err);   // merges unless the model already carries this set
 *     ... render with settings.lora_hashes = hashes ...
 *     sd_lora_ctx_free(&c);               // base weights again
 *
 * A set is the explicit LoRAs ("FILE[:MULTIPLIER]" entries, one per line;
 * multiplier 1 by default) followed, with A1111 prompt syntax, by the
 * prompt's <lora:NAME:MULTIPLIER[:UNET_MULTIPLIER]> tags (also te=, unet=),
 * NAME resolved as LORA_DIR/NAME.safetensors. A tag's first multiplier
 * applies to the text encoder and, without a second one, to the U-Net too
 * (A1111). Other <type:...> tags are refused. The order is kept: LoRAs on the
 * same module add up in it, so one set always gives the same weights.
 *
 * The context keeps one merged set on the model: applying the same set again
 * costs nothing; another set first restores the base weights exactly
 * (sd_lora_unmerge), then merges. Opened files stay cached by path.
 */
#ifndef SD_LORA_SET_H
#define SD_LORA_SET_H

#include "err.h"
#include "lora.h"
#include "model.h"
#include "settings.h"

typedef struct sd_lora_use {
    char *path;      /* file */
    char *alias;     /* the tag's NAME, or the file name without .safetensors */
    double te, unet; /* multipliers */
    int from_tag;    /* named by a <lora:...> tag (messages say "unknown LoRA NAME") */
} sd_lora_use;

typedef struct sd_lora_set {
    int n;
    sd_lora_use *u;
} sd_lora_set;

/* One "FILE[:MULTIPLIER]" (a trailing ":number" is the multiplier) into u. */
int sd_lora_use_parse(const char *spec, sd_lora_use *u, sd_error *err);
void sd_lora_use_free(sd_lora_use *u);
/* "PATH:MULTIPLIER" with the shortest multiplier text that reads back exactly ("x.safetensors:0.8"); caller frees. */
char *sd_lora_spec_format(const char *path, double mult);

/*
 * The set of an image: specs (lines of FILE[:MULTIPLIER]; NULL or "" for none),
 * then the tags of prompt when syntax is A1111 (lora_dir may be NULL when the
 * prompt has none). Files are not opened here. SD_EINPUT for a malformed
 * spec or tag, a tag without lora_dir, or another extra-network type.
 */
int sd_lora_set_build(sd_lora_set *set, const char *specs, const char *prompt, sd_prompt_syntax syntax,
                      const char *lora_dir, sd_error *err);
void sd_lora_set_free(sd_lora_set *set);

/* "alias:0.8, other:0.5:1" (multipliers as given; "" for an empty set); caller frees. */
char *sd_lora_set_label(const sd_lora_set *set);

typedef struct sd_lora_ctx {
    sd_model *m;
    int n_files;
    sd_lora *files;
    char *key;       /* the set merged now ("" or NULL: the base weights) */
    sd_lora_patch patch;
    int merges;      /* how many times a non-empty set was merged */
} sd_lora_ctx;

void sd_lora_ctx_init(sd_lora_ctx *c, sd_model *m);

/*
 * Makes c->m carry exactly set. *hashes (may be NULL) gets A1111's "Lora
 * hashes" value for the PNG ("alias: <12 hex digits>, ..."; NULL for an
 * empty set; caller frees). On failure the model has its base weights.
 */
int sd_lora_ctx_apply(sd_lora_ctx *c, const sd_lora_set *set, char **hashes, sd_error *err);

/* Restores the base weights and closes the files. */
void sd_lora_ctx_free(sd_lora_ctx *c);

#endif
