/* sdrender info: what a model is (variant, layout, architecture, parameters, dtypes). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "model.h"

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: sdrender info -m MODEL [--tokenizer DIR] [--config LDM.yaml]\n\n"
            "Describes a Stable Diffusion model: layout, variant (SD 1.x / 2.x / XL, inpainting, v-prediction),\n"
            "architecture of each component, parameter counts and stored dtypes.\n\n"
            "  -m, --model PATH     diffusers folder (with model_index.json) or single .safetensors checkpoint\n"
            "      --tokenizer P    tokenizer folder (vocab.json + merges.txt) or bpe_simple_vocab_16e6.txt.gz\n"
            "      --config YAML    LDM config for a single file (default: same base name + .yaml), or a\n"
            "                       diffusers folder whose config.json files give its architecture\n"
            "  -h, --help           this text\n");
}

static void print_ints(const int *v, int n) {
    printf("[");
    for (int i = 0; i < n; i++) printf("%s%d", i ? ", " : "", v[i]);
    printf("]");
}

/* Parameters and bytes per dtype of one component. */
static void print_params(const char *what, const sd_weights *w) {
    long long per[SD_DTYPE_COUNT] = {0}, bytes = 0;
    for (int i = 0; i < w->n; i++) {
        per[w->tensors[i].dtype] += sd_tensor_numel(&w->tensors[i]);
        bytes += (long long)w->tensors[i].nbytes;
    }
    printf("  %-13s %.3f M parameters, %.1f MB (", what, (double)sd_weights_numel(w) / 1e6, (double)bytes / 1e6);
    int first = 1;
    for (int d = 0; d < SD_DTYPE_COUNT; d++) {
        if (!per[d]) continue;
        printf("%s%s", first ? "" : ", ", sd_dtype_name((sd_dtype)d));
        first = 0;
    }
    printf("), %d tensors\n", w->n);
}

static void print_clip(const char *what, const clip_config *c) {
    printf("  %-13s CLIP, %d layers, hidden %d, intermediate %d, %d heads, %d positions, vocab %d, %s", what, c->layers,
           c->hidden, c->intermediate, c->heads, c->max_positions, c->vocab_size,
           c->act == CLIP_ACT_GELU ? "gelu" : "quick_gelu");
    if (c->with_projection) printf(", projection %d", c->projection_dim);
    printf("\n");
}

static void print_architecture(const sd_model *m) {
    const unet_config *u = &m->unet;
    const vae_config *v = &m->vae;
    const clip_config *c = &m->clip;
    const sched_config *s = &m->sched;
    int hd[SD_MAX_LEVELS], down[SD_MAX_LEVELS], up[SD_MAX_LEVELS];
    for (int i = 0; i < u->n_levels; i++) {
        hd[i] = unet_config_head_dim(u, i);
        down[i] = u->down_attn[i] == UNET_ATTN_CROSS;
        up[i] = u->up_attn[i] == UNET_ATTN_CROSS;
    }
    printf("architecture:\n  unet:         %sin %d, out %d, channels ", u->unet2d ? "UNet2DModel, " : "", u->in_channels,
           u->out_channels);
    print_ints(u->block_out, u->n_levels);
    printf(", %d resnets/level, heads ", u->layers_per_block);
    print_ints(u->heads, u->n_levels);
    printf(" (head dim ");
    print_ints(hd, u->n_levels);
    if (u->unet2d) { /* pixel-space DDPM: plain self-attention, no text */
        int self_down[SD_MAX_LEVELS], self_up[SD_MAX_LEVELS];
        for (int i = 0; i < u->n_levels; i++) {
            self_down[i] = u->down_attn[i] == UNET_ATTN_SELF;
            self_up[i] = u->up_attn[i] == UNET_ATTN_SELF;
        }
        printf("), self-attn down ");
        print_ints(self_down, u->n_levels);
        printf(" up ");
        print_ints(self_up, u->n_levels);
        printf(" mid %d, %d groups, eps %g, downsample padding %d, time embedding %d (%s first, freq shift %d)\n",
               u->mid_attn == UNET_ATTN_SELF, u->norm_groups, u->norm_eps, u->downsample_padding, u->time_embed_dim,
               u->flip_sin_to_cos ? "cos" : "sin", u->freq_shift);
    } else {
        printf("), cross-attn down ");
        print_ints(down, u->n_levels);
        printf(" up ");
        print_ints(up, u->n_levels);
        printf(" mid %d, context dim %d, %s proj_in/out, transformer depth ", u->mid_attn == UNET_ATTN_CROSS,
               u->cross_attention_dim, u->use_linear_projection ? "linear" : "conv 1x1");
        print_ints(u->transformer_layers, u->n_levels);
        printf(", time embedding %d%s", u->time_embed_dim, u->upcast_attention ? ", upcast attention" : "");
        if (u->addition_time_embed_dim)
            printf(", added text/time embedding (%d inputs, time ids embedded in %d)", u->addition_in_dim,
                   u->addition_time_embed_dim);
        if (u->num_class_embeds) printf(", %d noise-level classes", u->num_class_embeds);
        int any_only = 0;
        for (int i = 0; i < u->n_levels; i++) any_only |= u->only_cross[i];
        if (any_only) {
            printf(", only-cross-attention ");
            print_ints(u->only_cross, u->n_levels);
        }
        printf("\n");
    }
    if (m->parts & SD_PART_VAE) {
        printf("  vae:          in %d, out %d, latent %d, channels ", v->in_channels, v->out_channels, v->latent_channels);
        print_ints(v->block_out, v->n_levels);
        printf(", %d resnets/level, f=%d, scaling factor %g\n", v->layers_per_block, vae_scale_factor(v),
               v->scaling_factor);
    } else {
        printf("  vae:          none\n");
    }
    if (m->parts & SD_PART_TEXT_ENCODER)
        print_clip("text_encoder:", c);
    else
        printf("  text_encoder: none\n");
    if (m->parts & SD_PART_TEXT_ENCODER_2) print_clip("text_encoder_2:", &m->clip2);
    printf("  scheduler:    %s, %s betas %g..%g over %d steps, steps offset %d, %s prediction\n", s->class_name,
           s->beta_schedule == SCHED_BETA_LINEAR ? "linear" : "scaled_linear", s->beta_start, s->beta_end,
           s->num_train_timesteps, s->steps_offset,
           s->prediction_type == SCHED_PRED_V ? "v" : s->prediction_type == SCHED_PRED_SAMPLE ? "sample" : "epsilon");
    if (m->upscaler)
        printf("  low_res_scheduler: %s, %s betas %g..%g (adds the picture's noise), max noise level %d\n",
               m->low_res_sched.class_name,
               m->low_res_sched.beta_schedule == SCHED_BETA_LINEAR ? "linear" : "scaled_linear",
               m->low_res_sched.beta_start, m->low_res_sched.beta_end, m->max_noise_level);
}

int cmd_info(int argc, char **argv) {
    static const struct option longopts[] = {{"model", required_argument, 0, 'm'},
                                             {"tokenizer", required_argument, 0, 't'},
                                             {"config", required_argument, 0, 'c'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *model = NULL;
    sd_model_opts opts = {0};
    int c;
    while ((c = getopt_long(argc, argv, "m:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 't': opts.tokenizer = optarg; break;
        case 'c': opts.config = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) return cli_usage_error("info: unexpected argument '%s'", argv[optind]);
    if (!model) return cli_usage_error("info: -m MODEL is required (see 'sdrender info --help')");
    sd_model m;
    sd_error err = {0};
    if (sd_model_open(&m, model, &opts, &err) < 0) return cli_fail(&err);
    char var[64];
    printf("model:        %s\n", m.path);
    printf("layout:       %s (%s)\n", m.layout == SD_LAYOUT_DIFFUSERS ? "diffusers folder" : "single file",
           m.pipeline_class);
    printf("variant:      %s\n", sd_model_variant(&m, var, sizeof var));
    if (m.config_source) printf("config:       %s\n", m.config_source);
    printf("tokenizer:    %s\n", m.tokenizer_path                         ? m.tokenizer_path
                                 : (m.parts & SD_PART_TEXT_ENCODER) ? "(none found; pass --tokenizer)"
                                                                    : "(none: the model takes no prompt)");
    if (m.parts & SD_PART_TEXT_ENCODER_2)
        printf("tokenizer_2:  %s\n", m.tokenizer2_path ? m.tokenizer2_path : "(none found; pass --tokenizer)");
    printf("files:\n");
    for (int i = 0; i < m.n_files; i++) printf("  %s (%.1f MB)\n", m.file_desc[i], (double)m.file_size[i] / 1e6);
    print_architecture(&m);
    printf("parameters:\n");
    print_params("unet:", &m.unet_w);
    if (m.parts & SD_PART_VAE) print_params("vae:", &m.vae_w);
    if (m.parts & SD_PART_TEXT_ENCODER) print_params("text_encoder:", &m.clip_w);
    if (m.parts & SD_PART_TEXT_ENCODER_2) print_params("text_encoder_2:", &m.clip2_w);
    sd_model_close(&m);
    return 0;
}
