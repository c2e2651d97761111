/*
 * The networks loaded from the single-file fp16 checkpoint (tiny-sd15.safetensors
 * with its .yaml, and the .ckpt twin) give the reference outputs, as from the
 * diffusers folder: text encoder, U-Net and VAE decode/encode.
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "clip.h"
#include "model.h"
#include "unet.h"
#include "vae.h"

static void check_model(const char *rel) {
    sd_model m;
    sd_error err = {0};
    if (sd_model_open(&m, tu_path(rel), NULL, &err) < 0) fail_msg("%s", err.msg);
    char label[256];

    /* text encoder: last and penultimate hidden states of six prompts */
    st_file g;
    tu_open(&g, "golden/text_encoder_sd15.safetensors");
    const sd_tensor *ids64 = tu_tensor(&g, "input_ids");
    int n_ids = (int)sd_tensor_numel(ids64);
    int *ids = malloc(sizeof(int) * (size_t)n_ids);
    for (int i = 0; i < n_ids; i++) {
        int64_t v;
        memcpy(&v, (const char *)ids64->data + 8 * (size_t)i, 8);
        ids[i] = (int)v;
    }
    clip_text_model clip;
    if (clip_text_load(&clip, &m.clip, &m.clip_w, &err) < 0) fail_msg("%s", err.msg);
    size_t n;
    float *want = tu_f32(&g, "last_hidden_state", &n), *got = malloc(sizeof(float) * n);
    assert_int_equal(clip_text_forward(&clip, ids, 6, 77, 0, got, &err), 0);
    snprintf(label, sizeof label, "%s text encoder last_hidden_state", rel);
    tu_expect_close(label, got, want, n, 2e-5);
    free(want);
    want = tu_f32(&g, "penultimate_hidden_state", &n);
    assert_int_equal(clip_text_forward(&clip, ids, 6, 77, 1, got, &err), 0);
    snprintf(label, sizeof label, "%s text encoder penultimate_hidden_state", rel);
    tu_expect_close(label, got, want, n, 2e-5);
    free(want);
    free(got);
    free(ids);
    clip_text_free(&clip);
    st_close(&g);

    /* U-Net at 16x16, t = 500 */
    tu_open(&g, "golden/unet_sd15.safetensors");
    unet_model unet;
    if (unet_load(&unet, &m.unet, &m.unet_w, &err) < 0) fail_msg("%s", err.msg);
    float *x = tu_f32(&g, "x_16x16", NULL), *ctx = tu_f32(&g, "context", NULL);
    want = tu_f32(&g, "out_16x16_t500_int64", &n);
    got = malloc(sizeof(float) * n);
    float t[2] = {500, 500};
    assert_int_equal(unet_forward(&unet, x, t, ctx, 77, 2, 16, 16, got, &err), 0);
    snprintf(label, sizeof label, "%s unet out_16x16_t500", rel);
    tu_expect_close(label, got, want, n, 2e-5);
    free(x);
    free(ctx);
    free(want);
    free(got);
    unet_free(&unet);
    st_close(&g);

    /* VAE decode 8x8 and encode 64x64 */
    tu_open(&g, "golden/vae_sd15.safetensors");
    vae_model vae;
    if (vae_load(&vae, &m.vae, &m.vae_w, &err) < 0) fail_msg("%s", err.msg);
    float *z = tu_f32(&g, "z_8x8", NULL);
    want = tu_f32(&g, "decode_8x8", &n);
    got = malloc(sizeof(float) * n);
    assert_int_equal(vae_decode(&vae, z, 1, 8, 8, got, &err), 0);
    snprintf(label, sizeof label, "%s vae decode_8x8", rel);
    tu_expect_close(label, got, want, n, 1e-4);
    free(got);
    free(want);
    free(z);
    float *img = tu_f32(&g, "image_64x64", NULL), *mean_want = tu_f32(&g, "encode_64x64_mean", &n);
    float *mean = malloc(sizeof(float) * n), *logvar = malloc(sizeof(float) * n);
    assert_int_equal(vae_encode(&vae, img, 1, 64, 64, mean, logvar, &err), 0);
    snprintf(label, sizeof label, "%s vae encode_64x64_mean", rel);
    tu_expect_close(label, mean, mean_want, n, 2e-4);
    free(img);
    free(mean_want);
    free(mean);
    free(logvar);
    vae_free(&vae);
    st_close(&g);
    sd_model_close(&m);
}

static void test_single_safetensors_checkpoint_networks_match_the_reference(void **state) {
    (void)state;
    check_model("models/tiny-sd15.safetensors");
}

static void test_ckpt_checkpoint_networks_match_the_reference(void **state) {
    (void)state;
    check_model("checkpoints/tiny-sd15.ckpt");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_safetensors_checkpoint_networks_match_the_reference),
        cmocka_unit_test(test_ckpt_checkpoint_networks_match_the_reference),
    };
    return cmocka_run_group_tests_name("single_file", tests, NULL, NULL);
}
