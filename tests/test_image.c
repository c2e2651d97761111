/* Tests for core/image: picture <-> tensor conversions equal diffusers' bit for bit. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "image.h"

static const uint8_t *u8_data(const st_file *f, const char *name, size_t *n) {
    const sd_tensor *t = tu_tensor(f, name);
    assert_int_equal(t->dtype, SD_U8);
    if (n) *n = t->nbytes;
    return t->data;
}

static void test_decoded_image_rounds_to_the_reference_png_pixels(void **state) {
    (void)state;
    static const char *cases[] = {"golden/pipeline_sd15_ddim_96.safetensors", "golden/pipeline_sd15_euler_a.safetensors",
                                  "golden/pipeline_sd15_pndm_64x96.safetensors"};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        st_file f;
        tu_open(&f, cases[k]);
        const sd_tensor *img = tu_tensor(&f, "image"); /* [H, W, 3] already x/2+0.5 clamped */
        int h = (int)img->shape[0], w = (int)img->shape[1];
        float *hwc = tu_f32(&f, "image", NULL);
        /* rebuild a decoder-like NCHW tensor whose x/2+0.5 is exactly the stored value */
        float *x = malloc(sizeof(float) * 3 * h * w);
        for (int i = 0; i < h * w; i++)
            for (int c = 0; c < 3; c++) x[c * h * w + i] = (hwc[3 * i + c] - 0.5f) * 2.0f;
        uint8_t *rgb = malloc((size_t)3 * h * w);
        float *back = malloc(sizeof(float) * 3 * h * w);
        image_tensor_to_u8_ex(x, h, w, back, rgb);
        tu_expect_close(cases[k], back, hwc, (size_t)3 * h * w, 0);
        size_t n;
        const uint8_t *want = u8_data(&f, "image_u8", &n);
        assert_int_equal(n, (size_t)3 * h * w);
        assert_memory_equal(rgb, want, n);
        free(x);
        free(rgb);
        free(back);
        free(hwc);
        st_close(&f);
    }
}

static void test_input_picture_becomes_the_reference_init_image(void **state) {
    (void)state;
    st_file f;
    tu_open(&f, "golden/pipeline_sd15_img2img_ddim_96.safetensors");
    size_t n;
    const uint8_t *rgb = u8_data(&f, "input_image_u8", &n);
    float *want = tu_f32(&f, "init_image", NULL);
    float *got = malloc(sizeof(float) * n);
    image_u8_to_tensor(rgb, 96, 96, got);
    tu_expect_close("init_image", got, want, n, 0);
    free(got);
    free(want);
    st_close(&f);
}

static void test_mask_preparation_matches_the_inpaint_pipeline(void **state) {
    (void)state;
    st_file f;
    tu_open(&f, "golden/pipeline_inpaint_pndm_96.safetensors");
    size_t n;
    const uint8_t *gray = u8_data(&f, "mask_u8", &n);
    assert_int_equal(n, 96 * 96);
    float *mask = malloc(sizeof(float) * n), *want = tu_f32(&f, "mask", NULL);
    image_mask_binarize(gray, 96, 96, mask);
    tu_expect_close("mask", mask, want, n, 0);
    free(want);
    float *init = tu_f32(&f, "init_image", NULL), *masked = malloc(sizeof(float) * 3 * n);
    want = tu_f32(&f, "masked_image", NULL);
    image_apply_mask(init, mask, 96, 96, masked);
    tu_expect_close("masked_image", masked, want, 3 * n, 0);
    free(want);
    float lat[12 * 12];
    want = tu_f32(&f, "mask_latent", NULL);
    image_resize_nearest(mask, 1, 96, 96, lat, 12, 12);
    tu_expect_close("mask_latent", lat, want, 144, 0);
    free(want);
    free(init);
    free(masked);
    free(mask);
    st_close(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoded_image_rounds_to_the_reference_png_pixels),
        cmocka_unit_test(test_input_picture_becomes_the_reference_init_image),
        cmocka_unit_test(test_mask_preparation_matches_the_inpaint_pipeline),
    };
    return cmocka_run_group_tests_name("image", tests, NULL, NULL);
}
