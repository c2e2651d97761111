/*
 * tokenizer.h - CLIP's byte-level BPE tokenizer (prompt text -> token ids).
 *
 * Behaves exactly like OpenAI CLIP's SimpleTokenizer (which transformers'
 * CLIPTokenizer follows when ftfy is installed), apart from the parts of
 * ftfy.fix_text that core/text/ftfy.h does not cover: see
 * core/text/tokenizer_text.h for the text cleanup and how invalid UTF-8 is
 * handled (replaced by U+FFFD, never an error).
 *
 *     tokenizer_bpe *tok;
 *     if (tokenizer_load_dir(&tok, "model/tokenizer", &err) < 0) ...;
 *     int32_t ids[77];
 *     int n;
 *     if (tokenizer_encode_padded(tok, "a photo of a cat", ids, 77, &n, &err) < 0) ...;
 *     // ids = [49406, 320, 1125, 539, 320, 2368, 49407, 49407, ...]; n = 5 BPE tokens
 *     tokenizer_free(tok);
 *
 * Encoding, one word at a time: the word's UTF-8 bytes become GPT-2's byte
 * symbols (bytes_to_unicode), the last one gets "</w>", then the adjacent pair
 * with the lowest merge rank is merged (every occurrence, left to right) until
 * no ranked pair is left. Words are cached, so repeated words cost one hash
 * lookup. A tokenizer may be shared by threads: the cache has a lock.
 *
 * Sources: a diffusers/transformers tokenizer folder (vocab.json, merges.txt,
 * special_tokens_map.json / tokenizer_config.json), OpenAI's
 * bpe_simple_vocab_16e6.txt.gz, or the project's own small vocabulary
 * (tokenizer_build_tiny) for models made without downloads. Like
 * transformers' CLIPTokenizer, at most 48894 merges are used (the rest of a
 * longer merges file is ignored). The vocabulary may have any size; the
 * special tokens are found by their strings.
 */
#ifndef SD_TOKENIZER_H
#define SD_TOKENIZER_H

#include <stdint.h>

#include "err.h"

typedef struct tokenizer_bpe tokenizer_bpe;

/* The most merges CLIP's tokenizers read: 49152 - 256 - 2 (lines 1..48894 after the header). */
#define TOKENIZER_MAX_MERGES 48894

/*
 * Loads a tokenizer folder: vocab.json (token -> id, ids 0..N-1),
 * merges.txt ("#version" line, then "a b" per line, rank = line order) and
 * the optional special_tokens_map.json / tokenizer_config.json, which name
 * bos/eos/unk/pad tokens (strings or {"content": ...}; special_tokens_map
 * wins; defaults "<|startoftext|>", "<|endoftext|>", "<|endoftext|>",
 * "<|endoftext|>"). Every error names the file and the line or token.
 */
int tokenizer_load_dir(tokenizer_bpe **out, const char *dir, sd_error *err);

/*
 * Loads OpenAI's bpe_simple_vocab_16e6.txt.gz (gzip, or plain text) and
 * builds the vocabulary as SimpleTokenizer does: the 256 byte symbols, the
 * same with "</w>", merges 1..48894 joined, "<|startoftext|>",
 * "<|endoftext|>". Pads with "<|endoftext|>" (SD 1.x); see tokenizer_set_pad.
 */
int tokenizer_load_openai_gz(tokenizer_bpe **out, const char *path, sd_error *err);

/*
 * Builds the project's own small byte-level BPE vocabulary: up to max_merges
 * merges learned deterministically from a built-in English text (always the
 * same result for the same max_merges; learning stops early when no pair
 * occurs twice: 400 asked gives 357 merges, 871 tokens), plus the 512 byte
 * symbols and the two special tokens. Pads with "<|endoftext|>". For models
 * made without any downloaded file; save it with tokenizer_save_dir and size
 * the text encoder's embedding with tokenizer_vocab_size.
 */
int tokenizer_build_tiny(tokenizer_bpe **out, int max_merges, sd_error *err);

/*
 * Writes tok as a tokenizer folder (created if needed) that
 * tokenizer_load_dir reads back to an identical tokenizer: vocab.json,
 * merges.txt, special_tokens_map.json, tokenizer_config.json.
 */
int tokenizer_save_dir(const tokenizer_bpe *tok, const char *dir, sd_error *err);

void tokenizer_free(tokenizer_bpe *tok);

/*
 * Pads with the token whose string is `token` from now on (e.g. "!" for
 * SD 2.x, "<|endoftext|>" for SD 1.x); fails when the vocabulary lacks it.
 */
int tokenizer_set_pad(tokenizer_bpe *tok, const char *token, sd_error *err);

/*
 * The BPE ids of a NUL-terminated UTF-8 prompt: no bos/eos, not truncated.
 * *ids (caller frees; NULL when *n == 0) gets *n ids. Prompts over 1 MiB
 * are refused (SD_EINPUT).
 */
int tokenizer_encode(tokenizer_bpe *tok, const char *text, int32_t **ids, int *n, sd_error *err);

/*
 * What the text encoder takes: ids[0..max_len) = bos, the first max_len - 2
 * BPE ids, eos, then the pad id up to max_len (77 for Stable Diffusion).
 * *n_tokens (may be NULL) gets the number of BPE ids before truncation, so
 * callers can warn when it exceeds max_len - 2. max_len must be >= 2.
 */
int tokenizer_encode_padded(tokenizer_bpe *tok, const char *text, int32_t *ids, int max_len, int *n_tokens,
                            sd_error *err);

/*
 * Text of ids as SimpleTokenizer.decode gives it: byte symbols back to bytes,
 * invalid UTF-8 replaced by U+FFFD, every "</w>" turned into a space
 * ("a photo</w>" -> "a photo "). *text is NUL-terminated; caller frees.
 */
int tokenizer_decode(const tokenizer_bpe *tok, const int32_t *ids, int n, char **text, sd_error *err);

int tokenizer_vocab_size(const tokenizer_bpe *tok);
/* Number of merges in use (their ranks are 0..n-1 in the order saved). */
int tokenizer_merges_count(const tokenizer_bpe *tok);
int32_t tokenizer_bos_id(const tokenizer_bpe *tok);
int32_t tokenizer_eos_id(const tokenizer_bpe *tok);
int32_t tokenizer_pad_id(const tokenizer_bpe *tok);
/* The token string of id (byte symbols, e.g. "photograph</w>"), or NULL when id is out of range. */
const char *tokenizer_token(const tokenizer_bpe *tok, int32_t id);
/* The id of a token string, or -1. */
int32_t tokenizer_token_id(const tokenizer_bpe *tok, const char *token);

#endif
