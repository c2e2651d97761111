/*
 * inception.h - pytorch-fid's FID InceptionV3, up to the 2048-d pool3 features.
 *
 *     inception_model m;
 *     inception_load(&m, &weights, &err);   // names "Conv2d_1a_3x3.conv.weight", "Mixed_7c.branch_pool.bn.bias", ...
 *     inception_features(&m, rgb, h, w, feat, &err);   // rgb: [h, w, 3] uint8 -> feat: [2048]
 *     inception_free(&m);
 *
 * The network is pytorch-fid's InceptionV3(output_blocks=[3],
 * resize_input=True, normalize_input=True, use_fid_inception=True):
 * torchvision's Inception3 with the FIDInceptionA/C/E_1/E_2 blocks of the
 * TensorFlow 2015-12-05 graph (average pools that do not count padding, a max
 * pool in Mixed_7c). Every BasicConv2d is conv -> BatchNorm(eps 1e-3) -> ReLU;
 * the BatchNorm is folded into float32 copies of the conv weights at load
 * time, so the model owns ~87 MB of weights and needs nothing of `w` after
 * inception_load returns. F16, BF16 and F32 weights are accepted; tensors the
 * network does not use (fc.*, *.num_batches_tracked) are ignored.
 *
 * Input: 8-bit RGB -> /255 -> bilinear resize to 299x299 exactly as
 * F.interpolate(mode="bilinear", align_corners=False) (no antialiasing,
 * aspect ratio not kept) -> 2x - 1.
 *
 * Memory: activations come from the model's arena and grow with the batch;
 * the batched calls process at most `max_batch` images at a time (default
 * INCEPTION_DEFAULT_MAX_BATCH, about 20 MB of activations per image).
 */
#ifndef SD_INCEPTION_H
#define SD_INCEPTION_H

#include <stdint.h>

#include "err.h"
#include "ops.h"
#include "probe.h"
#include "weights.h"

#define INCEPTION_SIZE 299      /* network input height and width */
#define INCEPTION_DIM 2048      /* pool3 feature size */
#define INCEPTION_DEFAULT_MAX_BATCH 8

/* One BasicConv2d with its BatchNorm folded in: y = relu(conv(x, w) + b). */
typedef struct inception_conv {
    int in_ch, out_ch, k_h, k_w, stride, pad_h, pad_w;
    sd_tensor w, b;                   /* float32 views into the model's `params`: [out, in, k_h, k_w], [out] */
} inception_conv;

/* FIDInceptionA (Mixed_5b/5c/5d). */
typedef struct inception_block_a {
    inception_conv b1x1, b5x5_1, b5x5_2, dbl_1, dbl_2, dbl_3, pool;
} inception_block_a;

/* InceptionB (Mixed_6a): 35x35 -> 17x17. */
typedef struct inception_block_b {
    inception_conv b3x3, dbl_1, dbl_2, dbl_3;
} inception_block_b;

/* FIDInceptionC (Mixed_6b..6e). */
typedef struct inception_block_c {
    inception_conv b1x1, b7_1, b7_2, b7_3, dbl_1, dbl_2, dbl_3, dbl_4, dbl_5, pool;
} inception_block_c;

/* InceptionD (Mixed_7a): 17x17 -> 8x8. */
typedef struct inception_block_d {
    inception_conv b3_1, b3_2, b7x3_1, b7x3_2, b7x3_3, b7x3_4;
} inception_block_d;

/* FIDInceptionE_1 (Mixed_7b, average pool) and FIDInceptionE_2 (Mixed_7c, max pool). */
typedef struct inception_block_e {
    inception_conv b1x1, b3_1, b3_2a, b3_2b, dbl_1, dbl_2, dbl_3a, dbl_3b, pool;
} inception_block_e;

typedef struct inception_model {
    inception_conv c1a, c2a, c2b, c3b, c4a; /* stem: Conv2d_1a_3x3 .. Conv2d_4a_3x3 */
    inception_block_a m5[3];               /* Mixed_5b, 5c, 5d */
    inception_block_b m6a;
    inception_block_c m6[4];               /* Mixed_6b .. 6e */
    inception_block_d m7a;
    inception_block_e m7[2];               /* Mixed_7b, 7c */
    float *params;                     /* all folded weights and biases (owned) */
    size_t n_params;
    int max_batch;                     /* images per forward pass in the batched calls */
    ops_ctx ops;                       /* kernel context: activations and scratch */
    /* optional: "input", "conv2d_1a_3x3", "block0_maxpool1", "block1_maxpool2",
       "block2_mixed_6e", "mixed_7c" (names of the reference dumps), each [B, C, H, W] */
    const sd_probe *probe;
} inception_model;

/*
 * Finds, shape-checks and folds all 94 BasicConv2d modules of w (pytorch-fid
 * names). Fails naming the first missing or mismatched tensor.
 */
int inception_load(inception_model *m, const sd_weights *w, sd_error *err);
void inception_free(inception_model *m);

/*
 * rgb: [h, w, 3] uint8 -> out: [3, 299, 299] network input (resized, in
 * [-1, 1]), kernels run with ops. ops may be NULL (a temporary context is used).
 */
int inception_preprocess(const uint8_t *rgb, int h, int w, float *out, ops_ctx *ops, sd_error *err);

/* x: [B, 3, 299, 299] preprocessed input -> out: [B, 2048] pool3 features (B images in one pass). */
int inception_forward(inception_model *m, const float *x, int B, float *out, sd_error *err);

/* One image: rgb [h, w, 3] uint8 -> out [2048]. */
int inception_features(inception_model *m, const uint8_t *rgb, int h, int w, float *out, sd_error *err);

/*
 * n images of any sizes: rgb[i] is [h[i], w[i], 3] uint8 -> out: [n, 2048],
 * computed max_batch images per pass.
 */
int inception_features_batch(inception_model *m, const uint8_t *const *rgb, const int *h, const int *w, int n,
                             float *out, sd_error *err);

/* Multiply-adds x 2 of one forward pass over B images (convolutions only). */
double inception_flops(const inception_model *m, int B);

#endif
