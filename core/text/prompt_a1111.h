/*
 * prompt_a1111.h - prompts as AUTOMATIC1111 reads them: attention weights,
 * BREAK, 75-token chunks, and <name:args> extra-network tags.
 *
 *     char *text; a1111_net *nets; int n_nets;
 *     a1111_extract_networks("a cat <lora:tiny:0.8>", &text, &nets, &n_nets, &err); // text "a cat "
 *     a1111_chunks ch;
 *     a1111_tokenize_line(tok, text, &ch, &err);  // ch.n chunks of 77 ids and multipliers
 *
 * The algorithms are A1111's (modules/prompt_parser.py parse_prompt_attention,
 * sd_hijack_clip.py tokenize_line, extra_networks.py parse_prompt), followed
 * step by step; ../shared/testdata/a1111/README.md section 1 states them.
 * Weights are doubles, as Python computes them.
 */
#ifndef SD_PROMPT_A1111_H
#define SD_PROMPT_A1111_H

#include <stdint.h>

#include "err.h"
#include "tokenizer.h"

#define A1111_CHUNK 75          /* tokens per chunk, without BOS and EOS */
#define A1111_CHUNK_IDS 77      /* ids per chunk: BOS + 75 + EOS */
#define A1111_COMMA_BACKTRACK 20 /* opts.comma_padding_backtrack */

/* One run of text with its weight; BREAK outside brackets is {"BREAK", -1}. */
typedef struct a1111_frag {
    char *text;
    double weight;
} a1111_frag;

/*
 * parse_prompt_attention: (x) x1.1, [x] /1.1, (x:w) xw, \( \) \[ \] \\ literals,
 * unclosed brackets apply to the end, equal neighbours merged. *out (free with
 * a1111_frags_free) gets *n >= 1 fragments. SD_EINPUT for a weight Python's
 * float() refuses ("(x:1.2.3)").
 */
int a1111_parse_attention(const char *text, a1111_frag **out, int *n, sd_error *err);
void a1111_frags_free(a1111_frag *f, int n);

/* The chunks of one prompt: ids and multipliers, each [n, 77]. */
typedef struct a1111_chunks {
    int n;
    int32_t *ids;
    double *mult;
} a1111_chunks;

/*
 * tokenize_line: each fragment tokenized alone, 75-token chunks with comma
 * back-tracking (a chunk that fills up with a comma among its last 20 tokens
 * moves what follows the comma to the next chunk), BREAK ends a chunk, each
 * chunk padded with EOS and wrapped in BOS/EOS. With a tokenizer whose pad
 * differs from EOS (SD 2.x), the ids after the first EOS are pads.
 */
int a1111_tokenize_line(tokenizer_bpe *tok, const char *text, a1111_chunks *out, sd_error *err);
void a1111_chunks_free(a1111_chunks *c);

/* One <type:arg1:arg2...> tag. */
typedef struct a1111_net {
    char *type;
    int n_args;
    char **args;
} a1111_net;

/*
 * Removes every <\w+:[^>]+> tag from text (the spaces around it stay) into
 * *stripped, collecting the tags in order into *nets (*n_nets; free with
 * a1111_nets_free). A "<lora:" that starts no complete tag is SD_EINPUT.
 */
int a1111_extract_networks(const char *text, char **stripped, a1111_net **nets, int *n_nets, sd_error *err);
void a1111_nets_free(a1111_net *nets, int n);

#endif
