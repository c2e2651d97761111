/*
 * Tests for the CLIP tokenizer (core/tokenizer*, core/unicode, core/html_unescape).
 *
 * Reference: golden/tokens.json (ids from OpenAI's SimpleTokenizer) and the
 * tiny-sd15 / tiny-sd2 tokenizer folders. The text-cleanup cases state what
 * Python's html.unescape, str.strip/lower and the regex module do (they were
 * checked against Python 3.11 + regex 2022.10.31).
 */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tokenizer.h"
#include "tokenizer_impl.h" /* only to shrink the word cache */
#include "tokenizer_text.h"
#include "unicode.h"

#define SD15_TOK "models/tiny-sd15/tokenizer"
#define SD2_TOK "models/tiny-sd2/tokenizer"

static json_t *golden;

static int load_golden(void **state) {
    (void)state;
    json_error_t je;
    golden = json_load_file(tu_path("golden/tokens.json"), 0, &je);
    if (!golden) fprintf(stderr, "cannot read golden/tokens.json: %s\n", je.text);
    return golden ? 0 : -1;
}

static int free_golden(void **state) {
    (void)state;
    json_decref(golden);
    return 0;
}

static void write_file(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static tokenizer_bpe *load_dir_or_fail(const char *dir) {
    sd_error err = {0};
    tokenizer_bpe *tok = NULL;
    if (tokenizer_load_dir(&tok, dir, &err) < 0) fail_msg("%s", err.msg);
    return tok;
}

/* Fails unless the ids of json array `want` equal got[0..n). */
static void expect_ids(const char *what, const char *text, json_t *want, const int32_t *got, int n) {
    if ((int)json_array_size(want) != n)
        fail_msg("%s of '%s': %d ids, expected %zu", what, text, n, json_array_size(want));
    for (int i = 0; i < n; i++) {
        long long w = json_integer_value(json_array_get(want, (size_t)i));
        if (w != got[i]) fail_msg("%s of '%s': id %d is %d, expected %lld", what, text, i, (int)got[i], w);
    }
}

/* Every golden prompt: BPE pieces, BPE ids and the padded 77 ids, for the given tokenizer and pad key. */
static void check_golden(tokenizer_bpe *tok, const char *input_ids_key) {
    json_t *prompts = json_object_get(golden, "prompts");
    assert_true(json_array_size(prompts) >= 40);
    sd_error err = {0};
    size_t i;
    json_t *p;
    json_array_foreach(prompts, i, p) {
        const char *text = json_string_value(json_object_get(p, "text"));
        int32_t *ids = NULL;
        int n = 0;
        if (tokenizer_encode(tok, text, &ids, &n, &err) < 0) fail_msg("'%s': %s", text, err.msg);
        expect_ids("bpe_ids", text, json_object_get(p, "bpe_ids"), ids, n);
        json_t *pieces = json_object_get(p, "bpe_pieces");
        for (int k = 0; k < n; k++) {
            const char *want = json_string_value(json_array_get(pieces, (size_t)k));
            const char *got = tokenizer_token(tok, ids[k]);
            if (!got || strcmp(got, want) != 0) fail_msg("'%s': piece %d is '%s', expected '%s'", text, k, got, want);
        }
        free(ids);

        int32_t padded[77];
        int ntok = -1;
        if (tokenizer_encode_padded(tok, text, padded, 77, &ntok, &err) < 0) fail_msg("'%s': %s", text, err.msg);
        assert_int_equal(ntok, (int)json_integer_value(json_object_get(p, "num_bpe_tokens")));
        expect_ids(input_ids_key, text, json_object_get(p, input_ids_key), padded, 77);
    }
}

static void test_tokenizer_sd15_folder_matches_golden_pieces_ids_and_input_ids(void **state) {
    (void)state;
    tokenizer_bpe *tok = load_dir_or_fail(tu_path(SD15_TOK));
    assert_int_equal(tokenizer_vocab_size(tok), 49408);
    assert_int_equal(tokenizer_merges_count(tok), 48894);
    assert_int_equal(tokenizer_bos_id(tok), json_integer_value(json_object_get(golden, "bos_id")));
    assert_int_equal(tokenizer_eos_id(tok), json_integer_value(json_object_get(golden, "eos_id")));
    assert_int_equal(tokenizer_pad_id(tok), json_integer_value(json_object_get(golden, "pad_id_sd1")));
    check_golden(tok, "input_ids_sd1");
    /* again, now answered from the word cache */
    check_golden(tok, "input_ids_sd1");
    tokenizer_free(tok);
}

static void test_tokenizer_sd2_folder_pads_with_its_pad_token(void **state) {
    (void)state;
    tokenizer_bpe *tok = load_dir_or_fail(tu_path(SD2_TOK));
    assert_int_equal(tokenizer_pad_id(tok), json_integer_value(json_object_get(golden, "pad_id_sd2")));
    assert_string_equal(tokenizer_token(tok, tokenizer_pad_id(tok)), "!");
    check_golden(tok, "input_ids_sd2");
    tokenizer_free(tok);
}

/*
 * Writes testdata's merges in the layout of OpenAI's bpe_simple_vocab_16e6.txt.gz:
 * a header line, the 48894 merges, then more lines that must be ignored
 * (the real file has ~262k lines; SimpleTokenizer reads only 1..48894).
 */
static void write_openai_gz(const char *gz_path) {
    char *text = NULL;
    size_t len = 0;
    sd_error err = {0};
    if (sd_fs_read_file(tu_path(SD15_TOK "/merges.txt"), &text, &len, &err) < 0) fail_msg("%s", err.msg);
    char *body = strchr(text, '\n');
    assert_non_null(body);
    gzFile gz = gzopen(gz_path, "wb");
    assert_non_null(gz);
    gzputs(gz, "\"bpe_simple_vocab_16e6.txt#version: 0.2\n");
    gzputs(gz, body + 1);
    if (text[len - 1] != '\n') gzputs(gz, "\n");
    /* "believ in</w>" would change "believin'" (golden prompt 5) if it were read */
    for (int i = 0; i < 100; i++) gzputs(gz, "believ in</w>\nc at</w>\n");
    assert_int_equal(gzclose(gz), Z_OK);
    free(text);
}

static void test_tokenizer_openai_gz_gives_the_folder_ids(void **state) {
    (void)state;
    const char *gz_path = tu_tmp("bpe_simple_vocab_16e6.txt.gz");
    write_openai_gz(gz_path);
    sd_error err = {0};
    tokenizer_bpe *gz = NULL, *dir = load_dir_or_fail(tu_path(SD15_TOK));
    if (tokenizer_load_openai_gz(&gz, gz_path, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(tokenizer_vocab_size(gz), 49408);
    assert_int_equal(tokenizer_bos_id(gz), 49406);
    assert_int_equal(tokenizer_eos_id(gz), 49407);
    assert_int_equal(tokenizer_pad_id(gz), 49407);
    for (int32_t id = 0; id < 49408; id++) assert_string_equal(tokenizer_token(gz, id), tokenizer_token(dir, id));
    check_golden(gz, "input_ids_sd1");
    assert_int_equal(tokenizer_set_pad(gz, "!", &err), 0);
    check_golden(gz, "input_ids_sd2");
    tokenizer_free(gz);
    tokenizer_free(dir);
}

static void test_tokenizer_gives_the_same_ids_when_its_cache_overflows(void **state) {
    (void)state;
    tokenizer_bpe *tok = load_dir_or_fail(tu_path(SD15_TOK));
    tok->cache_max_words = 5;
    tok->cache_max_ids = 40;
    check_golden(tok, "input_ids_sd1");
    assert_true(tok->cache.count <= 5);
    tokenizer_free(tok);
}

/* One tokenizer used by several threads at once gives every thread the serial answer. */
static void test_tokenizer_is_safe_to_share_between_threads(void **state) {
    (void)state;
    tokenizer_bpe *tok = load_dir_or_fail(tu_path(SD15_TOK));
    json_t *prompts = json_object_get(golden, "prompts");
    int np = (int)json_array_size(prompts), bad = 0;
    tok->cache_max_words = 50; /* keep the cache busy starting over */
#pragma omp parallel for num_threads(4) reduction(+ : bad) schedule(dynamic)
    for (int r = 0; r < 40 * np; r++) {
        json_t *p = json_array_get(prompts, (size_t)(r % np));
        const char *text = json_string_value(json_object_get(p, "text"));
        json_t *want = json_object_get(p, "bpe_ids");
        int32_t *ids = NULL;
        int n = 0;
        sd_error err = {0};
        if (tokenizer_encode(tok, text, &ids, &n, &err) < 0 || n != (int)json_array_size(want)) {
            bad++;
        } else {
            for (int k = 0; k < n; k++) bad += ids[k] != json_integer_value(json_array_get(want, (size_t)k));
        }
        free(ids);
    }
    assert_int_equal(bad, 0);
    tokenizer_free(tok);
}

static void test_tokenizer_truncates_to_77_keeping_eos(void **state) {
    (void)state;
    tokenizer_bpe *tok = load_dir_or_fail(tu_path(SD15_TOK));
    sd_error err = {0};
    /* 200 words of one token each */
    char text[2048] = "";
    for (int i = 0; i < 200; i++) strcat(text, i % 2 ? "cat " : "dog ");
    int32_t ids[77], *raw = NULL;
    int n = 0, ntok = 0;
    assert_int_equal(tokenizer_encode(tok, text, &raw, &n, &err), 0);
    assert_int_equal(n, 200);
    assert_int_equal(tokenizer_encode_padded(tok, text, ids, 77, &ntok, &err), 0);
    assert_int_equal(ntok, 200);
    assert_int_equal(ids[0], 49406);
    for (int i = 0; i < 75; i++) assert_int_equal(ids[1 + i], raw[i]);
    assert_int_equal(ids[76], 49407);

    /* a shorter context works the same way: bos, max_len - 2 tokens, eos */
    int32_t small[5];
    assert_int_equal(tokenizer_encode_padded(tok, text, small, 5, NULL, &err), 0);
    assert_int_equal(small[0], 49406);
    assert_int_equal(small[1], raw[0]);
    assert_int_equal(small[3], raw[2]);
    assert_int_equal(small[4], 49407);
    assert_int_equal(tokenizer_encode_padded(tok, "", small, 2, &ntok, &err), 0);
    assert_int_equal(ntok, 0);
    assert_int_equal(small[0], 49406);
    assert_int_equal(small[1], 49407);
    assert_true(tokenizer_encode_padded(tok, "a", small, 1, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "max_len"));

    /* an absurdly long prompt is refused with a message, not truncated silently */
    char *huge = malloc(TOKENIZER_MAX_PROMPT_BYTES + 2);
    assert_non_null(huge);
    memset(huge, 'a', TOKENIZER_MAX_PROMPT_BYTES + 1);
    huge[TOKENIZER_MAX_PROMPT_BYTES + 1] = 0;
    assert_int_equal(tokenizer_encode_padded(tok, huge, ids, 77, &ntok, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "too long"));
    free(huge);
    free(raw);
    tokenizer_free(tok);
}

static void test_tokenizer_replaces_invalid_utf8_like_python(void **state) {
    (void)state;
    tokenizer_bpe *tok = load_dir_or_fail(tu_path(SD15_TOK));
    sd_error err = {0};
    /* Python: b"...".decode("utf-8", "replace") gives one U+FFFD per maximal ill-formed part */
    static const struct {
        const char *bytes, *same_as;
    } cases[] = {
        {"a\xff" "b", "a\xef\xbf\xbd" "b"},
        {"x\xe2\x82y", "x\xef\xbf\xbdy"},                                    /* truncated 3-byte sequence: one */
        {"x\xed\xa0\x80y", "x\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdy"},        /* UTF-8 surrogate: three */
        {"x\xc0\xafy", "x\xef\xbf\xbd\xef\xbf\xbdy"},                         /* overlong: two */
        {"x\xf4\x90\x80\x80y", "x\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdy"}, /* above U+10FFFF */
        {"\xf0\x9f\x90", "\xef\xbf\xbd"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t *a = NULL, *b = NULL;
        int na = 0, nb = 0;
        assert_int_equal(tokenizer_encode(tok, cases[i].bytes, &a, &na, &err), 0);
        assert_int_equal(tokenizer_encode(tok, cases[i].same_as, &b, &nb, &err), 0);
        assert_int_equal(na, nb);
        assert_true(na > 0);
        assert_memory_equal(a, b, (size_t)na * sizeof *a);
        free(a);
        free(b);
    }
    tokenizer_free(tok);
}

/* Cleans text and returns it as UTF-8 (static buffer). */
static const char *cleaned(const char *text) {
    static char out[1024];
    uint32_t *cps = NULL;
    size_t n = 0, o = 0;
    sd_error err = {0};
    assert_int_equal(tokenizer_text_clean(text, strlen(text), &cps, &n, NULL, &err), 0);
    for (size_t i = 0; i < n; i++) {
        assert_true(o + 4 < sizeof out);
        o += (size_t)uni_utf8_encode_cp(cps[i], (unsigned char *)out + o);
    }
    out[o] = 0;
    free(cps);
    return out;
}

/* Splits cleaned text and checks the pieces against want (NULL-terminated). */
static void expect_pieces(const char *text, const char *const *want) {
    uint32_t *cps = NULL;
    size_t n = 0;
    sd_error err = {0};
    assert_int_equal(tokenizer_text_clean(text, strlen(text), &cps, &n, NULL, &err), 0);
    tokenizer_piece *pieces = malloc((n ? n : 1) * sizeof *pieces);
    assert_non_null(pieces);
    size_t np = tokenizer_text_split(cps, n, pieces), k = 0;
    for (; k < np; k++) {
        char buf[256];
        size_t o = 0;
        for (size_t j = 0; j < pieces[k].len; j++) o += (size_t)uni_utf8_encode_cp(cps[pieces[k].start + j], (unsigned char *)buf + o);
        buf[o] = 0;
        if (!want[k]) fail_msg("'%s': extra piece '%s'", text, buf);
        if (strcmp(buf, want[k]) != 0) fail_msg("'%s': piece %zu is '%s', expected '%s'", text, k, buf, want[k]);
    }
    if (want[k]) fail_msg("'%s': missing piece '%s'", text, want[k]);
    free(pieces);
    free(cps);
}

static void test_tokenizer_html_unescape_runs_twice_like_python(void **state) {
    (void)state;
    assert_string_equal(cleaned("&amp;amp;lt;"), "&lt;");
    assert_string_equal(cleaned("&amp;amp;amp;"), "&amp;");
    /* named with and without ';', longest legacy prefix, unknown names, numeric with Python's fixups */
    assert_string_equal(cleaned("caf&eacute; &AElig &ampx &notit; &#39;s &#x1F600; &#128;&#0;&#xD800;&#1114112;&#1;&#65"),
                        "caf\u00e9 \u00e6 &x \u00acit; 's \U0001F600 \u20ac\ufffd\ufffd\ufffda");
    assert_string_equal(cleaned("&lt3 &GTx &#X41; &#x;&#;&"), "<3 >x a &#x;&#;&");
    assert_string_equal(cleaned("&#99999999999999999999999; &#xFFFE;."), "\ufffd .");
}

static void test_tokenizer_whitespace_and_lowercase_follow_python(void **state) {
    (void)state;
    /* ftfy first: remove_control_chars drops \x1c and \x1f, fix_c1_controls makes U+0085 Windows-1252's
       "\u2026", fix_character_width U+3000 a space; then U+2028 and the spaces collapse */
    assert_string_equal(cleaned("\x1c a\x1c" "b \u2028 c\xc2\x85\u3000" "d\x1f"), "ab c\u2026 d");
    assert_string_equal(cleaned("  a \t\n b  "), "a b");
    assert_string_equal(cleaned(" \t\n "), "");
    /* full lower-casing: final sigma, dotted I grows to two code points, titlecase letters (U+1F88; the
       Latin digraph U+01C5 is becomes "D\u017e" by ftfy's ligature fix first) */
    assert_string_equal(cleaned("\u039f\u0394\u039f\u03a3 \u03a3\u0391 A\u03a3.\u03a3 \u0130STANBUL \u1f88 \u01c5 \u03a9"),
                        "\u03bf\u03b4\u03bf\u03c2 \u03c3\u03b1 a\u03c3.\u03c2 i\u0307stanbul \u1f80 d\u017e \u03c9");
    assert_string_equal(cleaned("A Photograph"), "a photograph");
}

static void test_tokenizer_split_follows_the_regex_quirks(void **state) {
    (void)state;
    expect_pieces("don't stop believin' - rock'n'roll",
                  (const char *const[]){"don", "'t", "stop", "believin", "'", "-", "rock", "'", "n", "'", "roll", NULL});
    expect_pieces("1,000 (masterpiece:1.2), !!! ...",
                  (const char *const[]){"1", ",", "0", "0", "0", "(", "masterpiece", ":", "1", ".", "2", "),", "!!!",
                                        "...", NULL});
    /* U+0345 matches no alternative under IGNORECASE and vanishes; U+017F matches 's' */
    expect_pieces("a\u0345" "b '\u017f 'S <|\u017ftartoftext|> <|EndOfText|> x<|endoftext|>y",
                  (const char *const[]){"a", "b", "'\u017f", "'s", "<|\u017ftartoftext|>", "<|endoftext|>", "x",
                                        "<|endoftext|>", "y", NULL});
    expect_pieces("\u0130", (const char *const[]){"i", "\u0307", NULL});
    expect_pieces("", (const char *const[]){NULL});
}

static void test_tokenizer_typed_special_tokens_become_bos_and_eos(void **state) {
    (void)state;
    tokenizer_bpe *tok = load_dir_or_fail(tu_path(SD15_TOK));
    sd_error err = {0};
    int32_t *ids = NULL;
    int n = 0;
    assert_int_equal(tokenizer_encode(tok, "a <|startoftext|>b<|ENDOFTEXT|>", &ids, &n, &err), 0);
    assert_int_equal(n, 4);
    assert_int_equal(ids[1], 49406);
    assert_int_equal(ids[3], 49407);
    free(ids);
    /* only the exact lower-case string is the special token; "<|ſtartoftext|>" goes through BPE */
    assert_int_equal(tokenizer_encode(tok, "<|\u017ftartoftext|>", &ids, &n, &err), 0);
    assert_true(n > 1);
    for (int i = 0; i < n; i++) assert_true(ids[i] < 49406);
    free(ids);
    tokenizer_free(tok);
}

static void test_tokenizer_decode_inverts_encode(void **state) {
    (void)state;
    tokenizer_bpe *tok = load_dir_or_fail(tu_path(SD15_TOK));
    sd_error err = {0};
    const char *text = "A photograph of an astronaut, caf\u00e9 \U0001F431 \u65e5\u672c (1.5)";
    int32_t *ids = NULL;
    int n = 0;
    char *back = NULL;
    assert_int_equal(tokenizer_encode(tok, text, &ids, &n, &err), 0);
    assert_int_equal(tokenizer_decode(tok, ids, n, &back, &err), 0);
    /* SimpleTokenizer.decode: every word ends in a space, punctuation is its own word */
    assert_string_equal(back, "a photograph of an astronaut , caf\u00e9 \U0001F431 \u65e5\u672c ( 1 . 5 ) ");
    free(back);
    /* half of a multi-byte character decodes to U+FFFD, not to garbage */
    int32_t half = tokenizer_token_id(tok, "\xc3\xa6");
    assert_true(half >= 0); /* the symbol of byte 0xE6 */
    assert_int_equal(tokenizer_decode(tok, &half, 1, &back, &err), 0);
    assert_string_equal(back, "\ufffd");
    free(back);
    int32_t bad = 49408;
    assert_true(tokenizer_decode(tok, &bad, 1, &back, &err) < 0);
    assert_non_null(strstr(err.msg, "49408"));
    assert_null(back);
    free(ids);
    tokenizer_free(tok);
}

static void test_tokenizer_tiny_vocabulary_round_trips_through_its_folder(void **state) {
    (void)state;
    sd_error err = {0};
    tokenizer_bpe *tiny = NULL, *again = NULL, *back = NULL;
    assert_int_equal(tokenizer_build_tiny(&tiny, 400, &err), 0);
    int n_merges = tokenizer_merges_count(tiny);
    assert_true(n_merges >= 300 && n_merges <= 400);
    int vocab = tokenizer_vocab_size(tiny);
    assert_true(vocab > 512 + 2 && vocab <= 512 + n_merges + 2);
    assert_string_equal(tokenizer_token(tiny, tokenizer_bos_id(tiny)), "<|startoftext|>");
    assert_string_equal(tokenizer_token(tiny, tokenizer_eos_id(tiny)), "<|endoftext|>");
    assert_int_equal(tokenizer_pad_id(tiny), tokenizer_eos_id(tiny));
    assert_string_equal(tokenizer_token(tiny, 0), "!"); /* byte symbols first, in CLIP's order */

    /* deterministic */
    assert_int_equal(tokenizer_build_tiny(&again, 400, &err), 0);
    assert_int_equal(tokenizer_vocab_size(again), vocab);
    for (int32_t id = 0; id < vocab; id++) assert_string_equal(tokenizer_token(again, id), tokenizer_token(tiny, id));

    const char *dir = tu_tmp("tiny-tokenizer");
    assert_int_equal(tokenizer_save_dir(tiny, dir, &err), 0);
    if (tokenizer_load_dir(&back, dir, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(tokenizer_vocab_size(back), vocab);
    assert_int_equal(tokenizer_merges_count(back), n_merges);
    assert_int_equal(tokenizer_bos_id(back), tokenizer_bos_id(tiny));
    assert_int_equal(tokenizer_eos_id(back), tokenizer_eos_id(tiny));
    assert_int_equal(tokenizer_pad_id(back), tokenizer_pad_id(tiny));

    /* same ids from the built and the reloaded tokenizer for every golden prompt; decoding gives the text back */
    json_t *prompts = json_object_get(golden, "prompts");
    size_t i;
    json_t *p;
    json_array_foreach(prompts, i, p) {
        const char *text = json_string_value(json_object_get(p, "text"));
        int32_t *a = NULL, *b = NULL;
        int na = 0, nb = 0;
        assert_int_equal(tokenizer_encode(tiny, text, &a, &na, &err), 0);
        assert_int_equal(tokenizer_encode(back, text, &b, &nb, &err), 0);
        assert_int_equal(na, nb);
        if (na) assert_memory_equal(a, b, (size_t)na * sizeof *a);
        for (int k = 0; k < na; k++) assert_true(a[k] >= 0 && a[k] < vocab);
        free(a);
        free(b);
    }
    const char *text = "a photograph of an astronaut riding a horse";
    int32_t *ids = NULL;
    int n = 0;
    char *dec = NULL;
    assert_int_equal(tokenizer_encode(back, text, &ids, &n, &err), 0);
    /* common words are whole tokens: far fewer tokens than bytes */
    assert_true(n >= 8 && n <= 16);
    assert_int_equal(ids[0], tokenizer_token_id(back, "a</w>"));
    assert_true(tokenizer_token_id(back, "the</w>") >= 512);
    assert_int_equal(tokenizer_decode(back, ids, n, &dec, &err), 0);
    assert_string_equal(dec, "a photograph of an astronaut riding a horse ");
    free(dec);
    free(ids);

    /* an SD 2.x-style copy pads with "!" and saves that */
    assert_int_equal(tokenizer_set_pad(back, "!", &err), 0);
    assert_int_equal(tokenizer_save_dir(back, tu_tmp("tiny-tokenizer-sd2"), &err), 0);
    tokenizer_free(again);
    again = load_dir_or_fail(tu_tmp("tiny-tokenizer-sd2"));
    assert_int_equal(tokenizer_pad_id(again), 0);

    assert_true(tokenizer_set_pad(back, "<pad>", &err) < 0);
    assert_non_null(strstr(err.msg, "<pad>"));
    tokenizer_bpe *none = NULL;
    assert_int_equal(tokenizer_build_tiny(&none, -1, &err), SD_EINPUT);
    assert_null(none);
    tokenizer_free(tiny);
    tokenizer_free(again);
    tokenizer_free(back);
}


/* Rewrites dir/vocab.json with token `from` renamed to `to` (same id). */
static void rename_vocab_token(const char *dir, const char *from, const char *to) {
    char path[1200];
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    json_t *v = json_load_file(path, 0, NULL);
    assert_non_null(v);
    json_t *id = json_object_get(v, from);
    assert_non_null(id);
    json_object_set(v, to, id);
    json_object_del(v, from);
    assert_int_equal(json_dump_file(v, path, 0), 0);
    json_decref(v);
}

static void test_tokenizer_folder_may_name_its_own_special_tokens(void **state) {
    (void)state;
    sd_error err = {0};
    tokenizer_bpe *tiny = NULL, *tok = NULL;
    assert_int_equal(tokenizer_build_tiny(&tiny, 50, &err), 0);
    int32_t bos = tokenizer_bos_id(tiny);
    const char *dir = tu_tmp("own-specials");
    assert_int_equal(tokenizer_save_dir(tiny, dir, &err), 0);
    rename_vocab_token(dir, "<|startoftext|>", "<s>");
    char path[1200];
    snprintf(path, sizeof path, "%s/special_tokens_map.json", dir);
    write_file(path, "{\"bos_token\": {\"content\": \"<s>\", \"lstrip\": false}, \"pad_token\": \"!\"}");
    if (tokenizer_load_dir(&tok, dir, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(tokenizer_bos_id(tok), bos);
    assert_int_equal(tokenizer_pad_id(tok), 0);
    int32_t ids[4];
    assert_int_equal(tokenizer_encode_padded(tok, "", ids, 4, NULL, &err), 0);
    assert_int_equal(ids[0], bos);
    assert_int_equal(ids[1], tokenizer_eos_id(tiny));
    assert_int_equal(ids[2], 0);
    tokenizer_free(tok);

    /* without the map, CLIP's default bos is looked for and is missing */
    assert_int_equal(remove(path), 0);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    assert_int_equal(remove(path), 0);
    assert_true(tokenizer_load_dir(&tok, dir, &err) < 0);
    assert_null(tok);
    assert_non_null(strstr(err.msg, "bos_token '<|startoftext|>' is not in the vocabulary"));
    tokenizer_free(tiny);
}

typedef struct bad_dir_case {
    const char *what;
    const char *file;    /* file to overwrite, or NULL */
    const char *content;
    const char *remove;  /* file to delete, or NULL */
    const char *expect;  /* substring of the error */
} bad_dir_case;

static const bad_dir_case bad_dirs[] = {
    {"vocab.json missing", NULL, NULL, "vocab.json", "needs vocab.json"},
    {"vocab.json not JSON", "vocab.json", "{\"a\": 0,", NULL, "not valid JSON"},
    {"vocab.json an array", "vocab.json", "[\"a\", \"b\"]", NULL, "not a JSON object"},
    {"vocab.json empty object", "vocab.json", "{}", NULL, "has 0 tokens"},
    {"id not an integer", "vocab.json", "{\"a\": \"0\"}", NULL, "is not an integer"},
    {"id out of range", "vocab.json", "{\"a\": 0, \"b\": 7}", NULL, "ids must be 0..1"},
    {"id used twice", "vocab.json", "{\"a\": 0, \"b\": 0}", NULL, "id 0 is given to both"},
    {"empty token", "vocab.json", "{\"\": 0}", NULL, "empty string"},
    {"byte symbol missing", "vocab.json", "{\"a\": 0}", NULL, "(byte 0x00) is missing"},
    {"merges.txt missing", NULL, NULL, "merges.txt", "needs merges.txt"},
    {"merges.txt without header", "merges.txt", "t h\n", NULL, "#version"},
    {"merge line with three tokens", "merges.txt", "#version: 0.2\nt h e\n", NULL,
     "merges.txt line 2: expected two tokens"},
    {"merge line with one token", "merges.txt", "#version: 0.2\nth\n", NULL, "merges.txt line 2: expected two"},
    {"blank merge line", "merges.txt", "#version: 0.2\n\nh e\n", NULL, "merges.txt line 2: expected two"},
    {"merge of an unknown token", "merges.txt", "#version: 0.2\nzzzz q\n", NULL, "'zzzz' is not in the vocabulary"},
    {"merge result not in the vocabulary", "merges.txt", "#version: 0.2\n\xc4\x80 \xc4\x82\n", NULL,
     "which is not in the vocabulary"},
    {"merges.txt not UTF-8", "merges.txt", "#version: 0.2\n\xff \xfe\n", NULL, "not valid UTF-8"},
    {"special tokens map not JSON", "special_tokens_map.json", "{\"pad_token\": ", NULL, "not valid JSON"},
    {"pad token not in the vocabulary", "special_tokens_map.json", "{\"pad_token\": \"<pad>\"}", NULL,
     "pad_token '<pad>' is not in the vocabulary"},
    {"pad token of the wrong type", "special_tokens_map.json", "{\"pad_token\": 5}", NULL, "must be a string"},
    {"bos token unknown in tokenizer_config", "tokenizer_config.json", "{\"bos_token\": {\"content\": \"<s>\"}}",
     "special_tokens_map.json", "tokenizer_config.json: bos_token '<s>' is not in the vocabulary"},
};

static void test_tokenizer_rejects_malformed_folders_with_clear_errors(void **state) {
    (void)state;
    sd_error err = {0};
    tokenizer_bpe *tiny = NULL, *tok = NULL;
    assert_int_equal(tokenizer_build_tiny(&tiny, 50, &err), 0);
    for (size_t i = 0; i < sizeof bad_dirs / sizeof bad_dirs[0]; i++) {
        const bad_dir_case *c = &bad_dirs[i];
        char name[32];
        snprintf(name, sizeof name, "bad-tok-%02zu", i);
        const char *dir = tu_tmp(name);
        assert_int_equal(tokenizer_save_dir(tiny, dir, &err), 0);
        char path[1200];
        if (c->file) {
            snprintf(path, sizeof path, "%s/%s", dir, c->file);
            write_file(path, c->content);
        }
        if (c->remove) {
            snprintf(path, sizeof path, "%s/%s", dir, c->remove);
            assert_int_equal(remove(path), 0);
        }
        memset(&err, 0, sizeof err);
        int rc = tokenizer_load_dir(&tok, dir, &err);
        if (rc >= 0) fail_msg("%s: loaded without an error", c->what);
        assert_null(tok);
        if (!strstr(err.msg, c->expect)) fail_msg("%s: error '%s' lacks '%s'", c->what, err.msg, c->expect);
        /* the message names the folder or the file */
        if (!strstr(err.msg, name)) fail_msg("%s: error '%s' does not name the folder", c->what, err.msg);
    }
    assert_true(tokenizer_load_dir(&tok, tu_tmp("no-such-folder"), &err) < 0);
    assert_non_null(strstr(err.msg, "not found"));
    tokenizer_free(tiny);
}

static void test_tokenizer_rejects_missing_and_corrupt_gz(void **state) {
    (void)state;
    sd_error err = {0};
    tokenizer_bpe *tok = NULL;
    assert_int_equal(tokenizer_load_openai_gz(&tok, tu_tmp("no-such.txt.gz"), &err), SD_ENOTFOUND);
    assert_non_null(strstr(err.msg, "not found"));

    /* a gzip file cut in half */
    const char *full = tu_tmp("full.txt.gz"), *cut = tu_tmp("cut.txt.gz");
    write_openai_gz(full);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(sd_fs_read_file(full, &data, &len, &err), 0);
    FILE *fp = fopen(cut, "wb");
    assert_non_null(fp);
    fwrite(data, 1, len / 2, fp);
    fclose(fp);
    assert_true(tokenizer_load_openai_gz(&tok, cut, &err) < 0);
    assert_null(tok);
    assert_non_null(strstr(err.msg, "cut.txt.gz"));
    assert_non_null(strstr(err.msg, "gzip"));

    /* damaged compressed bytes */
    for (size_t i = len / 3; i < len / 3 + 64; i++) data[i] ^= 0x5A;
    fp = fopen(cut, "wb");
    assert_non_null(fp);
    fwrite(data, 1, len, fp);
    fclose(fp);
    assert_true(tokenizer_load_openai_gz(&tok, cut, &err) < 0);
    assert_null(tok);
    free(data);

    /* a merge line that is not two tokens */
    gzFile gz = gzopen(cut, "wb");
    gzputs(gz, "header\nt h\nt h e\n");
    gzclose(gz);
    assert_true(tokenizer_load_openai_gz(&tok, cut, &err) < 0);
    assert_non_null(strstr(err.msg, "line 3: expected two tokens"));
}

/* `sdrender tokenize` prints, for every golden prompt, the 77 ids of tokens.json for the model's pad token. */
static void expect_cli_ids(const char *model, const char *input_ids_key) {
    json_t *prompts = json_object_get(golden, "prompts");
    char prompt_file[1024], model_dir[1024]; /* copies: tu_tmp and tu_path reuse 16 buffers */
    snprintf(prompt_file, sizeof prompt_file, "%s", tu_tmp("cli_prompt.txt"));
    snprintf(model_dir, sizeof model_dir, "%s", tu_path(model));
    size_t i;
    json_t *p;
    json_array_foreach(prompts, i, p) {
        const char *text = json_string_value(json_object_get(p, "text"));
        write_file(prompt_file, text);
        /* the prompt goes through a file (tabs, newlines, quotes); the x keeps trailing newlines */
        char *out = NULL;
        int rc = tu_sh(&out, "p=\"$(cat '%s'; printf x)\"; '%s' tokenize -m '%s' -p \"${p%%x}\" 2>/dev/null", prompt_file,
                       tu_bin(), model_dir);
        if (rc != 0) fail_msg("sdrender tokenize -m %s on prompt %zu exited %d", model, i, rc);
        int32_t got[78];
        int n = 0;
        char *s = out, *end;
        for (long v = strtol(s, &end, 10); end != s && n < 78; v = strtol(s, &end, 10)) {
            got[n++] = (int32_t)v;
            s = end;
        }
        expect_ids(input_ids_key, text, json_object_get(p, input_ids_key), got, n);
        free(out);
    }
}

static void test_tokenize_command_prints_the_golden_input_ids(void **state) {
    (void)state;
    expect_cli_ids("models/tiny-sd15", "input_ids_sd1");
    expect_cli_ids("models/tiny-sd2", "input_ids_sd2");
}

/*
 * ftfy.fix_text's subset (core/text/ftfy.h): each prompt must give the ids of the text ftfy makes of it,
 * by ftfy's rules: uncurl_quotes (U+02BC, U+2018-U+201B -> ', U+201C-U+201F -> "), fix_latin_ligatures
 * (its table), fix_encoding for UTF-8 read as Windows-1252 / Latin-1 (U+0080-U+017F and U+2000-U+2FFF),
 * fix_c1_controls, fix_character_width (U+3000 and U+FF01-U+FFEF to their NFKC forms, Unicode 14),
 * remove_terminal_escapes and remove_control_chars.
 * Text that only looks similar stays as it is.
 */
static void test_tokenizer_applies_ftfy_quotes_ligatures_mojibake_width_and_control_fixes(void **state) {
    (void)state;
    static const char *const cases[][2] = {
        /* uncurl_quotes */
        {"don\u2019t stop, it\u2019s \u201cfine\u201d", "don't stop, it's \"fine\""},
        {"\u2018a\u2019 \u201ab\u201b \u02bcc \u201ed\u201f", "'a' 'b' 'c \"d\""},
        /* fix_latin_ligatures (then uncurl_quotes on U+0149's U+02BC) */
        {"\ufb01sh \ufb02ower e\ufb00ort o\ufb03ce ba\ufb04e \ufb06op", "fish flower effort office baffle stop"},
        {"\u0133 \u0132SSEL \u01c4 \u01c9 \u01cc \u01f3 \u0149", "ij IJSSEL D\u017d lj nj dz 'n"},
        /* fix_encoding: UTF-8 bytes read as Windows-1252 (sloppy: undefined bytes as Latin-1) */
        {"caf\u00c3\u00a9 cr\u00c3\u00a8me br\u00c3\u00bbl\u00c3\u00a9e", "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e"},
        {"25\u00c2\u00b0C, \u00c3\u2018and\u00c3\u00ba, \u00c5\u201a\u00c3\u00b3d\u00c5\u00ba, \u00c3" "\xc2\x81" "gua",
         "25\u00b0C, \u00d1and\u00fa, \u0142\u00f3d\u017a, \u00c1gua"},
        {"it\u00e2\u20ac\u2122s \u00e2\u20ac\u0153hi\u00e2\u20ac" "\xc2\x9d" " \u00e2\u20ac\u201d 5\u00e2\u201a\u00ac \u00e2\u201e\u00a2",
         "it's \"hi\" \u2014 5\u20ac \u2122"},
        /* fix_c1_controls (before uncurl_quotes: U+0093/U+0094 are Windows-1252's curly quotes) */
        {"wait\xc2\x85" " 5\xc2\x80" " \xc2\x93" "hi\xc2\x94" " \xc2\x8a\xc2\x81", "wait\u2026 5\u20ac \"hi\" \u0160\xc2\x81"},
        /* fix_character_width: fullwidth ASCII, the ideographic space, halfwidth katakana ("\uff35\uff80\uff70\uff9d" is
           ftfy's own example, "U\u30bf\u30fc\u30f3") */
        {"\uff08masterpiece\uff1a\uff11\uff0e\uff12\uff09\uff0c\u3000\uff42\uff45\uff53\uff54 quality\uff01 \uff35\uff80\uff70\uff9d",
         "(masterpiece:1.2), best quality! U\u30bf\u30fc\u30f3"},
        {"\uffe5100 \uffe1 \uffe9 \uffe3x", "\u00a5100 \u00a3 \u2190  \u0304x"},
        /* remove_terminal_escapes, then remove_control_chars */
        {"\x1b[36;44mblue\x1b[0m sky\x01\x7f \ufeffni\u206aght\ufffc\ufff9", "blue sky night"},
        /* not mojibake: a lead character without continuation characters */
        {"S\u00c3O PAULO \u00c3 \u00e2 la carte, \u00c3\u00c3", "s\u00e3o paulo \u00e3 \u00e2 la carte, \u00e3\u00e3"},
    };
    tokenizer_bpe *tok = load_dir_or_fail(tu_path(SD15_TOK));
    sd_error err = {0};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int32_t *got = NULL, *want = NULL;
        int ng = 0, nw = 0;
        if (tokenizer_encode(tok, cases[i][0], &got, &ng, &err) < 0) fail_msg("%s", err.msg);
        if (tokenizer_encode(tok, cases[i][1], &want, &nw, &err) < 0) fail_msg("%s", err.msg);
        int same = ng == nw;
        for (int k = 0; same && k < ng; k++) same = got[k] == want[k];
        if (!same) {
            char *a = NULL, *b = NULL;
            tokenizer_decode(tok, got, ng, &a, &err);
            tokenizer_decode(tok, want, nw, &b, &err);
            fail_msg("'%s' tokenizes as '%s', expected '%s'", cases[i][0], a ? a : "?", b ? b : "?");
        }
        free(got);
        free(want);
    }
    tokenizer_free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_sd15_folder_matches_golden_pieces_ids_and_input_ids),
        cmocka_unit_test(test_tokenizer_sd2_folder_pads_with_its_pad_token),
        cmocka_unit_test(test_tokenizer_openai_gz_gives_the_folder_ids),
        cmocka_unit_test(test_tokenizer_gives_the_same_ids_when_its_cache_overflows),
        cmocka_unit_test(test_tokenizer_is_safe_to_share_between_threads),
        cmocka_unit_test(test_tokenizer_truncates_to_77_keeping_eos),
        cmocka_unit_test(test_tokenizer_replaces_invalid_utf8_like_python),
        cmocka_unit_test(test_tokenizer_html_unescape_runs_twice_like_python),
        cmocka_unit_test(test_tokenizer_whitespace_and_lowercase_follow_python),
        cmocka_unit_test(test_tokenizer_split_follows_the_regex_quirks),
        cmocka_unit_test(test_tokenizer_typed_special_tokens_become_bos_and_eos),
        cmocka_unit_test(test_tokenizer_decode_inverts_encode),
        cmocka_unit_test(test_tokenizer_tiny_vocabulary_round_trips_through_its_folder),
        cmocka_unit_test(test_tokenizer_folder_may_name_its_own_special_tokens),
        cmocka_unit_test(test_tokenizer_rejects_malformed_folders_with_clear_errors),
        cmocka_unit_test(test_tokenizer_rejects_missing_and_corrupt_gz),
        cmocka_unit_test(test_tokenize_command_prints_the_golden_input_ids),
        cmocka_unit_test(test_tokenizer_applies_ftfy_quotes_ligatures_mojibake_width_and_control_fixes),
    };
    return cmocka_run_group_tests(tests, load_golden, free_golden);
}
