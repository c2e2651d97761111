#include "runner_msg.h"

#include <stdlib.h>
#include <string.h>

json_t *runner_job_to_json(const sd_job *job, const char *output_path, const char *model_sha256) {
    json_t *j = json_pack("{s:I,s:s,s:s,s:I,s:i,s:f,s:s,s:b,s:i,s:i,s:i,s:f,s:i,s:s}", "id", (json_int_t)job->id,
                          "prompt", job->prompt ? job->prompt : "", "negative_prompt",
                          job->negative_prompt ? job->negative_prompt : "", "seed", (json_int_t)job->seed, "steps",
                          job->steps, "cfg_scale", job->cfg_scale, "sampler", sampler_kind_name(job->sampler), "karras",
                          job->karras, "width", job->width, "height", job->height, "clip_skip", job->clip_skip,
                          "strength", job->strength, "attempts", job->attempts, "output", output_path);
    if (!j) return NULL;
    if (job->init_image) json_object_set_new(j, "init_image", json_string(job->init_image));
    if (job->mask) json_object_set_new(j, "mask", json_string(job->mask));
    json_object_set_new(j, "size_cond", json_pack("[i,i,i,i,i,i]", job->orig_width, job->orig_height, job->crop_top,
                                                  job->crop_left, job->target_width, job->target_height));
    if (job->upscale) json_object_set_new(j, "noise_level", json_integer(job->noise_level));
    json_object_set_new(j, "rng", json_string(sd_rng_kind_name(job->rng)));
    json_object_set_new(j, "model_sha256", json_string(model_sha256 ? model_sha256 : ""));
    json_object_set_new(j, "prompt_syntax", json_string(sd_prompt_syntax_name(job->prompt_syntax)));
    if (job->loras) json_object_set_new(j, "loras", json_string(job->loras));
    if (job->lora_dir) json_object_set_new(j, "lora_dir", json_string(job->lora_dir));
    if (job->lora_set) json_object_set_new(j, "lora_set", json_string(job->lora_set));
    return j;
}

static char *dup_str(json_t *j, const char *key) {
    const char *s = json_string_value(json_object_get(j, key));
    return s ? strdup(s) : NULL;
}

int runner_job_from_json(json_t *j, sd_job *job, const char **output, const char **model_sha256, sd_error *err) {
    memset(job, 0, sizeof *job);
    json_t *sampler = json_object_get(j, "sampler");
    if (!json_is_integer(json_object_get(j, "id")) || !json_is_string(json_object_get(j, "prompt")) ||
        !json_is_string(sampler) || !json_is_string(json_object_get(j, "output")))
        return sd_err(err, SD_EINTERNAL, "malformed job message from the master");
    job->id = json_integer_value(json_object_get(j, "id"));
    job->prompt = dup_str(j, "prompt");
    job->negative_prompt = dup_str(j, "negative_prompt");
    job->init_image = dup_str(j, "init_image");
    job->mask = dup_str(j, "mask");
    job->seed = json_integer_value(json_object_get(j, "seed"));
    job->steps = (int)json_integer_value(json_object_get(j, "steps"));
    job->cfg_scale = json_number_value(json_object_get(j, "cfg_scale"));
    job->karras = json_is_true(json_object_get(j, "karras"));
    job->width = (int)json_integer_value(json_object_get(j, "width"));
    job->height = (int)json_integer_value(json_object_get(j, "height"));
    job->clip_skip = (int)json_integer_value(json_object_get(j, "clip_skip"));
    job->strength = json_number_value(json_object_get(j, "strength"));
    job->attempts = (int)json_integer_value(json_object_get(j, "attempts"));
    json_t *cond = json_object_get(j, "size_cond"); /* SDXL: original w, h, crop top, left, target w, h */
    int *cv[6] = {&job->orig_width, &job->orig_height, &job->crop_top, &job->crop_left, &job->target_width,
                  &job->target_height};
    for (int i = 0; i < 6; i++) *cv[i] = (int)json_integer_value(json_array_get(cond, (size_t)i));
    json_t *nl = json_object_get(j, "noise_level");
    job->upscale = json_is_integer(nl);
    job->noise_level = job->upscale ? (int)json_integer_value(nl) : 0;
    job->loras = dup_str(j, "loras");
    job->lora_dir = dup_str(j, "lora_dir");
    job->lora_set = dup_str(j, "lora_set");
    const char *rng = json_string_value(json_object_get(j, "rng"));
    if (rng && sd_rng_kind_parse(rng, &job->rng) < 0) {
        sd_job_free(job);
        return sd_err(err, SD_EINTERNAL, "job message names an unknown rng '%s'", rng);
    }
    const char *syntax = json_string_value(json_object_get(j, "prompt_syntax"));
    if (syntax && sd_prompt_syntax_parse(syntax, &job->prompt_syntax) < 0) {
        sd_job_free(job);
        return sd_err(err, SD_EINTERNAL, "job message names an unknown prompt syntax");
    }
    if (!job->prompt || !job->negative_prompt) {
        sd_job_free(job);
        return sd_err(err, SD_ENOMEM, "out of memory");
    }
    if (sampler_kind_parse(json_string_value(sampler), &job->sampler) < 0) {
        sd_job_free(job);
        return sd_err(err, SD_EINTERNAL, "job message names an unknown sampler");
    }
    *output = json_string_value(json_object_get(j, "output"));
    *model_sha256 = json_string_value(json_object_get(j, "model_sha256"));
    if (!*model_sha256) *model_sha256 = "";
    return 0;
}
