/* Tests for jobs/enqueue and the enqueue/status commands: formats, bad rows, seeds, --repeat. */
#include "testutil.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "enqueue.h"
#include "jobdb.h"

/* Writes n bytes (NULs allowed) to tmpdir/name; returns the path (valid until the 16th next tu_tmp). */
static const char *write_bytes(const char *name, const char *data, size_t n) {
    const char *path = tu_tmp(name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    fclose(fp);
    return path;
}

static const char *write_text(const char *name, const char *text) { return write_bytes(name, text, strlen(text)); }

/* Collects reported lines. */
typedef struct {
    char text[8192];
    int count;
} messages;

static void collect(void *ctx, const char *msg) {
    messages *m = ctx;
    size_t used = strlen(m->text);
    snprintf(m->text + used, sizeof m->text - used, "%s\n", msg);
    m->count++;
}

static void opts(enqueue_options *o, messages *m, int skip_bad) {
    enqueue_options_init(o);
    memset(m, 0, sizeof *m);
    o->report = collect;
    o->report_ctx = m;
    o->skip_bad = skip_bad;
}

static int parse(const char *path, const enqueue_options *o, enqueue_batch *b, sd_error *err) {
    return enqueue_parse_file(path, o, b, err);
}

static void test_enqueue_txt_takes_one_prompt_per_line_skipping_blank_lines(void **state) {
    (void)state;
    const char *path = write_text("p.txt", "\xEF\xBB\xBF"
                                           "a cat\n\n   \r\nthe dog\r\n\nlast line");
    enqueue_options o;
    messages m;
    opts(&o, &m, 0);
    enqueue_batch b = {0};
    sd_error err = {0};
    assert_int_equal(parse(path, &o, &b, &err), 0);
    assert_int_equal(b.n, 3);
    assert_int_equal(b.bad, 0);
    static const char *prompts[] = {"a cat", "the dog", "last line"};
    static const int lines[] = {1, 4, 6};
    for (int i = 0; i < 3; i++) {
        const sd_job *j = &b.jobs[i];
        assert_string_equal(j->prompt, prompts[i]);
        char src[PATH_MAX + 16];
        snprintf(src, sizeof src, "%s:%d", path, lines[i]);
        assert_string_equal(j->source, src);
        assert_int_equal(j->seed, -1); /* derived at insert */
        assert_int_equal(j->steps, 20);
        assert_true(j->cfg_scale == 7.5);
        assert_int_equal(j->sampler, SD_SAMPLER_PNDM);
        assert_int_equal(j->width, 512);
        assert_int_equal(j->height, 512);
        assert_int_equal(j->clip_skip, 1);
        assert_string_equal(j->negative_prompt, "");
        assert_null(j->init_image);
    }
    enqueue_batch_free(&b);
}

static void test_enqueue_jsonl_reads_every_field_and_fills_defaults(void **state) {
    (void)state;
    write_text("img.png", "not really a png");
    write_text("mask.png", "not really a png");
    char real_img[PATH_MAX], real_mask[PATH_MAX];
    assert_non_null(realpath(tu_tmp("img.png"), real_img));
    assert_non_null(realpath(tu_tmp("mask.png"), real_mask));
    const char *path = write_text(
        "full.jsonl",
        "{\"prompt\": \"a red fox\", \"negative_prompt\": \"blurry\", \"seed\": 42, \"steps\": 30, "
        "\"cfg_scale\": 5, \"sampler\": \"euler\", \"karras\": true, \"width\": 640, \"height\": 384, "
        "\"clip_skip\": 2, \"init_image\": \"img.png\", \"mask\": \"mask.png\"}\n"
        "\n"
        "{\"caption\": \"caf\xc3\xa9 \xe2\x98\x95\"}\n"
        "{\"prompt\": \"img2img\", \"init_image\": \"img.png\", \"sampler\": \"ddim\"}\n");
    enqueue_options o;
    messages m;
    opts(&o, &m, 0);
    o.defaults.steps = 25;
    o.defaults.negative_prompt = "ugly";
    o.defaults.karras = 1;
    o.defaults.sampler = SD_SAMPLER_EULER;
    enqueue_batch b = {0};
    sd_error err = {0};
    if (parse(path, &o, &b, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(b.n, 3);
    const sd_job *j = &b.jobs[0];
    assert_string_equal(j->prompt, "a red fox");
    assert_string_equal(j->negative_prompt, "blurry");
    assert_int_equal(j->seed, 42);
    assert_int_equal(j->steps, 30);
    assert_true(j->cfg_scale == 5.0);
    assert_int_equal(j->sampler, SD_SAMPLER_EULER);
    assert_int_equal(j->karras, 1);
    assert_int_equal(j->width, 640);
    assert_int_equal(j->height, 384);
    assert_int_equal(j->clip_skip, 2);
    assert_string_equal(j->init_image, real_img); /* relative to the prompt file, stored absolute */
    assert_string_equal(j->mask, real_mask);
    assert_true(j->strength == 1.0); /* inpainting default */
    j = &b.jobs[1];
    assert_string_equal(j->prompt, "caf\xc3\xa9 \xe2\x98\x95");
    assert_string_equal(j->negative_prompt, "ugly");
    assert_int_equal(j->seed, -1);
    assert_int_equal(j->steps, 25);
    assert_int_equal(j->karras, 1);
    assert_non_null(strstr(j->source, ":3"));
    j = &b.jobs[2];
    assert_true(j->strength == 0.8); /* img2img default */
    assert_int_equal(j->sampler, SD_SAMPLER_DDIM);
    assert_int_equal(j->karras, 0); /* --karras only applies to sigma-based samplers */
    enqueue_batch_free(&b);

    /* --strength overrides the img2img default */
    opts(&o, &m, 0);
    o.defaults.strength = 0.6;
    assert_int_equal(parse(path, &o, &b, &err), 0);
    assert_true(b.jobs[2].strength == 0.6);
    assert_true(b.jobs[1].strength == 0); /* no init image, no strength */
    enqueue_batch_free(&b);
}

static void test_enqueue_csv_follows_rfc4180_quoting_and_ignores_unknown_columns(void **state) {
    (void)state;
    const char *path = write_text("p.csv", "image_id, Caption ,seed,steps,cfg_scale,sampler,width\r\n"
                                           "17,\"a cat, sitting\",5,,,,\r\n"
                                           "18,\"a \"\"quoted\"\" word\nand a second line\",,30,4.5,ddim,768\r\n"
                                           "\r\n"
                                           "19,plain,,,,,\r\n");
    enqueue_options o;
    messages m;
    opts(&o, &m, 0);
    enqueue_batch b = {0};
    sd_error err = {0};
    if (parse(path, &o, &b, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(b.n, 3);
    assert_string_equal(b.jobs[0].prompt, "a cat, sitting");
    assert_int_equal(b.jobs[0].seed, 5);
    assert_int_equal(b.jobs[0].steps, 20); /* empty cell: default */
    assert_string_equal(b.jobs[1].prompt, "a \"quoted\" word\nand a second line");
    assert_int_equal(b.jobs[1].seed, -1);
    assert_int_equal(b.jobs[1].steps, 30);
    assert_true(b.jobs[1].cfg_scale == 4.5);
    assert_int_equal(b.jobs[1].sampler, SD_SAMPLER_DDIM);
    assert_int_equal(b.jobs[1].width, 768);
    assert_string_equal(b.jobs[2].prompt, "plain");
    /* line numbers count physical lines, so the row after the quoted newline is on line 6 */
    assert_non_null(strstr(b.jobs[1].source, ":3"));
    assert_non_null(strstr(b.jobs[2].source, ":6"));
    /* the ignored column is mentioned once */
    assert_int_equal(m.count, 1);
    assert_non_null(strstr(m.text, ":1: note: ignoring columns 'image_id'"));
    enqueue_batch_free(&b);
}

typedef struct bad_case {
    const char *what;   /* the guarantee */
    const char *ext;    /* file type */
    const char *text;   /* whole file; the bad row is on line `line` */
    size_t len;         /* 0: strlen(text) (for texts with NUL bytes) */
    int line;
    const char *expect; /* substring of the message after "FILE:LINE: " */
} bad_case;

#define GOOD_J "{\"prompt\": \"fine\"}\n"
#define GOOD_CSV "prompt,steps\nfine,20\n"

static const bad_case bad_cases[] = {
    {"bad JSON", "jsonl", GOOD_J "{\"prompt\": \"x\",}\n", 0, 2, "invalid JSON"},
    {"JSON that is not an object", "jsonl", GOOD_J "[\"x\"]\n", 0, 2, "expected a JSON object, got an array"},
    {"missing prompt", "jsonl", GOOD_J "{\"steps\": 20}\n", 0, 2, "no prompt"},
    {"empty prompt", "jsonl", GOOD_J "{\"prompt\": \"\"}\n", 0, 2, "prompt is empty"},
    {"blank prompt", "jsonl", GOOD_J "{\"prompt\": \"  \\t \"}\n", 0, 2, "prompt is empty"},
    {"width not a multiple of 8", "jsonl", GOOD_J "{\"prompt\": \"x\", \"width\": 500}\n", 0, 2,
     "width must be a positive multiple of 8"},
    {"zero height", "jsonl", GOOD_J "{\"prompt\": \"x\", \"height\": 0}\n", 0, 2, "height must be a positive multiple"},
    {"negative width", "jsonl", GOOD_J "{\"prompt\": \"x\", \"width\": -64}\n", 0, 2, "width must be a positive"},
    {"zero steps", "jsonl", GOOD_J "{\"prompt\": \"x\", \"steps\": 0}\n", 0, 2, "steps must be in 1..1000, got 0"},
    {"too many steps", "jsonl", GOOD_J "{\"prompt\": \"x\", \"steps\": 1001}\n", 0, 2, "steps must be in 1..1000"},
    {"negative cfg", "jsonl", GOOD_J "{\"prompt\": \"x\", \"cfg_scale\": -1}\n", 0, 2, "cfg_scale must be in 0..100"},
    {"huge cfg", "jsonl", GOOD_J "{\"prompt\": \"x\", \"cfg_scale\": 100.5}\n", 0, 2, "cfg_scale must be in"},
    {"unknown sampler", "jsonl", GOOD_J "{\"prompt\": \"x\", \"sampler\": \"k_magic\"}\n", 0, 2,
     "unknown sampler 'k_magic'"},
    {"strength zero", "jsonl", GOOD_J "{\"prompt\": \"x\", \"init_image\": \"img.png\", \"strength\": 0}\n", 0, 2,
     "strength must be in (0, 1]"},
    {"strength above one", "jsonl", GOOD_J "{\"prompt\": \"x\", \"init_image\": \"img.png\", \"strength\": 1.5}\n", 0,
     2, "strength must be in (0, 1]"},
    {"strength without an init image", "jsonl", GOOD_J "{\"prompt\": \"x\", \"strength\": 0.5}\n", 0, 2,
     "strength needs an init_image"},
    {"mask without an init image", "jsonl", GOOD_J "{\"prompt\": \"x\", \"mask\": \"img.png\"}\n", 0, 2,
     "mask needs an init_image"},
    {"init image that does not exist", "jsonl", GOOD_J "{\"prompt\": \"x\", \"init_image\": \"nope.png\"}\n", 0, 2,
     "init_image 'nope.png' is not a readable file"},
    {"non-UTF-8 JSON line", "jsonl", GOOD_J "{\"prompt\": \"caf\xe9\"}\n", 0, 2, "not valid UTF-8"},
    {"steps as a string", "jsonl", GOOD_J "{\"prompt\": \"x\", \"steps\": \"20\"}\n", 0, 2,
     "steps must be an integer, got a string"},
    {"steps as a fraction", "jsonl", GOOD_J "{\"prompt\": \"x\", \"steps\": 20.5}\n", 0, 2,
     "steps must be an integer, got a number"},
    {"prompt as a number", "jsonl", GOOD_J "{\"prompt\": 5}\n", 0, 2, "prompt must be a string, got an integer"},
    {"null value", "jsonl", GOOD_J "{\"prompt\": \"x\", \"seed\": null}\n", 0, 2, "seed must be an integer, got null"},
    {"karras as a string", "jsonl", GOOD_J "{\"prompt\": \"x\", \"sampler\": \"euler\", \"karras\": \"yes\"}\n", 0, 2,
     "karras must be true or false, got a string"},
    {"negative seed", "jsonl", GOOD_J "{\"prompt\": \"x\", \"seed\": -5}\n", 0, 2, "seed must be >= 0"},
    {"unknown key", "jsonl", GOOD_J "{\"prompt\": \"x\", \"colour\": \"red\"}\n", 0, 2, "unknown key 'colour'"},
    {"duplicate key", "jsonl", GOOD_J "{\"prompt\": \"x\", \"prompt\": \"y\"}\n", 0, 2, "duplicate"},
    {"prompt and caption together", "jsonl", GOOD_J "{\"prompt\": \"x\", \"caption\": \"y\"}\n", 0, 2, "given twice"},
    {"karras with a sampler without sigmas", "jsonl",
     GOOD_J "{\"prompt\": \"x\", \"sampler\": \"ddim\", \"karras\": true}\n", 0, 2,
     "karras needs one of euler"},
    {"clip skip zero", "jsonl", GOOD_J "{\"prompt\": \"x\", \"clip_skip\": 0}\n", 0, 2, "clip_skip must be in 1..12"},
    {"csv unterminated quote", "csv", GOOD_CSV "\"never closed,20\n", 0, 3, "unterminated quoted field"},
    {"csv quote inside an unquoted field", "csv", GOOD_CSV "a \"b\" c,20\n", 0, 3, "quote inside an unquoted field"},
    {"csv text after a closing quote", "csv", GOOD_CSV "\"a\"b,20\n", 0, 3, "text after a closing quote"},
    {"csv wrong number of fields", "csv", GOOD_CSV "x\n", 0, 3, "has 1 fields, the header has 2"},
    {"csv steps not a number", "csv", GOOD_CSV "x,abc\n", 0, 3, "steps must be an integer, got 'abc'"},
    {"csv steps out of range", "csv", GOOD_CSV "x,5000\n", 0, 3, "steps must be in 1..1000"},
    {"csv non-UTF-8 prompt", "csv", GOOD_CSV "caf\xe9,20\n", 0, 3, "prompt is not valid UTF-8"},
    {"csv empty prompt", "csv", GOOD_CSV ",20\n", 0, 3, "prompt is empty"},
    {"csv NUL byte", "csv", GOOD_CSV "a\0b,20\n", sizeof(GOOD_CSV "a\0b,20\n") - 1, 3, "NUL byte"},
    {"txt non-UTF-8 line", "txt", "fine\ncaf\xe9\n", 0, 2, "not valid UTF-8"},
    {"txt overlong UTF-8", "txt", "fine\n\xc0\xaf\n", 0, 2, "not valid UTF-8"},
    {"txt UTF-16 surrogate", "txt", "fine\n\xed\xa0\x80\n", 0, 2, "not valid UTF-8"},
    {"txt NUL byte", "txt", "fine\nab\0cd\n", sizeof("fine\nab\0cd\n") - 1, 2, "NUL byte"},
};

static void test_enqueue_reports_each_bad_row_as_file_line_and_inserts_nothing_from_its_file(void **state) {
    (void)state;
    write_text("img.png", "not really a png");
    size_t ncases = sizeof bad_cases / sizeof bad_cases[0];
    for (size_t i = 0; i < ncases; i++) {
        const bad_case *c = &bad_cases[i];
        char name[64];
        snprintf(name, sizeof name, "bad%02zu.%s", i, c->ext);
        const char *path = write_bytes(name, c->text, c->len ? c->len : strlen(c->text));
        enqueue_options o;
        messages m;
        opts(&o, &m, 0);
        enqueue_batch b = {0};
        sd_error err = {0};
        int rc = parse(path, &o, &b, &err);
        if (rc != SD_EINPUT) fail_msg("%s: expected SD_EINPUT, got %d (%s)", c->what, rc, err.msg);
        char prefix[PATH_MAX + 32];
        snprintf(prefix, sizeof prefix, "%s:%d: ", path, c->line);
        if (strncmp(err.msg, prefix, strlen(prefix)) != 0 || !strstr(err.msg, c->expect))
            fail_msg("%s: message '%s' should start with '%s' and contain '%s'", c->what, err.msg, prefix, c->expect);
        if (b.n != 0) fail_msg("%s: %zu rows of a rejected file were kept", c->what, b.n);
        if (b.bad != 1 || m.count != 1) fail_msg("%s: %zu bad rows, %d messages", c->what, b.bad, m.count);
        enqueue_batch_free(&b);
    }
}

static void test_enqueue_skip_bad_reports_bad_rows_and_keeps_the_rest(void **state) {
    (void)state;
    const char *path = write_text("mixed.jsonl", "{\"prompt\": \"one\"}\n"
                                                 "{\"prompt\": \"two\", \"steps\": 0}\n"
                                                 "{\"prompt\": \"three\"}\n"
                                                 "not json\n");
    enqueue_options o;
    messages m;
    opts(&o, &m, 1);
    enqueue_batch b = {0};
    sd_error err = {0};
    assert_int_equal(parse(path, &o, &b, &err), 0);
    assert_int_equal(b.n, 2);
    assert_int_equal(b.bad, 2);
    assert_string_equal(b.jobs[0].prompt, "one");
    assert_string_equal(b.jobs[1].prompt, "three");
    assert_int_equal(m.count, 2);
    char want[PATH_MAX + 32];
    snprintf(want, sizeof want, "%s:2: steps", path);
    assert_non_null(strstr(m.text, want));
    snprintf(want, sizeof want, "%s:4: invalid JSON", path);
    assert_non_null(strstr(m.text, want));
    enqueue_batch_free(&b);

    /* without --skip-bad: the first bad row and how many more */
    opts(&o, &m, 0);
    assert_int_equal(parse(path, &o, &b, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, ":2: steps must be"));
    assert_non_null(strstr(err.msg, "and 1 more bad rows"));
    assert_int_equal(b.n, 0);
    enqueue_batch_free(&b);
}

static void test_enqueue_a_bad_file_leaves_rows_of_earlier_files_alone(void **state) {
    (void)state;
    const char *good = write_text("good.txt", "one\ntwo\n");
    enqueue_options o;
    messages m;
    opts(&o, &m, 0);
    enqueue_batch b = {0};
    sd_error err = {0};
    assert_int_equal(parse(good, &o, &b, &err), 0);
    const char *bad = write_text("bad.jsonl", "{\"prompt\": \"x\"}\n{\"prompt\": \"y\", \"width\": 7}\n");
    assert_int_equal(parse(bad, &o, &b, &err), SD_EINPUT);
    assert_int_equal(b.n, 2);
    assert_string_equal(b.jobs[1].prompt, "two");
    enqueue_batch_free(&b);
}

static void test_enqueue_rejects_unusable_files_as_a_whole(void **state) {
    (void)state;
    enqueue_options o;
    messages m;
    opts(&o, &m, 1); /* not even --skip-bad accepts these */
    enqueue_batch b = {0};
    sd_error err = {0};
    static const struct {
        const char *name, *text, *expect;
    } cases[] = {
        {"noprompt.csv", "text,steps\nx,20\n", ":1: no 'prompt' or 'caption' column"},
        {"twice.csv", "prompt,caption\nx,y\n", "column 'caption' appears twice"},
        {"empty.csv", "", "empty file"},
        {"badheader.csv", "prompt,\"steps\n", ":1: header: unterminated quoted field"},
        {"prompts.yaml", "- a cat\n", "unknown prompt file format"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = write_text(cases[i].name, cases[i].text);
        int rc = parse(path, &o, &b, &err);
        if (rc != SD_EINPUT || !strstr(err.msg, cases[i].expect))
            fail_msg("%s: got %d '%s', expected '%s'", cases[i].name, rc, err.msg, cases[i].expect);
        assert_int_equal(b.n, 0);
        assert_int_equal(b.bad, 0);
    }
    assert_int_equal(parse(tu_tmp("missing.txt"), &o, &b, &err), SD_ENOTFOUND);
    enqueue_batch_free(&b);
}

/* ---- the commands ---- */

static jobdb *open_existing(const char *path) {
    jobdb *db = NULL;
    sd_error err = {0};
    if (jobdb_open(&db, path, NULL, &err) < 0) fail_msg("%s", err.msg);
    return db;
}

static sd_job job_at(jobdb *db, int64_t id) {
    sd_job j;
    sd_error err = {0};
    if (jobdb_job_get(db, id, &j, &err) != 1) fail_msg("job %lld missing: %s", (long long)id, err.msg);
    return j;
}

static int64_t total_jobs(const char *db_path) {
    jobdb *db = open_existing(db_path);
    jobdb_summary s;
    sd_error err = {0};
    assert_int_equal(jobdb_summary_get(db, 0, &s, &err), 0);
    int64_t n = s.total;
    jobdb_summary_free(&s);
    jobdb_close(db);
    return n;
}

static void test_enqueue_command_repeat_gives_consecutive_ids_and_seeds_from_the_job_id(void **state) {
    (void)state;
    const char *db_path = tu_tmp("cmd_repeat.db");
    unlink(db_path);
    const char *prompts = write_text("two.txt", "a lighthouse\na harbour\n");
    char *out = NULL;
    int rc = tu_sh(&out, "%s enqueue --db %s --repeat 3 --seed-base 100 %s 2>&1", tu_bin(), db_path, prompts);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    assert_non_null(strstr(out, "enqueued 6 jobs (ids 1..6)"));
    free(out);
    jobdb *db = open_existing(db_path);
    for (int id = 1; id <= 6; id++) {
        sd_job j = job_at(db, id);
        assert_string_equal(j.prompt, id <= 3 ? "a lighthouse" : "a harbour");
        assert_int_equal(j.seed, 100 + id - 1); /* seed = seed_base + id - 1 */
        sd_job_free(&j);
    }
    jobdb_close(db);
    /* a second enqueue continues ids and seeds */
    rc = tu_sh(&out, "%s enqueue --db %s --seed-base 100 %s 2>&1", tu_bin(), db_path, prompts);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    free(out);
    db = open_existing(db_path);
    sd_job j = job_at(db, 8);
    assert_string_equal(j.prompt, "a harbour");
    assert_int_equal(j.seed, 107);
    sd_job_free(&j);
    jobdb_close(db);
}

static void test_enqueue_command_flags_set_the_defaults(void **state) {
    (void)state;
    const char *db_path = tu_tmp("cmd_flags.db");
    unlink(db_path);
    const char *prompts = write_text("one.txt", "a bridge\n");
    char *out = NULL;
    int rc = tu_sh(&out,
                   "%s enqueue --db=%s --steps 30 --cfg-scale 5 --sampler dpmpp_2m --karras -W 640 -H 384 "
                   "--negative 'low quality' --clip-skip 2 %s 2>&1",
                   tu_bin(), db_path, prompts);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    free(out);
    jobdb *db = open_existing(db_path);
    sd_job j = job_at(db, 1);
    assert_int_equal(j.steps, 30);
    assert_true(j.cfg_scale == 5.0);
    assert_int_equal(j.sampler, SD_SAMPLER_DPMPP_2M);
    assert_int_equal(j.karras, 1);
    assert_int_equal(j.width, 640);
    assert_int_equal(j.height, 384);
    assert_string_equal(j.negative_prompt, "low quality");
    assert_int_equal(j.clip_skip, 2);
    sd_job_free(&j);
    jobdb_close(db);
    /* bad flag values are usage errors (exit 2) with one line naming the flag */
    static const struct {
        const char *flags, *expect;
    } bad[] = {
        {"--steps 0", "--steps"},        {"-W 500", "--width"},      {"--cfg-scale nan", "--cfg-scale"},
        {"--strength 0", "--strength"},  {"--karras", "--karras"},   {"--sampler magic", "unknown sampler"},
        {"--repeat 0", "--repeat"},      {"--frobnicate", "unknown option"}, {"--seed-base -1", "--seed-base"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rc = tu_sh(&out, "%s enqueue --db %s %s %s 2>&1", tu_bin(), db_path, bad[i].flags, prompts);
        if (rc != 2 || !strstr(out, bad[i].expect) || strncmp(out, "sdrender: ", 10))
            fail_msg("'%s': exit %d, output '%s'", bad[i].flags, rc, out);
        free(out);
    }
    assert_int_equal(total_jobs(db_path), 1);
}

static void test_enqueue_command_with_a_bad_row_enqueues_nothing_and_exits_2(void **state) {
    (void)state;
    const char *db_path = tu_tmp("cmd_bad.db");
    unlink(db_path);
    const char *good = write_text("ok.txt", "first\nsecond\n");
    char *out = NULL;
    assert_int_equal(tu_sh(&out, "%s enqueue --db %s %s 2>&1", tu_bin(), db_path, good), 0);
    free(out);
    const char *bad = write_text("rows.jsonl", "{\"prompt\": \"fine\"}\n{\"prompt\": \"x\", \"steps\": 5000}\n");
    int rc = tu_sh(&out, "%s enqueue --db %s %s %s 2>&1", tu_bin(), db_path, good, bad);
    assert_int_equal(rc, 2);
    char want[PATH_MAX + 32];
    snprintf(want, sizeof want, "%s:2: steps must be in 1..1000, got 5000", bad);
    if (!strstr(out, want)) fail_msg("missing '%s' in: %s", want, out);
    assert_non_null(strstr(out, "sdrender: nothing enqueued: 1 bad row"));
    free(out);
    assert_int_equal(total_jobs(db_path), 2); /* the good file in the same command did not go in either */
    /* --skip-bad enqueues the good rows */
    rc = tu_sh(&out, "%s enqueue --db %s --skip-bad %s 2>&1", tu_bin(), db_path, bad);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "skipped 1 bad row"));
    free(out);
    assert_int_equal(total_jobs(db_path), 3);
    /* a missing file: nothing, exit 2 */
    rc = tu_sh(&out, "%s enqueue --db %s %s %s 2>&1", tu_bin(), db_path, good, tu_tmp("nope.txt"));
    assert_int_equal(rc, 2);
    free(out);
    assert_int_equal(total_jobs(db_path), 3);
}

static void test_status_command_json_has_counts_rate_eta_and_errors(void **state) {
    (void)state;
    const char *db_path = tu_tmp("cmd_status.db");
    unlink(db_path);
    const char *prompts = write_text("four.txt", "a\nb\nc\nd\n");
    char *out = NULL;
    assert_int_equal(tu_sh(&out, "%s enqueue --db %s %s 2>&1", tu_bin(), db_path, prompts), 0);
    free(out);
    /* one run: two done, one failed for good, one pending */
    jobdb *db = open_existing(db_path);
    sd_error err = {0};
    jobdb_set_time(db, 2000000.0);
    jobdb_run_config c = {.ranks = 2, .host = "nodeX"};
    assert_int_equal(jobdb_run_begin(db, &c, &err), 0);
    sd_job j;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(jobdb_claim(db, "nodeX:1", &j, &err), 1);
        sd_job_free(&j);
    }
    jobdb_set_time(db, 2000030.0);
    const char *sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert_int_equal(jobdb_finish(db, 1, "o1.png", sha, 10, &err), 0);
    assert_int_equal(jobdb_finish(db, 2, "o2.png", sha, 10, &err), 0);
    assert_int_equal(jobdb_fail(db, 3, "NaN in latents", 0, NULL, &err), 0);
    assert_int_equal(jobdb_run_end(db, "complete", &err), 0);
    jobdb_close(db);

    int rc = tu_sh(&out, "%s status --db %s --json", tu_bin(), db_path);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    json_error_t jerr;
    json_t *o = json_loads(out, 0, &jerr);
    if (!o) fail_msg("not JSON (%s): %s", jerr.text, out);
    free(out);
    assert_int_equal(json_integer_value(json_object_get(o, "pending")), 1);
    assert_int_equal(json_integer_value(json_object_get(o, "running")), 0);
    assert_int_equal(json_integer_value(json_object_get(o, "done")), 2);
    assert_int_equal(json_integer_value(json_object_get(o, "failed")), 1);
    assert_int_equal(json_integer_value(json_object_get(o, "total")), 4);
    double ipm = json_number_value(json_object_get(o, "images_per_minute"));
    assert_true(ipm > 3.999 && ipm < 4.001); /* 2 images 30 s after the run began */
    double eta = json_number_value(json_object_get(o, "eta_seconds"));
    assert_true(eta > 14.99 && eta < 15.01); /* 1 left */
    json_t *errs = json_object_get(o, "last_errors");
    assert_int_equal(json_array_size(errs), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(errs, 0), "error")), "NaN in latents");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(errs, 0), "job")), 3);
    json_t *run = json_object_get(o, "last_run");
    assert_string_equal(json_string_value(json_object_get(run, "host")), "nodeX");
    assert_string_equal(json_string_value(json_object_get(run, "end_status")), "complete");
    assert_int_equal(json_integer_value(json_object_get(o, "schema_version")), jobdb_schema_latest());
    json_decref(o);

    rc = tu_sh(&out, "%s status --db %s --check", tu_bin(), db_path);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    assert_non_null(strstr(out, "4 jobs: 2 done (50.0%), 0 running, 1 pending, 1 failed"));
    assert_non_null(strstr(out, "4.00 images/minute"));
    assert_non_null(strstr(out, "ETA 15s"));
    assert_non_null(strstr(out, "NaN in latents"));
    assert_non_null(strstr(out, "integrity: ok"));
    free(out);
}

static void test_status_command_gives_one_line_errors_for_bad_databases(void **state) {
    (void)state;
    char *out = NULL;
    const char *junk = write_text("junk.db", "this is a text file that somebody named junk.db, and it is long enough "
                                             "to have a full SQLite header's worth of bytes\n");
    assert_int_equal(tu_sh(&out, "%s status --db %s 2>&1", tu_bin(), junk), 2);
    assert_non_null(strstr(out, "not an SQLite database"));
    assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1); /* exactly one line */
    free(out);
    assert_int_equal(tu_sh(&out, "%s status --db %s 2>&1", tu_bin(), tu_tmp("absent.db")), 2);
    assert_non_null(strstr(out, "no such job database"));
    free(out);
    assert_false(sd_fs_is_file(tu_tmp("absent.db")));
    assert_int_equal(tu_sh(&out, "%s status 2>&1", tu_bin()), 2);
    assert_non_null(strstr(out, "--db"));
    free(out);
}

static void test_enqueue_and_status_have_help(void **state) {
    (void)state;
    char *out = NULL;
    assert_int_equal(tu_sh(&out, "%s enqueue --help", tu_bin()), 0);
    assert_non_null(strstr(out, "--seed-base"));
    assert_non_null(strstr(out, "--skip-bad"));
    free(out);
    assert_int_equal(tu_sh(&out, "%s status --help", tu_bin()), 0);
    assert_non_null(strstr(out, "--json"));
    free(out);
    assert_int_equal(tu_sh(&out, "%s --help", tu_bin()), 0);
    assert_non_null(strstr(out, "enqueue"));
    assert_non_null(strstr(out, "status"));
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enqueue_txt_takes_one_prompt_per_line_skipping_blank_lines),
        cmocka_unit_test(test_enqueue_jsonl_reads_every_field_and_fills_defaults),
        cmocka_unit_test(test_enqueue_csv_follows_rfc4180_quoting_and_ignores_unknown_columns),
        cmocka_unit_test(test_enqueue_reports_each_bad_row_as_file_line_and_inserts_nothing_from_its_file),
        cmocka_unit_test(test_enqueue_skip_bad_reports_bad_rows_and_keeps_the_rest),
        cmocka_unit_test(test_enqueue_a_bad_file_leaves_rows_of_earlier_files_alone),
        cmocka_unit_test(test_enqueue_rejects_unusable_files_as_a_whole),
        cmocka_unit_test(test_enqueue_command_repeat_gives_consecutive_ids_and_seeds_from_the_job_id),
        cmocka_unit_test(test_enqueue_command_flags_set_the_defaults),
        cmocka_unit_test(test_enqueue_command_with_a_bad_row_enqueues_nothing_and_exits_2),
        cmocka_unit_test(test_status_command_json_has_counts_rate_eta_and_errors),
        cmocka_unit_test(test_status_command_gives_one_line_errors_for_bad_databases),
        cmocka_unit_test(test_enqueue_and_status_have_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
