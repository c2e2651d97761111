/*
 * fuzz_config.c - the model config JSON readers (unet, vae, text_encoder, scheduler config.json:
 * *_config_from_json with the key tables of config_keys.c). Input: one byte choosing the kind, then
 * the JSON text. Property: an accepted U-Net/VAE config has level counts within SD_MAX_LEVELS.
 */
#include <stdlib.h>

#include "config.h"
#include "fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    char *text = fuzz_strndup(data + 1, size - 1);
    sd_error err = {0};
    switch (data[0] % 4) {
    case 0: {
        unet_config c;
        if (unet_config_from_json(&c, text, &err) == 0) {
            if (c.n_levels < 1 || c.n_levels > SD_MAX_LEVELS) fuzz_fail("unet n_levels %d", c.n_levels);
            for (int l = 0; l < c.n_levels; l++) (void)unet_config_head_dim(&c, l);
            (void)unet_config_check_attn(&c, &err);
        }
        break;
    }
    case 1: {
        vae_config c;
        if (vae_config_from_json(&c, text, &err) == 0) {
            if (c.n_levels < 1 || c.n_levels > SD_MAX_LEVELS) fuzz_fail("vae n_levels %d", c.n_levels);
            (void)vae_scale_factor(&c);
        }
        break;
    }
    case 2: {
        clip_config c;
        (void)clip_config_from_json(&c, text, &err);
        break;
    }
    default: {
        sched_config c;
        (void)sched_config_from_json(&c, text, &err);
        break;
    }
    }
    free(text);
    return 0;
}
