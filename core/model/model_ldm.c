/*
 * model_ldm.c - single-file (original LDM / CompVis) checkpoints: tensor names
 * translated to diffusers names, and the architecture inferred from shapes.
 *
 * U-Net: input_blocks.{1 + i*(L+1) + j}.0 is resnet j of down level i (L =
 * resnets per level), .1 its transformer; input_blocks.{(i+1)*(L+1)}.0.op is
 * the level's downsampler; output_blocks.{i*(L+1) + j} (j = 0..L: up levels
 * have L+1 resnets) likewise, with the upsampler as the last sub-module of
 * the level's last block (.1 or .2, recognised by its 'conv.' name). Which
 * attention a block has comes from the tensors present (sd_model_ldm_unet_attn).
 * VAE: decoder.up.{k} is up_blocks.{n-1-k}; mid.attn_1 q/k/v/proj_out are
 * 1x1 convolutions whose [C, C, 1, 1] weights are the same bytes as
 * diffusers' [C, C] linear weights. Text encoder: transformers names under
 * cond_stage_model.transformer (SD 1.x) or OpenCLIP's resblocks with a fused
 * in_proj (SD 2.x), split here into q/k/v views of the same memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

/* Resnet sub-module names, LDM -> diffusers. */
static const char *resnet_part(const char *s, const char **rest) {
    static const struct {
        const char *ldm, *dif;
    } map[] = {
        {"in_layers.0.", "norm1."},        {"in_layers.2.", "conv1."}, {"emb_layers.1.", "time_emb_proj."},
        {"out_layers.0.", "norm2."},       {"out_layers.3.", "conv2."}, {"skip_connection.", "conv_shortcut."},
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
        size_t n = strlen(map[i].ldm);
        if (!strncmp(s, map[i].ldm, n)) {
            *rest = s + n;
            return map[i].dif;
        }
    }
    return NULL;
}

int sd_model_ldm_unet_name(const char *s, int L, char *out, size_t size) {
    int b, k, used = 0;
    const char *rest, *part;
    if (!strncmp(s, "time_embed.0.", 13)) return snprintf(out, size, "time_embedding.linear_1.%s", s + 13) < 0;
    if (!strncmp(s, "time_embed.2.", 13)) return snprintf(out, size, "time_embedding.linear_2.%s", s + 13) < 0;
    if (!strncmp(s, "out.0.", 6)) return snprintf(out, size, "conv_norm_out.%s", s + 6) < 0;
    if (!strncmp(s, "out.2.", 6)) return snprintf(out, size, "conv_out.%s", s + 6) < 0;
    if (sscanf(s, "input_blocks.%d.%d.%n", &b, &k, &used) == 2 && used > 0) {
        const char *tail = s + used;
        if (b == 0 && k == 0) return snprintf(out, size, "conv_in.%s", tail) < 0;
        if (b < 1) return -1;
        int level = (b - 1) / (L + 1), j = (b - 1) % (L + 1);
        if (j == L) {
            if (k != 0 || strncmp(tail, "op.", 3)) return -1;
            return snprintf(out, size, "down_blocks.%d.downsamplers.0.conv.%s", level, tail + 3) < 0;
        }
        if (k == 0) {
            if (!(part = resnet_part(tail, &rest))) return -1;
            return snprintf(out, size, "down_blocks.%d.resnets.%d.%s%s", level, j, part, rest) < 0;
        }
        if (k == 1) return snprintf(out, size, "down_blocks.%d.attentions.%d.%s", level, j, tail) < 0;
        return -1;
    }
    if (sscanf(s, "middle_block.%d.%n", &k, &used) == 1 && used > 0) {
        const char *tail = s + used;
        if (k == 1) return snprintf(out, size, "mid_block.attentions.0.%s", tail) < 0;
        if (k != 0 && k != 2) return -1;
        if (!(part = resnet_part(tail, &rest))) return -1;
        return snprintf(out, size, "mid_block.resnets.%d.%s%s", k / 2, part, rest) < 0;
    }
    if (sscanf(s, "output_blocks.%d.%d.%n", &b, &k, &used) == 2 && used > 0) {
        const char *tail = s + used;
        int level = b / (L + 1), j = b % (L + 1);
        if (k == 0) {
            if (!(part = resnet_part(tail, &rest))) return -1;
            return snprintf(out, size, "up_blocks.%d.resnets.%d.%s%s", level, j, part, rest) < 0;
        }
        if (!strncmp(tail, "conv.", 5)) return snprintf(out, size, "up_blocks.%d.upsamplers.0.conv.%s", level, tail + 5) < 0;
        if (k == 1) return snprintf(out, size, "up_blocks.%d.attentions.%d.%s", level, j, tail) < 0;
        return -1;
    }
    return -1;
}

int sd_model_ldm_vae_name(const char *s, int n, char *out, size_t size) {
    int i, j, used = 0;
    char side[8];
    if (!strncmp(s, "quant_conv.", 11) || !strncmp(s, "post_quant_conv.", 16)) return snprintf(out, size, "%s", s) < 0;
    if (!strncmp(s, "encoder.", 8)) strcpy(side, "encoder");
    else if (!strncmp(s, "decoder.", 8)) strcpy(side, "decoder");
    else return -1;
    const char *t = s + 8;
    if (!strncmp(t, "conv_in.", 8) || !strncmp(t, "conv_out.", 9)) return snprintf(out, size, "%s", s) < 0;
    if (!strncmp(t, "norm_out.", 9)) return snprintf(out, size, "%s.conv_norm_out.%s", side, t + 9) < 0;
    if (!strncmp(t, "mid.block_1.", 12) || !strncmp(t, "mid.block_2.", 12)) {
        const char *tail = t + 12;
        if (!strncmp(tail, "nin_shortcut.", 13))
            return snprintf(out, size, "%s.mid_block.resnets.%d.conv_shortcut.%s", side, t[10] - '1', tail + 13) < 0;
        return snprintf(out, size, "%s.mid_block.resnets.%d.%s", side, t[10] - '1', tail) < 0;
    }
    if (!strncmp(t, "mid.attn_1.", 11)) {
        static const struct {
            const char *ldm, *dif;
        } attn[] = {{"norm.", "group_norm."}, {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."}, {"proj_out.", "to_out.0."}};
        const char *tail = t + 11;
        for (size_t a = 0; a < sizeof attn / sizeof *attn; a++) {
            size_t l = strlen(attn[a].ldm);
            if (!strncmp(tail, attn[a].ldm, l))
                return snprintf(out, size, "%s.mid_block.attentions.0.%s%s", side, attn[a].dif, tail + l) < 0;
        }
        return -1;
    }
    const char *blk = side[0] == 'e' ? "down" : "up";
    char pat[64];
    snprintf(pat, sizeof pat, "%s.%%d.block.%%d.%%n", blk);
    if (sscanf(t, pat, &i, &j, &used) == 2 && used > 0) {
        const char *tail = t + used;
        int level = side[0] == 'e' ? i : n - 1 - i;
        if (!strncmp(tail, "nin_shortcut.", 13))
            return snprintf(out, size, "%s.%s_blocks.%d.resnets.%d.conv_shortcut.%s", side, blk, level, j, tail + 13) < 0;
        return snprintf(out, size, "%s.%s_blocks.%d.resnets.%d.%s", side, blk, level, j, tail) < 0;
    }
    snprintf(pat, sizeof pat, "%s.%%d.%s.conv.%%n", blk, side[0] == 'e' ? "downsample" : "upsample");
    if (sscanf(t, pat, &i, &used) == 1 && used > 0) {
        int level = side[0] == 'e' ? i : n - 1 - i;
        return snprintf(out, size, "%s.%s_blocks.%d.%ssamplers.0.conv.%s", side, blk, level, blk, t + used) < 0;
    }
    return -1;
}

/* Attention kind of U-Net block `block` ("down_blocks.1", "mid_block") from the tensors present
 * (diffusers names): a Transformer2DModel (LDM SpatialTransformer) has proj_in; a plain
 * self-attention block (LDM AttentionBlock: norm, qkv, proj_out) has a norm but no proj_in. */
static unet_attn_kind ldm_attn_kind(const sd_weights *u, const char *block) {
    char name[160];
    snprintf(name, sizeof name, "%s.attentions.0.proj_in.weight", block);
    if (sd_weights_find(u, name)) return UNET_ATTN_CROSS;
    snprintf(name, sizeof name, "%s.attentions.0.norm.weight", block);
    return sd_weights_find(u, name) ? UNET_ATTN_SELF : UNET_ATTN_NONE;
}

void sd_model_ldm_unet_attn(unet_config *c, const sd_weights *u) {
    char block[32];
    for (int i = 0; i < c->n_levels; i++) {
        snprintf(block, sizeof block, "down_blocks.%d", i);
        c->down_attn[i] = ldm_attn_kind(u, block);
        snprintf(block, sizeof block, "up_blocks.%d", i);
        c->up_attn[i] = ldm_attn_kind(u, block);
    }
    c->mid_attn = ldm_attn_kind(u, "mid_block");
}
