/* Names of the samplers, shared by the CLI, job files and PNG metadata. */
#include <string.h>

#include "sampler.h"

static const struct {
    const char *name, *alias, *a1111;
    int sigmas;
} names[SD_SAMPLER_COUNT] = {
    [SD_SAMPLER_DDIM] = {"ddim", NULL, "DDIM", 0},
    [SD_SAMPLER_PNDM] = {"pndm", "plms", "PLMS", 0},
    [SD_SAMPLER_EULER] = {"euler", NULL, "Euler", 1},
    [SD_SAMPLER_EULER_A] = {"euler_a", "euler-a", "Euler a", 1},
    [SD_SAMPLER_LMS] = {"lms", NULL, "LMS", 1},
    [SD_SAMPLER_HEUN] = {"heun", NULL, "Heun", 1},
    [SD_SAMPLER_DPMPP_2M] = {"dpm++2m", "dpmpp_2m", "DPM++ 2M", 1},
    [SD_SAMPLER_UNIPC] = {"unipc", NULL, "UniPC", 1},
    [SD_SAMPLER_DDPM] = {"ddpm", NULL, "DDPM", 0},
};

int sampler_kind_parse(const char *name, sampler_kind *out) {
    for (int i = 0; i < SD_SAMPLER_COUNT; i++) {
        if (!strcmp(name, names[i].name) || (names[i].alias && !strcmp(name, names[i].alias))) {
            *out = (sampler_kind)i;
            return 0;
        }
    }
    return -1;
}

const char *sampler_kind_name(sampler_kind k) {
    return (unsigned)k < SD_SAMPLER_COUNT ? names[k].name : "?";
}

const char *sampler_kind_a1111_name(sampler_kind k, int karras) {
    if ((unsigned)k >= SD_SAMPLER_COUNT) return "?";
    if (!karras || !sampler_kind_has_karras(k)) return names[k].a1111;
    switch (k) {
    case SD_SAMPLER_EULER: return "Euler Karras";
    case SD_SAMPLER_LMS: return "LMS Karras";
    case SD_SAMPLER_HEUN: return "Heun Karras";
    case SD_SAMPLER_DPMPP_2M: return "DPM++ 2M Karras";
    case SD_SAMPLER_UNIPC: return "UniPC Karras";
    default: return names[k].a1111;
    }
}

const char *sampler_kind_list(void) { return "ddim|pndm|euler|euler_a|lms|heun|dpm++2m|unipc|ddpm"; }

int sampler_kind_has_sigmas(sampler_kind k) { return (unsigned)k < SD_SAMPLER_COUNT && names[k].sigmas; }

int sampler_kind_has_karras(sampler_kind k) { return sampler_kind_has_sigmas(k) && k != SD_SAMPLER_EULER_A; }
