/*
 * fuzz_a1111.c - the A1111 `parameters` text (core/pipeline/settings.c), two ways, chosen by the
 * first byte:
 *   even: any text through sd_settings_parse_a1111 (what a PNG from anywhere carries);
 *   odd:  a round trip: settings built from the input (numbers from the next 24 bytes; prompt,
 *         negative prompt, model hash, model name and LoRA hashes from the rest, separated by
 *         "\n%%\n") are written with sd_settings_format_a1111, parsed back, and must come back equal.
 * Values that are not UTF-8 come back with U+FFFD in place of each bad sequence (the text must stay
 * UTF-8 for PNG's iTXt). The round trip's exceptions are the format's own ambiguities, which A1111 shares: a prompt with
 * a line starting "Negative prompt: ", and newlines ending the prompt or the negative prompt
 * (the reader strips them), are not expected to survive.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"
#include "settings.h"
#include "unicode.h"

static uint32_t take(const uint8_t **p, int bytes) {
    uint32_t v = 0;
    for (int i = 0; i < bytes; i++) v = v << 8 | *(*p)++;
    return v;
}

/* 1 when the prompt has a line that the reader would take as the negative prompt's start */
static int has_negative_line(const char *s) {
    for (const char *p = s; p; p = strchr(p, '\n')) {
        if (*p == '\n') p++;
        if (!strncmp(p, "Negative prompt: ", 17)) return 1;
    }
    return 0;
}

static int utf8(const char *s) {
    return uni_utf8_is_valid((const unsigned char *)s, strlen(s));
}

static int ends_with_newline(const char *s) {
    size_t n = strlen(s);
    return n && s[n - 1] == '\n';
}

static void round_trip(const uint8_t *data, size_t size) {
    if (size < 24) return;
    const uint8_t *p = data;
    sd_settings s;
    sd_settings_default(&s);
    s.steps = 1 + (int)(take(&p, 2) % SD_MAX_STEPS);
    s.cfg_scale = (float)take(&p, 2) / 100.0f;
    s.seed = (int64_t)((uint64_t)take(&p, 4) << 31 | take(&p, 4) >> 1);
    s.width = 8 * (1 + (int)(take(&p, 2) % 1024));
    s.height = 8 * (1 + (int)(take(&p, 2) % 1024));
    uint32_t flags = take(&p, 4);
    s.sampler = (sampler_kind)(flags % SD_SAMPLER_COUNT);
    s.karras = (flags >> 4) & 1;
    s.clip_skip = 1 + (int)((flags >> 5) % SD_MAX_CLIP_SKIP);
    s.rng = (flags >> 9) & 1 ? SD_RNG_CUDA : SD_RNG_CPU;
    s.upscale = (flags >> 10) & 1;
    s.noise_level = s.upscale ? (int)((flags >> 11) % (SD_MAX_NOISE_LEVEL + 1)) : s.noise_level;
    int has_init = (flags >> 20) & 1;
    s.init_image = has_init ? "in.png" : NULL;
    s.strength = has_init ? (double)(1 + take(&p, 2) % 1000) / 1000.0 : 0;
    if (!has_init) p += 2;
    s.eta = 0;

    const uint8_t *parts[5];
    size_t lens[5];
    int n = fuzz_split(p, size - 24, parts, lens, 5);
    char *str[5] = {0};
    for (int i = 0; i < 5; i++) str[i] = i < n ? fuzz_strndup(parts[i], lens[i]) : fuzz_strndup("", 0);
    s.prompt = str[0];
    s.negative = str[1];
    s.lora_hashes = str[4];
    char *text = sd_settings_format_a1111(&s, str[2], str[3]);
    if (!text) fuzz_fail("sd_settings_format_a1111 returned NULL");
    if (utf8(s.prompt) && utf8(s.negative) && !utf8(text)) fuzz_fail("the text is not UTF-8:\n%s", text);
    sd_settings_parsed got;
    sd_error err = {0};
    if (sd_settings_parse_a1111(text, &got, &err) < 0) fuzz_fail("cannot read back what was written: %s\n%s", err.msg, text);
#define SAME(cond, what) if (!(cond)) fuzz_fail("round trip changed %s:\n%s", what, text)
    if (!has_negative_line(s.prompt) && !ends_with_newline(s.prompt)) {
        SAME(!strcmp(got.prompt, s.prompt), "the prompt");
        if (!ends_with_newline(s.negative)) SAME(!strcmp(got.negative, s.negative), "the negative prompt");
    }
    SAME(got.s.steps == s.steps, "Steps");
    SAME(got.s.cfg_scale == s.cfg_scale, "CFG scale");
    SAME(got.s.seed == s.seed, "Seed");
    SAME(got.s.width == s.width && got.s.height == s.height, "Size");
    SAME(!strcmp(sampler_kind_a1111_name(got.s.sampler, got.s.karras), sampler_kind_a1111_name(s.sampler, s.karras)),
         "Sampler");
    SAME(got.s.clip_skip == s.clip_skip, "Clip skip");
    SAME(got.s.rng == s.rng, "RNG");
    SAME(got.s.upscale == s.upscale && (!s.upscale || got.s.noise_level == s.noise_level), "Noise level");
    if (has_init && !s.upscale) SAME(got.s.strength == s.strength, "Denoising strength");
    /* values: exact when UTF-8 (invalid sequences are written as U+FFFD) */
    if (*str[2] && utf8(str[2]) && strlen(str[2]) < sizeof got.model_hash) SAME(!strcmp(got.model_hash, str[2]), "Model hash");
    if (*str[3] && utf8(str[3])) SAME(got.model_name && !strcmp(got.model_name, str[3]), "Model");
    if (*str[4] && utf8(str[4])) SAME(got.lora_hashes && !strcmp(got.lora_hashes, str[4]), "Lora hashes");
#undef SAME
    sd_settings_parsed_free(&got);
    free(text);
    for (int i = 0; i < 5; i++) free(str[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (data[0] & 1) {
        round_trip(data + 1, size - 1);
        return 0;
    }
    char *text = fuzz_strndup(data + 1, size - 1);
    sd_settings_parsed got;
    sd_error err = {0};
    if (sd_settings_parse_a1111(text, &got, &err) == 0) sd_settings_parsed_free(&got);
    free(text);
    return 0;
}
