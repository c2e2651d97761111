/*
 * sampler.h - the diffusion samplers (schedulers) sdrender offers.
 *
 * Names on the command line and in job files: ddim, pndm, euler, euler_a,
 * lms, heun, dpm++2m, unipc. `--karras` switches the sigma-based ones to
 * Karras sigmas.
 */
#ifndef SD_SAMPLER_H
#define SD_SAMPLER_H

typedef enum sd_sampler_kind {
    SD_SAMPLER_DDIM = 0,
    SD_SAMPLER_PNDM,
    SD_SAMPLER_EULER,
    SD_SAMPLER_EULER_A,
    SD_SAMPLER_LMS,
    SD_SAMPLER_HEUN,
    SD_SAMPLER_DPMPP_2M,
    SD_SAMPLER_UNIPC,
    SD_SAMPLER_COUNT
} sd_sampler_kind;

/* Parses a sampler name (also accepts "dpmpp_2m"); returns 0 or -1 when unknown. */
int sd_sampler_parse(const char *name, sd_sampler_kind *out);
/* Canonical command-line name ("dpm++2m"). */
const char *sd_sampler_name(sd_sampler_kind k);
/* Name as AUTOMATIC1111 writes it in PNG parameters ("DPM++ 2M", "Euler a"). */
const char *sd_sampler_a1111_name(sd_sampler_kind k, int karras);
/* "ddim|pndm|euler|..." for help texts. */
const char *sd_sampler_list(void);
/* True for samplers that use sigmas (and so accept --karras). */
int sd_sampler_has_sigmas(sd_sampler_kind k);

#endif
