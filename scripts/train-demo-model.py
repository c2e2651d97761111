#!/usr/bin/python3
"""Trains sdrender's demo model from scratch, offline, on the CPU.

    scripts/train-demo-model.py --sdrender build/sdrender --out DIR [--seed 0] [--threads 2]

The model is a small Stable Diffusion 1.x: a CLIP-style text encoder with its own BPE
vocabulary (written here, learned from the caption grammar's words), a U-Net with
cross-attention and an f = 8 KL autoencoder, at 64x64 pixels (8x8x4 latents). The pictures
and captions come from `sdrender shapes --raw` (core/eval/shapes.c), so the training set
and the reference set of `make demo` are the same procedure. DIR becomes a diffusers
folder (fp16 safetensors, diffusers/transformers config names) that `sdrender -m DIR`
loads like any other; sdrender carries the committed result (`sdrender init-model --demo`).

Deterministic for a seed on one machine and thread count (fixed step counts, seeded
torch generators; no wall-clock budget). Needs only Debian's python3-torch and
python3-numpy: not needed to build, test or run sdrender. Run time on the 2-core EPYC
of the project's CI machines: see the README ("The demo model").

The network code below is written from the published architectures (diffusers'
UNet2DConditionModel / AutoencoderKL, CLIP's text transformer) so that the tensor names
and the arithmetic are the ones sdrender implements.
"""
import argparse
import hashlib
import json
import math
import os
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MAX_LEN = 77
GRAMMAR_WORDS = ["a", "small", "medium", "large", "red", "green", "blue", "yellow", "white", "black", "circle",
                 "square", "triangle", "at", "the", "top", "bottom", "left", "right", "center", "on", "background"]


# ---------------------------------------------------------------- tokenizer (CLIP's BPE rules)

def bytes_to_unicode():
    """CLIP's reversible byte -> printable character table (the vocabulary's first 256 entries)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return bs, [chr(c) for c in cs]


def word_symbols(word):
    return list(word[:-1]) + [word[-1] + "</w>"]


def learn_merges(words):
    """Classic BPE learning on the grammar's words until each is one symbol (ties: smallest pair)."""
    seqs = [word_symbols(w) for w in words]
    merges = []
    while True:
        counts = {}
        for s in seqs:
            for p in zip(s, s[1:]):
                counts[p] = counts.get(p, 0) + 1
        if not counts:
            return merges
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        for k, s in enumerate(seqs):
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[k] = out


class Tokenizer:
    def __init__(self):
        _, chars = bytes_to_unicode()
        self.merges = learn_merges(GRAMMAR_WORDS)
        vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in self.merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.vocab = {t: i for i, t in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(self.merges)}
        self.bos, self.eos = self.vocab["<|startoftext|>"], self.vocab["<|endoftext|>"]

    def bpe(self, word):
        s = word_symbols(word)
        while len(s) > 1:
            pairs = [(self.ranks.get(p, 1 << 30), i) for i, p in enumerate(zip(s, s[1:]))]
            r, i = min(pairs)
            if r == 1 << 30:
                break
            s = s[:i] + [s[i] + s[i + 1]] + s[i + 2:]
        return [self.vocab[t] for t in s]

    def encode(self, text):
        ids = [self.bos]
        for w in text.lower().split():
            assert all("a" <= ch <= "z" for ch in w), w
            ids += self.bpe(w)
        ids = ids[:MAX_LEN - 1] + [self.eos]
        return ids + [self.eos] * (MAX_LEN - len(ids))

    def save(self, folder):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "vocab.json"), "w") as f:
            json.dump(self.vocab, f, ensure_ascii=False)
        with open(os.path.join(folder, "merges.txt"), "w") as f:
            f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in self.merges))
        special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                   "pad_token": "<|endoftext|>"}
        with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
            json.dump(special, f, indent=2)
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            json.dump(dict(tokenizer_class="CLIPTokenizer", model_max_length=MAX_LEN, do_lower_case=True,
                           errors="replace", add_prefix_space=False, **special), f, indent=2)


# ---------------------------------------------------------------- text encoder (CLIPTextModel names)

class CLIPAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x, mask):
        B, T, D = x.shape
        h = self.heads
        q, k, v = (p(x).view(B, T, h, D // h).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        a = (q @ k.transpose(-1, -2)) * (D // h) ** -0.5 + mask
        o = a.softmax(-1) @ v
        return self.out_proj(o.transpose(1, 2).reshape(B, T, D))


class CLIPMLP(nn.Module):
    def __init__(self, d, inner):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, inner), nn.Linear(inner, d)

    def forward(self, x):
        x = self.fc1(x)
        return self.fc2(x * torch.sigmoid(1.702 * x))  # quick_gelu


class CLIPLayer(nn.Module):
    def __init__(self, d, heads, inner):
        super().__init__()
        self.layer_norm1, self.layer_norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn, self.mlp = CLIPAttention(d, heads), CLIPMLP(d, inner)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEmbeddings(nn.Module):
    def __init__(self, vocab, d):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, d)
        self.position_embedding = nn.Embedding(MAX_LEN, d)


class CLIPEncoder(nn.Module):
    def __init__(self, d, heads, inner, layers):
        super().__init__()
        self.layers = nn.ModuleList(CLIPLayer(d, heads, inner) for _ in range(layers))


class CLIPTextTransformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.embeddings = CLIPEmbeddings(cfg["vocab_size"], d)
        self.encoder = CLIPEncoder(d, cfg["num_attention_heads"], cfg["intermediate_size"], cfg["num_hidden_layers"])
        self.final_layer_norm = nn.LayerNorm(d)

    def forward(self, ids):  # ids: [B, 77] -> [B, 77, D]
        T = ids.shape[1]
        x = self.embeddings.token_embedding(ids) + self.embeddings.position_embedding.weight[:T]
        mask = torch.full((T, T), float("-inf")).triu(1)
        for layer in self.encoder.layers:
            x = layer(x, mask)
        return self.final_layer_norm(x)


class CLIPTextModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.text_model = CLIPTextTransformer(cfg)

    def forward(self, ids):
        return self.text_model(ids)


# ---------------------------------------------------------------- shared blocks (diffusers names)

class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, groups, eps, temb=None):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        if temb:
            self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.conv_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if temb is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if hasattr(self, "conv_shortcut") else x) + h


class Downsample2D(nn.Module):
    def __init__(self, c, padding):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=padding)

    def forward(self, x):
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def attention(q, k, v, heads):  # q: [B, N, C], k/v: [B, M, C]
    B, N, C = q.shape
    q, k, v = (t.view(B, -1, heads, C // heads).transpose(1, 2) for t in (q, k, v))
    a = ((q @ k.transpose(-1, -2)) * (C // heads) ** -0.5).softmax(-1)
    return (a @ v).transpose(1, 2).reshape(B, N, C)


class Attention(nn.Module):
    def __init__(self, c, heads, kv_dim=None, bias=False):
        super().__init__()
        kv = kv_dim or c
        self.heads = heads
        self.to_q = nn.Linear(c, c, bias=bias)
        self.to_k = nn.Linear(kv, c, bias=bias)
        self.to_v = nn.Linear(kv, c, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(c, c), nn.Dropout(0.0)])

    def forward(self, x, ctx=None):
        ctx = x if ctx is None else ctx
        return self.to_out[0](attention(self.to_q(x), self.to_k(ctx), self.to_v(ctx), self.heads))


# ---------------------------------------------------------------- autoencoder (AutoencoderKL names)

class VAEAttention(Attention):
    """The autoencoder's mid-block self-attention: one head, GroupNorm first, residual added."""

    def __init__(self, c, groups):
        super().__init__(c, 1, bias=True)
        self.group_norm = nn.GroupNorm(groups, c, eps=1e-6)

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.group_norm(x).view(B, C, H * W).transpose(1, 2)
        h = super().forward(h)
        return x + h.transpose(1, 2).view(B, C, H, W)


class VAEMid(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(c, c, groups, 1e-6), ResnetBlock2D(c, c, groups, 1e-6)])
        self.attentions = nn.ModuleList([VAEAttention(c, groups)])

    def forward(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class EncBlock(nn.Module):
    def __init__(self, cin, cout, layers, groups, down):
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock2D(cin if j == 0 else cout, cout, groups, 1e-6) for j in range(layers))
        if down:
            self.downsamplers = nn.ModuleList([Downsample2D(cout, 0)])

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        return self.downsamplers[0](x) if hasattr(self, "downsamplers") else x


class DecBlock(nn.Module):
    def __init__(self, cin, cout, layers, groups, up):
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock2D(cin if j == 0 else cout, cout, groups, 1e-6)
                                     for j in range(layers + 1))
        if up:
            self.upsamplers = nn.ModuleList([Upsample2D(cout)])

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        return self.upsamplers[0](x) if hasattr(self, "upsamplers") else x


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, g, L, n = cfg["block_out_channels"], cfg["norm_num_groups"], cfg["layers_per_block"], len(
            cfg["block_out_channels"])
        self.conv_in = nn.Conv2d(3, ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(EncBlock(ch[max(i - 1, 0)], ch[i], L, g, i < n - 1) for i in range(n))
        self.mid_block = VAEMid(ch[-1], g)
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(ch[-1], 2 * cfg["latent_channels"], 3, padding=1)

    def forward(self, x):
        x = self.conv_in(x)
        for b in self.down_blocks:
            x = b(x)
        return self.conv_out(F.silu(self.conv_norm_out(self.mid_block(x))))


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, g, L, n = cfg["block_out_channels"], cfg["norm_num_groups"], cfg["layers_per_block"], len(
            cfg["block_out_channels"])
        rch = list(reversed(ch))
        self.conv_in = nn.Conv2d(cfg["latent_channels"], rch[0], 3, padding=1)
        self.mid_block = VAEMid(rch[0], g)
        self.up_blocks = nn.ModuleList(DecBlock(rch[max(i - 1, 0)], rch[i], L, g, i < n - 1) for i in range(n))
        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=1e-6)
        self.conv_out = nn.Conv2d(ch[0], 3, 3, padding=1)

    def forward(self, z):
        x = self.mid_block(self.conv_in(z))
        for b in self.up_blocks:
            x = b(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AutoencoderKL(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        L = cfg["latent_channels"]
        self.encoder, self.decoder = Encoder(cfg), Decoder(cfg)
        self.quant_conv, self.post_quant_conv = nn.Conv2d(2 * L, 2 * L, 1), nn.Conv2d(L, L, 1)

    def encode(self, x):  # -> mean, logvar: [B, L, H/8, W/8]
        mean, logvar = self.quant_conv(self.encoder(x)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


# ---------------------------------------------------------------- U-Net (UNet2DConditionModel names)

class BasicTransformerBlock(nn.Module):
    def __init__(self, c, heads, ctx_dim):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(c), nn.LayerNorm(c), nn.LayerNorm(c)
        self.attn1, self.attn2 = Attention(c, heads), Attention(c, heads, ctx_dim)
        self.ff = FeedForward(c)

    def forward(self, x, ctx):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), ctx)
        return x + self.ff(self.norm3(x))


class GEGLU(nn.Module):
    def __init__(self, c, inner):
        super().__init__()
        self.proj = nn.Linear(c, 2 * inner)

    def forward(self, x):
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(c, 4 * c), nn.Dropout(0.0), nn.Linear(4 * c, c)])

    def forward(self, x):
        return self.net[2](self.net[0](x))


class Transformer2DModel(nn.Module):
    def __init__(self, c, heads, ctx_dim, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c, eps=1e-6)
        self.proj_in = nn.Conv2d(c, c, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(c, heads, ctx_dim)])
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x, ctx):
        B, C, H, W = x.shape
        h = self.proj_in(self.norm(x)).view(B, C, H * W).transpose(1, 2)
        h = self.transformer_blocks[0](h, ctx)
        return x + self.proj_out(h.transpose(1, 2).reshape(B, C, H, W))


class TimestepEmbedding(nn.Module):
    def __init__(self, c, dim):
        super().__init__()
        self.linear_1, self.linear_2 = nn.Linear(c, dim), nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


def timestep_features(t, dim):
    """Sinusoidal features, flip_sin_to_cos=True, freq_shift=0: [cos, sin]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=-1)


class UNetDown(nn.Module):
    def __init__(self, cin, cout, layers, temb, attn, heads, ctx_dim, groups, down):
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock2D(cin if j == 0 else cout, cout, groups, 1e-5, temb)
                                     for j in range(layers))
        if attn:
            self.attentions = nn.ModuleList(Transformer2DModel(cout, heads, ctx_dim, groups) for _ in range(layers))
        if down:
            self.downsamplers = nn.ModuleList([Downsample2D(cout, 1)])

    def forward(self, x, temb, ctx, skips):
        for j, r in enumerate(self.resnets):
            x = r(x, temb)
            if hasattr(self, "attentions"):
                x = self.attentions[j](x, ctx)
            skips.append(x)
        if hasattr(self, "downsamplers"):
            x = self.downsamplers[0](x)
            skips.append(x)
        return x


class UNetUp(nn.Module):
    def __init__(self, cin, prev, cout, layers, temb, attn, heads, ctx_dim, groups, up):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock2D((prev if j == 0 else cout) + (cin if j == layers else cout), cout, groups, 1e-5, temb)
            for j in range(layers + 1))
        if attn:
            self.attentions = nn.ModuleList(Transformer2DModel(cout, heads, ctx_dim, groups) for _ in range(layers + 1))
        if up:
            self.upsamplers = nn.ModuleList([Upsample2D(cout)])

    def forward(self, x, temb, ctx, skips):
        for j, r in enumerate(self.resnets):
            x = r(torch.cat([x, skips.pop()], dim=1), temb)
            if hasattr(self, "attentions"):
                x = self.attentions[j](x, ctx)
        return self.upsamplers[0](x) if hasattr(self, "upsamplers") else x


class UNetMid(nn.Module):
    def __init__(self, c, temb, heads, ctx_dim, groups):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(c, c, groups, 1e-5, temb), ResnetBlock2D(c, c, groups, 1e-5, temb)])
        self.attentions = nn.ModuleList([Transformer2DModel(c, heads, ctx_dim, groups)])

    def forward(self, x, temb, ctx):
        return self.resnets[1](self.attentions[0](self.resnets[0](x, temb), ctx), temb)


class UNet2DConditionModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, L, g = cfg["block_out_channels"], cfg["layers_per_block"], cfg["norm_num_groups"]
        heads, ctx, n = cfg["attention_head_dim"], cfg["cross_attention_dim"], len(ch)
        temb = 4 * ch[0]
        self.c0 = ch[0]
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(ch[0], temb)
        self.down_blocks = nn.ModuleList(
            UNetDown(ch[max(i - 1, 0)], ch[i], L, temb, cfg["down_block_types"][i] == "CrossAttnDownBlock2D", heads,
                     ctx, g, i < n - 1) for i in range(n))
        self.mid_block = UNetMid(ch[-1], temb, heads, ctx, g)
        rch = list(reversed(ch))
        self.up_blocks = nn.ModuleList(
            UNetUp(rch[min(i + 1, n - 1)], rch[max(i - 1, 0)], rch[i], L, temb,
                   cfg["up_block_types"][i] == "CrossAttnUpBlock2D", heads, ctx, g, i < n - 1) for i in range(n))
        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=1e-5)
        self.conv_out = nn.Conv2d(ch[0], cfg["out_channels"], 3, padding=1)

    def forward(self, x, t, ctx):  # x: [B, 4, h, w], t: [B], ctx: [B, 77, D]
        temb = self.time_embedding(timestep_features(t, self.c0))
        x = self.conv_in(x)
        skips = [x]
        for b in self.down_blocks:
            x = b(x, temb, ctx, skips)
        x = self.mid_block(x, temb, ctx)
        for b in self.up_blocks:
            x = b(x, temb, ctx, skips)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


# ---------------------------------------------------------------- configs

def text_config(vocab_size):
    return {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "attention_dropout": 0.0,
            "dropout": 0.0, "initializer_factor": 1.0, "initializer_range": 0.02, "projection_dim": 64,
            "torch_dtype": "float16", "vocab_size": vocab_size, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 256, "max_position_embeddings": MAX_LEN,
            "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "pad_token_id": vocab_size - 1,
            "bos_token_id": vocab_size - 2, "eos_token_id": vocab_size - 1}


def vae_config(scaling_factor):
    return {"_class_name": "AutoencoderKL", "_diffusers_version": "0.27.2", "act_fn": "silu",
            "block_out_channels": [16, 32, 64, 64], "down_block_types": ["DownEncoderBlock2D"] * 4,
            "force_upcast": True, "in_channels": 3, "latent_channels": 4, "latents_mean": None, "latents_std": None,
            "layers_per_block": 1, "norm_num_groups": 8, "out_channels": 3, "sample_size": 64,
            "scaling_factor": scaling_factor, "up_block_types": ["UpDecoderBlock2D"] * 4}


def unet_config():
    return {"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.27.2", "act_fn": "silu",
            "attention_head_dim": 4, "block_out_channels": [64, 128, 128], "center_input_sample": False,
            "cross_attention_dim": 64, "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 1,
            "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-5,
            "norm_num_groups": 32, "out_channels": 4, "sample_size": 8, "time_embedding_type": "positional",
            "transformer_layers_per_block": 1, "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            "upcast_attention": False, "use_linear_projection": False}


SCHEDULER = {"_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.27.2", "beta_start": 0.00085,
             "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "steps_offset": 1,
             "prediction_type": "epsilon", "timestep_spacing": "leading", "trained_betas": None}

MODEL_INDEX = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.27.2",
               "feature_extractor": [None, None], "requires_safety_checker": False, "safety_checker": [None, None],
               "scheduler": ["diffusers", "EulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
               "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
               "vae": ["diffusers", "AutoencoderKL"]}


# ---------------------------------------------------------------- writing the folder

def save_safetensors(path, state):
    """fp16 safetensors: an 8-byte header length, the JSON header, the tensors in name order."""
    header, blobs, off = {}, [], 0
    for name in sorted(state):
        b = state[name].detach().to(torch.float16).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F16", "shape": list(state[name].shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    """The tensors of a safetensors file (as written above) as float32."""
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    dtypes = {"F16": np.float16, "F32": np.float32}
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        s, e = v["data_offsets"]
        a = np.frombuffer(b[8 + n + s:8 + n + e], dtype=dtypes[v["dtype"]]).reshape(v["shape"])
        out[name] = torch.from_numpy(a.astype(np.float32))
    return out


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def export(out, tok, te, vae, unet, scaling_factor, meta):
    write_json(os.path.join(out, "model_index.json"), MODEL_INDEX)
    write_json(os.path.join(out, "scheduler", "scheduler_config.json"), SCHEDULER)
    tok.save(os.path.join(out, "tokenizer"))
    write_json(os.path.join(out, "text_encoder", "config.json"), text_config(len(tok.vocab)))
    save_safetensors(os.path.join(out, "text_encoder", "model.safetensors"), te.state_dict())
    write_json(os.path.join(out, "vae", "config.json"), vae_config(scaling_factor))
    save_safetensors(os.path.join(out, "vae", "diffusion_pytorch_model.safetensors"), vae.state_dict())
    write_json(os.path.join(out, "unet", "config.json"), unet_config())
    save_safetensors(os.path.join(out, "unet", "diffusion_pytorch_model.safetensors"), unet.state_dict())
    write_json(os.path.join(out, "training.json"), meta)


# ---------------------------------------------------------------- training

def lr_at(step, total, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))


def train_vae(vae, images, steps, batch, gen, log):
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    t0 = time.time()
    for step in range(steps):
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step, steps, 1e-3, 100)
        idx = torch.randint(0, images.shape[0], (batch,), generator=gen)
        x = images[idx].permute(0, 3, 1, 2).float() / 127.5 - 1
        mean, logvar = vae.encode(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=gen)
        y = vae.decode(z)
        rec = F.mse_loss(y, x) + 0.5 * F.l1_loss(y, x)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = rec + 1e-5 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            psnr = 10 * math.log10(4.0 / max(F.mse_loss(y, x).item(), 1e-10))
            log(f"vae step {step}/{steps}: loss {loss.item():.5f} rec PSNR {psnr:.1f} dB kl {kl.item():.2f} "
                f"({time.time() - t0:.0f} s)")


def encode_all(vae, images, batch=256):
    means, stds = [], []
    with torch.no_grad():
        for i in range(0, images.shape[0], batch):
            x = images[i:i + batch].permute(0, 3, 1, 2).float() / 127.5 - 1
            m, lv = vae.encode(x)
            means.append(m)
            stds.append(torch.exp(0.5 * lv))
    return torch.cat(means), torch.cat(stds)


def train_unet(unet, te, tok, lat_mean, lat_std, captions, scaling, steps, batch, gen, log, snapshot, peak_lr=3e-4):
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    acp = torch.cumprod(1 - betas, 0).float()
    ids_of = {}
    cap_ids = torch.tensor([ids_of.setdefault(c, tok.encode(c)) for c in captions])
    empty = torch.tensor(tok.encode(""))
    params = list(unet.parameters()) + list(te.parameters())
    opt = torch.optim.AdamW(params, lr=peak_lr, weight_decay=0.01)
    ema = [p.detach().clone() for p in params]
    t0 = time.time()
    avg = None
    for step in range(steps):
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step, steps, peak_lr, 300)
        idx = torch.randint(0, lat_mean.shape[0], (batch,), generator=gen)
        x0 = (lat_mean[idx] + lat_std[idx] * torch.randn(lat_mean[idx].shape, generator=gen)) * scaling
        t = torch.randint(0, 1000, (batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = acp[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        ids = cap_ids[idx].clone()
        drop = torch.rand(batch, generator=gen) < 0.1
        ids[drop] = empty
        pred = unet(xt, t, te(ids))
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema, params):
                e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        if step % 100 == 0 or step == steps - 1:
            log(f"unet step {step}/{steps}: loss {avg:.4f} ({time.time() - t0:.0f} s)")
        if snapshot and step > 0 and step % snapshot[0] == 0:
            snapshot[1](ema, params)
    return ema, params


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sdrender", default="build/sdrender", help="the sdrender binary (makes the pictures)")
    ap.add_argument("--out", required=True, help="the diffusers folder to write")
    ap.add_argument("--work", default=None, help="scratch folder (default OUT.work)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the weights' initialisation and the batches")
    ap.add_argument("--data-seed", type=int, default=None, help="seed of the training pictures (default --seed)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=30000, help="training pictures")
    ap.add_argument("--vae-steps", type=int, default=2500)
    ap.add_argument("--unet-steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--snapshot-every", type=int, default=1000, help="export the EMA weights every N U-Net steps")
    ap.add_argument("--resume", default=None, help="a folder this script wrote: start the text encoder and U-Net from "
                    "its weights (the autoencoder comes from the scratch folder) and train --unet-steps more")
    ap.add_argument("--lr", type=float, default=3e-4, help="peak learning rate of the U-Net stage")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    work = args.work or args.out.rstrip("/") + ".work"
    os.makedirs(work, exist_ok=True)
    logf = open(os.path.join(work, "train.log"), "a")
    t_start = time.time()

    def log(msg):
        line = f"[{time.time() - t_start:7.0f} s] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    data_seed = args.seed if args.data_seed is None else args.data_seed
    data = os.path.join(work, f"data-{data_seed}-{args.images}")
    if not os.path.exists(os.path.join(data, "images.u8")):
        subprocess.run([args.sdrender, "shapes", "--raw", "-n", str(args.images), "--seed", str(data_seed),
                        "--size", "64", "-o", data], check=True)
    images = torch.from_numpy(np.fromfile(os.path.join(data, "images.u8"), dtype=np.uint8).reshape(-1, 64, 64, 3))
    captions = open(os.path.join(data, "captions.txt")).read().splitlines()
    assert len(captions) == images.shape[0]
    log(f"{images.shape[0]} pictures, {len(set(captions))} distinct captions")

    tok = Tokenizer()
    log(f"vocabulary: {len(tok.vocab)} tokens ({len(tok.merges)} merges)")
    gen = torch.Generator().manual_seed(args.seed)
    vae = AutoencoderKL(vae_config(1.0))
    vae_path = os.path.join(work, "vae.pt")
    if os.path.exists(vae_path):
        vae.load_state_dict(torch.load(vae_path))
        log("autoencoder: reusing " + vae_path)
    else:
        log(f"autoencoder: {sum(p.numel() for p in vae.parameters()) / 1e6:.2f} M parameters")
        train_vae(vae, images, args.vae_steps, 32, gen, log)
        torch.save(vae.state_dict(), vae_path)
    vae.eval()
    for p in vae.parameters():
        p.requires_grad_(False)
    lat_mean, lat_std = encode_all(vae, images)
    scaling = round(float(1.0 / lat_mean.std()), 5)
    if args.resume:  # the U-Net learned the first stage's latent scale
        with open(os.path.join(args.resume, "vae", "config.json")) as f:
            scaling = json.load(f)["scaling_factor"]
    log(f"latents: std {lat_mean.std():.4f} -> scaling_factor {scaling:.5f}")

    te = CLIPTextModel(text_config(len(tok.vocab)))
    unet = UNet2DConditionModel(unet_config())
    log(f"text encoder {sum(p.numel() for p in te.parameters()) / 1e6:.2f} M, "
        f"U-Net {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M parameters")
    if args.resume:
        te.load_state_dict(load_safetensors(os.path.join(args.resume, "text_encoder", "model.safetensors")))
        unet.load_state_dict(load_safetensors(os.path.join(args.resume, "unet", "diffusion_pytorch_model.safetensors")))
        log("text encoder and U-Net start from " + args.resume)
    meta = {"seed": args.seed, "data_seed": data_seed, "images": args.images, "vae_steps": args.vae_steps, "unet_steps": args.unet_steps,
            "batch": args.batch, "threads": args.threads, "lr": args.lr, "torch": torch.__version__}
    if args.resume:
        with open(os.path.join(args.resume, "training.json")) as f:
            before = json.load(f)
        meta = {"stages": before.get("stages", [before]) + [meta]}
    else:
        meta = {"stages": [meta]}

    def write_model(ema, live):
        saved = [p.detach().clone() for p in live]
        with torch.no_grad():
            for p, e in zip(live, ema):
                p.copy_(e)
        export(args.out, tok, te, vae, unet, scaling, meta)
        with torch.no_grad():
            for p, s in zip(live, saved):
                p.copy_(s)
        log("wrote " + args.out)

    ema, live = train_unet(unet, te, tok, lat_mean, lat_std, captions, scaling, args.unet_steps, args.batch, gen, log,
                           (args.snapshot_every, write_model), args.lr)
    write_model(ema, live)
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(args.out)):
        for name in sorted(files):
            with open(os.path.join(root, name), "rb") as f:
                h.update(name.encode() + f.read())
    log(f"done in {time.time() - t_start:.0f} s; SHA-256 of the folder's files: {h.hexdigest()}")


if __name__ == "__main__":
    sys.exit(main())
