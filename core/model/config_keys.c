/*
 * config_keys.c - the keys each config.json kind accepts, as data (see config.h).
 *
 * One table per kind, three lists:
 *   read     implemented: the parser reads the key (and checks its value there);
 *   ignored  no difference to fp32 inference (dropout, initialization, bookkeeping,
 *            options of features that are refused elsewhere);
 *   fixed    changes the network or the schedule and is not implemented: accepted only
 *            at one of its values (JSON text: diffusers' / transformers' default), or as a
 *            list made of them (only_cross_attention: [false, false]).
 * A key in no list is refused as well: a newer diffusers may have added it, and sdrender
 * cannot tell whether it matters. Other keys starting with '_' are bookkeeping that
 * diffusers itself drops before building a model (ConfigMixin), and pass.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

/*
 * UNet2DConditionModel and UNet2DModel (diffusers 0.27). _class_name: one of the two;
 * add_attention: UNet2DModel's mid-block attention. Ignored: addition_embed_type_num_heads
 * (only with addition_embed_type), mid_block_only_cross_attention (only for
 * UNetMidBlock2DSimpleCrossAttn, refused), num_train_timesteps (UNet2DModel's "learned"
 * time embedding only).
 */
static const config_table unet_table = {
    .read = (const char *const[]){
        "_class_name", "act_fn", "add_attention", "addition_embed_type", "addition_time_embed_dim",
        "attention_head_dim", "block_out_channels", "cross_attention_dim", "down_block_types", "downsample_padding",
        "flip_sin_to_cos", "freq_shift", "in_channels", "layers_per_block", "mid_block_type", "norm_eps",
        "norm_num_groups", "num_attention_heads", "num_class_embeds", "only_cross_attention", "out_channels",
        "projection_class_embeddings_input_dim", "sample_size", "time_embedding_dim", "transformer_layers_per_block",
        "up_block_types", "upcast_attention", "use_linear_projection", NULL},
    .ignored = (const char *const[]){
        "_diffusers_version", "addition_embed_type_num_heads", "dropout", "mid_block_only_cross_attention",
        "num_train_timesteps", NULL},
    .fixed = (const config_fixed_key[]){
        {"attention_type", {"\"default\""}},
        {"attn_norm_num_groups", {"null"}}, {"center_input_sample", {"false"}}, {"class_embed_type", {"null"}},
        {"class_embeddings_concat", {"false"}}, {"conv_in_kernel", {"3"}}, {"conv_out_kernel", {"3"}},
        {"cross_attention_norm", {"null"}}, {"downsample_type", {"\"conv\""}},
        {"dual_cross_attention", {"false"}}, {"encoder_hid_dim", {"null"}}, {"encoder_hid_dim_type", {"null"}},
        {"mid_block_scale_factor", {"1"}},
        {"resnet_out_scale_factor", {"1"}},
        {"resnet_skip_time_act", {"false"}}, {"resnet_time_scale_shift", {"\"default\""}},
        {"reverse_transformer_layers_per_block", {"null"}}, {"time_cond_proj_dim", {"null"}},
        {"time_embedding_act_fn", {"null"}}, {"time_embedding_type", {"\"positional\""}},
        {"timestep_post_act", {"null"}}, {"upsample_type", {"\"conv\""}}, {NULL, {NULL}}},
};

/* AutoencoderKL (diffusers 0.27, and the switches later versions added). force_upcast: fp16 only,
 * sdrender computes in fp32. */
static const config_table vae_table = {
    .read = (const char *const[]){
        "act_fn", "block_out_channels", "in_channels", "latent_channels", "layers_per_block", "norm_num_groups",
        "out_channels", "sample_size", "scaling_factor", NULL},
    .ignored = (const char *const[]){"_diffusers_version", "force_upcast", NULL},
    .fixed = (const config_fixed_key[]){
        {"_class_name", {"\"AutoencoderKL\""}}, {"down_block_types", {"\"DownEncoderBlock2D\""}},
        {"latents_mean", {"null"}}, {"latents_std", {"null"}}, {"mid_block_add_attention", {"true"}},
        {"shift_factor", {"null"}}, {"up_block_types", {"\"UpDecoderBlock2D\""}}, {"use_post_quant_conv", {"true"}},
        {"use_quant_conv", {"true"}}, {NULL, {NULL}}},
};

/* transformers' CLIPTextConfig (and PretrainedConfig switches it may carry). The special token ids
 * are ignored: the tokenizer files decide them; torch_dtype: weights are read in their stored dtype. */
static const config_table clip_table = {
    .read = (const char *const[]){
        "hidden_act", "hidden_size", "intermediate_size", "layer_norm_eps", "max_position_embeddings",
        "num_attention_heads", "num_hidden_layers", "projection_dim", "vocab_size", NULL},
    .ignored = (const char *const[]){
        "_name_or_path", "attention_dropout", "bos_token_id", "dropout", "eos_token_id", "initializer_factor",
        "initializer_range", "output_attentions", "output_hidden_states", "pad_token_id", "return_dict",
        "torch_dtype", "transformers_version", "use_cache", NULL},
    .fixed = (const config_fixed_key[]){
        {"architectures", {"\"CLIPTextModel\"", "\"CLIPTextModelWithProjection\""}}, {"model_type", {"\"clip_text_model\""}}, {NULL, {NULL}}},
};

/*
 * The schedulers SD folders ship (DDIM, PNDM, DDPM, Euler, Euler a, LMS, Heun, DPM-Solver++,
 * UniPC; diffusers 0.27). The sampler comes from the command line (_class_name only picks the
 * default one); a scheduler's own options are accepted at the defaults sdrender's samplers
 * implement: solver_type is DPM-Solver's or UniPC's default, variance_type DPM-Solver's or
 * DDPM's; Karras sigmas come from --karras. Ignored: the thresholding parameters (thresholding
 * itself is refused).
 */
static const config_table sched_table = {
    .read = (const char *const[]){
        "_class_name", "_use_default_values", "beta_end", "beta_schedule", "beta_start", "clip_sample",
        "num_train_timesteps", "prediction_type", "set_alpha_to_one", "skip_prk_steps", "steps_offset",
        "timestep_spacing", NULL},
    .ignored = (const char *const[]){"_diffusers_version", "dynamic_thresholding_ratio", "sample_max_value", NULL},
    .fixed = (const config_fixed_key[]){
        {"algorithm_type", {"\"dpmsolver++\""}}, {"clip_sample_range", {"1"}}, {"disable_corrector", {"[]"}},
        {"euler_at_final", {"false"}}, {"final_sigmas_type", {"\"zero\""}}, {"interpolation_type", {"\"linear\""}},
        {"lower_order_final", {"true"}}, {"predict_x0", {"true"}}, {"rescale_betas_zero_snr", {"false"}},
        {"sigma_max", {"null"}}, {"sigma_min", {"null"}}, {"solver_order", {"2"}}, {"solver_p", {"null"}},
        {"solver_type", {"\"midpoint\"", "\"bh2\""}}, {"thresholding", {"false"}},
        {"timestep_type", {"\"discrete\""}}, {"trained_betas", {"null"}}, {"use_karras_sigmas", {"false"}},
        {"use_lu_lambdas", {"false"}}, {"variance_type", {"null", "\"fixed_small\""}}, {NULL, {NULL}}},
};

const config_table *config_table_of(config_kind kind) {
    switch (kind) {
    case CONFIG_UNET: return &unet_table;
    case CONFIG_VAE: return &vae_table;
    case CONFIG_TEXT_ENCODER: return &clip_table;
    case CONFIG_SCHEDULER: return &sched_table;
    }
    return NULL;
}

/* 1 when name is in the NULL-terminated list. */
static int listed(const char *const *list, const char *name) {
    for (; *list; list++)
        if (!strcmp(*list, name)) return 1;
    return 0;
}

/* JSON equality with numbers compared by value (1 == 1.0). */
static int same_value(json_t *a, json_t *b) {
    if (json_is_number(a) && json_is_number(b)) return json_number_value(a) == json_number_value(b);
    return json_equal(a, b);
}

/* 1 when v is one of k's values, or a non-empty list made only of them. */
static int is_accepted(const config_fixed_key *k, json_t *v) {
    int ok = 0;
    for (int i = 0; i < CONFIG_KEY_MAX_VALUES && k->values[i] && !ok; i++) {
        json_t *want = json_loads(k->values[i], JSON_DECODE_ANY, NULL);
        ok = want && same_value(v, want);
        json_decref(want);
    }
    if (ok || !json_is_array(v) || json_array_size(v) == 0) return ok;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!is_accepted(k, e)) return 0;
    }
    return 1;
}

/* The refusal of key `name` = v. */
static int refuse(const char *name, json_t *v, sd_error *err) {
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    char shown[96];
    snprintf(shown, sizeof shown, "%s", text ? text : "?");
    if (text && strlen(text) >= sizeof shown) strcpy(shown + sizeof shown - 4, "...");
    free(text);
    return sd_err(err, SD_EUNSUPPORTED, "config key '%s' = %s is not supported yet", name, shown);
}

int config_check_keys(config_kind kind, json_t *root, sd_error *err) {
    const config_table *t = config_table_of(kind);
    const char *name;
    json_t *v;
    json_object_foreach(root, name, v) {
        if (listed(t->read, name) || listed(t->ignored, name)) continue;
        const config_fixed_key *k = t->fixed;
        while (k->name && strcmp(k->name, name)) k++;
        if (k->name && !is_accepted(k, v)) return refuse(name, v, err);
        if (!k->name && name[0] != '_')
            return sd_err(err, SD_EUNSUPPORTED, "config key '%s' is unknown to sdrender: not supported yet", name);
    }
    return 0;
}
