/*
 * tokenizer_tiny.c - the project's own small BPE vocabulary, for models made
 * without any downloaded file ("init-model --tiny").
 *
 * Merges are learned the classic way from the built-in text below: split it
 * into words exactly as prompts are split (tokenizer_text.h), count every
 * adjacent symbol pair (weighted by word frequency), merge the most frequent
 * pair everywhere, repeat. Ties go to the pair whose two token strings sort
 * first (byte order), so the result depends only on the text and max_merges.
 * Learning stops early when no pair occurs twice.
 */
#include <stdlib.h>
#include <string.h>

#include "strmap.h"
#include "tokenizer_impl.h"
#include "tokenizer_text.h"
#include "unicode.h"

/* Written for this project: prompt-like English covering common subjects, styles and words. */
static const char tiny_corpus[] =
    "a photograph of an astronaut riding a horse on the moon, highly detailed, sharp focus\n"
    "a painting of a red fox sitting in the snow by a famous artist, oil on canvas\n"
    "a portrait of an old man with a long white beard, soft light, studio lighting\n"
    "a beautiful landscape with mountains, a lake and a forest at sunset, golden hour\n"
    "a small house in the countryside with a garden full of flowers, spring morning\n"
    "a cat sleeping on a window sill in the afternoon sun, warm colors, cozy room\n"
    "a dog running on the beach, waves in the background, blue sky, summer day\n"
    "the city at night with neon lights and rain on the street, reflections, cinematic\n"
    "an ancient castle on a cliff above a stormy sea, dramatic clouds, epic scene\n"
    "a bowl of fruit on a wooden table, still life, natural light, photorealistic\n"
    "a red cube on top of a blue sphere, simple shapes, clean background, render\n"
    "a young woman reading a book in a library, warm light, shallow depth of field\n"
    "a bird flying over the ocean at dawn, wide angle, high quality photo\n"
    "a futuristic city with tall buildings and flying cars, science fiction concept art\n"
    "a watercolor painting of a village by the river, trees and bridges, soft colors\n"
    "a black and white photo of a street in the rain, people with umbrellas\n"
    "a close up of a flower with drops of water, macro photography, bokeh\n"
    "a mountain road in the autumn, yellow and orange leaves, morning fog\n"
    "a boat on a calm lake under the stars, night sky, milky way, long exposure\n"
    "a knight in shining armor holding a sword, fantasy art, detailed illustration\n"
    "a cup of coffee and a croissant on a table in a cafe, morning light\n"
    "a train crossing a bridge over a valley, green hills, clear sky, travel photo\n"
    "an owl sitting on a branch in a dark forest, moonlight, mysterious mood\n"
    "a kitchen with white cabinets and a wooden floor, interior design, bright room\n"
    "a group of friends laughing around a fire at the camp, evening, warm glow\n"
    "a robot walking through a field of flowers, digital art, vibrant colors\n"
    "a lighthouse on the rocks with big waves, storm, dramatic light, wide shot\n"
    "a child playing with a ball in the park, happy, sunny day, candid photo\n"
    "a plate of pasta with tomatoes and basil, food photography, top view\n"
    "a desert with sand dunes and a camel, hot sun, long shadows, wide view\n"
    "a horse standing in a green meadow, trees in the background, summer light\n"
    "the interior of a church with tall windows and colored glass, soft light\n"
    "a snowy mountain peak above the clouds, sunrise, pink and orange sky\n"
    "a small boat in the harbor, fishing village, old houses, evening light\n"
    "a man walking his dog in the park in the morning, mist, quiet scene\n"
    "a drawing of a dragon with large wings, pencil sketch, black and white\n"
    "a bright yellow flower field under a blue sky, spring, sharp details\n"
    "a woman with red hair in a green dress standing in a garden, portrait photo\n"
    "a river running through a canyon, red rocks, aerial view, high resolution\n"
    "an old car parked on a street in the city, vintage photo, film grain\n"
    "a tree alone on a hill, clear night sky full of stars, calm and quiet\n"
    "a cat and a dog sleeping together on a sofa, cute, soft light, home\n"
    "a market with fruits and vegetables, colorful, busy people, street photo\n"
    "a modern house with large windows and a pool, architecture, clean lines\n"
    "a tiger walking through tall grass, wildlife photography, golden light\n"
    "a bowl of soup with bread on the side, rustic table, warm tones\n"
    "a painting in the style of the old masters, dark background, rich colors\n"
    "a cute little bear holding a red balloon, children book illustration\n"
    "a stone bridge over a small river in the forest, moss, green light\n"
    "the sun setting over the sea, orange and purple sky, silhouettes of palm trees\n"
    "1 2 3 4 5 6 7 8 9 0, 4k, 8k, 35mm, f/1.8, 50mm lens, 16:9, (best quality:1.2)\n"
    "it's a photo, isn't it? we're here, they've gone, i'm sure, you'll see, he'd go\n";

/* A word of the corpus: its symbols (token indices) and how often it occurs. */
typedef struct tiny_word {
    int32_t *sym;
    int n;
    int count;
} tiny_word;

/* One adjacent pair occurrence, weighted; sorted to add up the counts of equal pairs. */
typedef struct tiny_pair {
    int32_t a, b;
    int count;
} tiny_pair;

static int cmp_pair(const void *x, const void *y) {
    const tiny_pair *p = x, *q = y;
    if (p->a != q->a) return p->a < q->a ? -1 : 1;
    if (p->b != q->b) return p->b < q->b ? -1 : 1;
    return 0;
}

/* The growing token list of the learner: strings by index, plus string -> index. */
typedef struct tiny_vocab {
    char **tok;
    int n, cap;
    strmap index;
} tiny_vocab;

static int vocab_add(tiny_vocab *v, const char *s, size_t len, int32_t *id) {
    if (strmap_get(&v->index, s, len, id)) return 0;
    if (v->n == v->cap) {
        int ncap = v->cap ? 2 * v->cap : 1024;
        char **nt = realloc(v->tok, (size_t)ncap * sizeof *nt);
        if (!nt) return SD_ENOMEM;
        v->tok = nt;
        v->cap = ncap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return SD_ENOMEM;
    memcpy(copy, s, len);
    copy[len] = 0;
    if (strmap_put(&v->index, copy, len, v->n) < 0) {
        free(copy);
        return SD_ENOMEM;
    }
    *id = v->n;
    v->tok[v->n++] = copy;
    return 0;
}

/* Pair (a, b) sorts before (c, d) by their token strings. */
static int pair_str_less(const tiny_vocab *v, int32_t a, int32_t b, int32_t c, int32_t d) {
    int k = strcmp(v->tok[a], v->tok[c]);
    if (k) return k < 0;
    return strcmp(v->tok[b], v->tok[d]) < 0;
}

/* Splits the corpus into words (as prompts are split) and counts them; symbols are byte-symbol indices. */
static int corpus_words(const int32_t byte_tok[256], const int32_t byte_end_tok[256], tiny_word **out,
                        int *n_out, sd_error *err) {
    uint32_t *cps = NULL;
    size_t ncp = 0;
    *out = NULL;
    *n_out = 0;
    int rc = tokenizer_text_clean(tiny_corpus, sizeof tiny_corpus - 1, &cps, &ncp, NULL, err);
    if (rc < 0) return rc;
    tokenizer_piece *pieces = malloc(ncp * sizeof *pieces);
    tiny_word *words = calloc(ncp, sizeof *words);
    unsigned char *buf = malloc(4 * ncp);
    strmap seen;
    strmap_init(&seen);
    int nw = 0;
    if (!pieces || !words || !buf) rc = sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
    size_t np = rc == 0 ? tokenizer_text_split(cps, ncp, pieces) : 0;
    for (size_t p = 0; p < np && rc == 0; p++) {
        int len = 0;
        for (size_t k = 0; k < pieces[p].len; k++) len += uni_utf8_encode_cp(cps[pieces[p].start + k], buf + len);
        int32_t w;
        if (strmap_get(&seen, buf, (size_t)len, &w)) {
            words[w].count++;
            continue;
        }
        words[nw].sym = malloc((size_t)len * sizeof(int32_t));
        if (!words[nw].sym || strmap_put(&seen, buf, (size_t)len, nw) < 0) {
            free(words[nw].sym);
            rc = sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
            break;
        }
        for (int k = 0; k < len; k++) words[nw].sym[k] = k == len - 1 ? byte_end_tok[buf[k]] : byte_tok[buf[k]];
        words[nw].n = len;
        words[nw].count = 1;
        nw++;
    }
    strmap_free(&seen);
    free(cps);
    free(pieces);
    free(buf);
    *out = words;
    *n_out = nw;
    return rc;
}

/* Learns up to max_merges merges; appends them to merges[] as "a b" lines and new tokens to v. */
static int learn_merges(tiny_vocab *v, tiny_word *words, int nw, int max_merges, char **merges, int *n_merges,
                        sd_error *err) {
    size_t total = 0;
    for (int w = 0; w < nw; w++) total += (size_t)words[w].n;
    tiny_pair *pairs = malloc((total ? total : 1) * sizeof *pairs);
    if (!pairs) return sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
    int rc = 0;
    *n_merges = 0;
    while (*n_merges < max_merges) {
        size_t np = 0;
        for (int w = 0; w < nw; w++)
            for (int k = 0; k + 1 < words[w].n; k++)
                pairs[np++] = (tiny_pair){words[w].sym[k], words[w].sym[k + 1], words[w].count};
        qsort(pairs, np, sizeof *pairs, cmp_pair);
        int32_t ba = -1, bb = -1;
        int best = 1; /* a merge must occur at least twice */
        for (size_t i = 0; i < np;) {
            size_t j = i;
            int c = 0;
            while (j < np && pairs[j].a == pairs[i].a && pairs[j].b == pairs[i].b) c += pairs[j++].count;
            if (c > best || (c == best && ba >= 0 && pair_str_less(v, pairs[i].a, pairs[i].b, ba, bb))) {
                best = c;
                ba = pairs[i].a;
                bb = pairs[i].b;
            }
            i = j;
        }
        if (ba < 0) break;
        size_t la = strlen(v->tok[ba]), lb = strlen(v->tok[bb]);
        char *line = malloc(la + lb + 2);
        if (!line) {
            rc = sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
            break;
        }
        memcpy(line, v->tok[ba], la);
        line[la] = ' ';
        memcpy(line + la + 1, v->tok[bb], lb + 1);
        merges[(*n_merges)++] = line;
        /* the joined string: line without its space */
        char *joined = malloc(la + lb + 1);
        int32_t ab;
        if (!joined) {
            rc = sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
            break;
        }
        memcpy(joined, v->tok[ba], la);
        memcpy(joined + la, v->tok[bb], lb + 1);
        rc = vocab_add(v, joined, la + lb, &ab);
        free(joined);
        if (rc < 0) {
            rc = sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
            break;
        }
        for (int w = 0; w < nw; w++) {
            int k = 0;
            for (int i = 0; i < words[w].n;) {
                if (i + 1 < words[w].n && words[w].sym[i] == ba && words[w].sym[i + 1] == bb) {
                    words[w].sym[k++] = ab;
                    i += 2;
                } else {
                    words[w].sym[k++] = words[w].sym[i++];
                }
            }
            words[w].n = k;
        }
    }
    free(pairs);
    return rc;
}

int tokenizer_build_tiny(tokenizer_bpe **out, int max_merges, sd_error *err) {
    *out = NULL;
    if (max_merges < 0 || max_merges > TOKENIZER_MAX_MERGES)
        return sd_err(err, SD_EINPUT, "tokenizer: max_merges %d must be 0..%d", max_merges, TOKENIZER_MAX_MERGES);
    tiny_vocab v = {0};
    strmap_init(&v.index);
    tiny_word *words = NULL;
    int nw = 0, n_merges = 0, rc = 0;
    char **merges = calloc((size_t)max_merges + 1, sizeof *merges);
    if (!merges) rc = sd_err(err, SD_ENOMEM, "tokenizer: out of memory");

    /* ids 0..511: the byte symbols in CLIP's order, then the same with "</w>" */
    uint32_t sym[256];
    uint8_t order[256];
    int32_t byte_tok[256], byte_end_tok[256];
    tokenizer_byte_symbols(sym, order);
    for (int k = 0; k < 512 && rc == 0; k++) {
        unsigned char s[8];
        int b = order[k % 256];
        int len = uni_utf8_encode_cp(sym[b], s);
        if (k >= 256) {
            memcpy(s + len, "</w>", 4);
            len += 4;
        }
        rc = vocab_add(&v, (const char *)s, (size_t)len, k < 256 ? &byte_tok[b] : &byte_end_tok[b]);
        if (rc < 0) rc = sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
    }
    if (rc == 0) rc = corpus_words(byte_tok, byte_end_tok, &words, &nw, err);
    if (rc == 0) rc = learn_merges(&v, words, nw, max_merges, merges, &n_merges, err);
    int32_t id;
    if (rc == 0 && (vocab_add(&v, "<|startoftext|>", 15, &id) < 0 || vocab_add(&v, "<|endoftext|>", 13, &id) < 0))
        rc = sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
    if (rc == 0)
        rc = tokenizer_from_tables(out, "built-in tiny vocabulary", v.tok, v.n, "built-in tiny vocabulary", merges,
                                   n_merges, "built-in tiny merges", 1, err);
    if (rc == 0) rc = tokenizer_check_specials(*out, "built-in tiny vocabulary", err);
    if (rc < 0) {
        tokenizer_free(*out);
        *out = NULL;
    }
    for (int w = 0; w < nw; w++) free(words[w].sym);
    free(words);
    for (int i = 0; i < n_merges; i++) free(merges[i]);
    free(merges);
    for (int i = 0; i < v.n; i++) free(v.tok[i]);
    free(v.tok);
    strmap_free(&v.index);
    return rc;
}
