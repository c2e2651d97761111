/*
 * Tests for tensor parallelism through the command line under mpirun
 * (oversubscribed, one thread per rank): every 96-px golden pipeline with
 * `generate --tp 2` for each strategy against the golden PNG; CFG-parallel
 * byte-identical to one rank; groups of the batch runner (`run --tp 2`)
 * byte-identical to `generate --tp 2`; a failing or killed member.
 */
#include "testutil.h"

#include <jansson.h>
#include "fsutil.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MPIRUN "mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1"

/* The generate options of golden/<name>.json (model, prompts, sampler, size, steps, CFG, seed, inputs). */
static void golden_args(const char *name, char *args, size_t size) {
    char rel[256];
    snprintf(rel, sizeof rel, "golden/%s.json", name);
    json_error_t je;
    json_t *root = json_load_file(tu_path(rel), 0, &je);
    if (!root) fail_msg("%s: %s", rel, je.text);
    json_t *s = json_object_get(root, "settings");
    const char *task = json_string_value(json_object_get(s, "task"));
    const char *sched = json_string_value(json_object_get(s, "scheduler"));
    char sampler[64];
    if (!strcmp(sched, "dpmpp_2m_karras")) snprintf(sampler, sizeof sampler, "dpm++2m --karras");
    else snprintf(sampler, sizeof sampler, "%s", sched);
    int n = snprintf(args, size, "-m %s/models/%s -p '%s' -n '%s' --sampler %s -W %lld -H %lld --steps %lld "
                     "--cfg-scale %g --seed %lld", tu_testdata(), json_string_value(json_object_get(s, "model")),
                     json_string_value(json_object_get(s, "prompt")),
                     json_string_value(json_object_get(s, "negative_prompt")), sampler,
                     json_integer_value(json_object_get(s, "width")), json_integer_value(json_object_get(s, "height")),
                     json_integer_value(json_object_get(s, "num_inference_steps")),
                     json_number_value(json_object_get(s, "guidance_scale")),
                     json_integer_value(json_object_get(s, "seed")));
    if (strcmp(task, "txt2img"))
        n += snprintf(args + n, size - (size_t)n, " -i %s/golden/%s.input.png", tu_testdata(), name);
    if (json_object_get(s, "strength"))
        n += snprintf(args + n, size - (size_t)n, " --strength %g", json_number_value(json_object_get(s, "strength")));
    if (!strcmp(task, "inpaint")) snprintf(args + n, size - (size_t)n, " --mask %s/golden/%s.mask.png", tu_testdata(), name);
    json_decref(root);
}

static void sh_ok(const char *what, const char *cmd) {
    char *out;
    int rc = tu_sh(&out, "SDRENDER_CACHE=%s %s 2>&1", tu_tmpdir(), cmd);
    if (rc != 0) fail_msg("%s: exit %d: %s", what, rc, out);
    free(out);
}

static const char *golden_96[] = {"pipeline_sd15_ddim_96",         "pipeline_sd15_ddim_nocfg_96",
                                  "pipeline_sd15_dpmpp_2m_karras_96", "pipeline_sd15_euler_96",
                                  "pipeline_sd15_euler_a_96",      "pipeline_sd15_img2img_ddim_96",
                                  "pipeline_sd15_pndm_96",         "pipeline_sd2_ddim_vpred_96",
                                  "pipeline_inpaint_pndm_96"};

static void test_every_golden_pipeline_with_two_ranks(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof golden_96 / sizeof *golden_96; i++) {
        const char *name = golden_96[i];
        char args[4096], cmd[8192], golden[512], one[512], png[512];
        golden_args(name, args, sizeof args);
        snprintf(golden, sizeof golden, "%s/golden/%s.png", tu_testdata(), name);
        snprintf(one, sizeof one, "%s", tu_tmp("tp-one.png"));
        snprintf(cmd, sizeof cmd, "%s generate -q --threads 1 %s -o %s", tu_bin(), args, one);
        sh_ok(name, cmd);
        int cfg_on = !strstr(name, "nocfg");
        for (int strat = 0; strat < 2; strat++) {
            if (strat == 0 && !cfg_on) continue; /* CFG-parallel needs guidance */
            const char *par = strat == 0 ? "cfg" : "tensor";
            snprintf(png, sizeof png, "%s", tu_tmp("tp-group.png"));
            snprintf(cmd, sizeof cmd, MPIRUN " -np 2 %s generate -q --threads 1 --tp 2 --parallel %s %s -o %s",
                     tu_bin(), par, args, png);
            sh_ok(name, cmd);
            int d = tu_png_max_diff(png, golden);
            if (d > 1) fail_msg("%s --parallel %s: %d levels from the golden PNG", name, par, d);
            int d1 = tu_png_max_diff(png, one);
            if (strat == 0 && d1 != 0) fail_msg("%s --parallel cfg: %d levels from one rank, not identical", name, d1);
            if (d1 > 1) fail_msg("%s --parallel tensor: %d levels from one rank", name, d1);
            if (strat == 0) {
                char *a = NULL, *b = NULL;
                size_t na, nb;
                sd_error err = {0};
                assert_int_equal(sd_fs_read_file(png, &a, &na, &err), 0);
                assert_int_equal(sd_fs_read_file(one, &b, &nb, &err), 0);
                assert_true(na == nb && !memcmp(a, b, na)); /* the file, not just the pixels */
                free(a), free(b);
            }
        }
    }
}

static void test_bad_groups_exit_2_with_one_line(void **state) {
    (void)state;
    char *out;
    char args[4096], cmd[8192];
    golden_args("pipeline_sd15_ddim_96", args, sizeof args);
    /* the job's rank count must be the group size */
    snprintf(cmd, sizeof cmd, MPIRUN " -np 3 %s generate -q --threads 1 --tp 2 %s -o %s 2>&1", tu_bin(), args,
             tu_tmp("bad.png"));
    int rc = tu_sh(&out, "%s", cmd);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "--tp 2: this job has 3 MPI ranks"));
    free(out);
    /* tiny-sd15 has 2 heads per level: 4 ranks cannot share them */
    snprintf(cmd, sizeof cmd, MPIRUN " -np 4 %s generate -q --threads 1 --tp 4 --parallel tensor %s -o %s 2>&1",
             tu_bin(), args, tu_tmp("bad.png"));
    rc = tu_sh(&out, "%s", cmd);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "heads"));
    free(out);
    /* CFG-parallel without guidance */
    golden_args("pipeline_sd15_ddim_nocfg_96", args, sizeof args);
    snprintf(cmd, sizeof cmd, MPIRUN " -np 2 %s generate -q --threads 1 --tp 2 --parallel cfg %s -o %s 2>&1",
             tu_bin(), args, tu_tmp("bad.png"));
    rc = tu_sh(&out, "%s", cmd);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "--parallel cfg needs classifier-free guidance"));
    free(out);
    rc = tu_sh(&out, "%s generate --tp 2 --parallel sideways %s -o %s 2>&1", tu_bin(), args, tu_tmp("bad.png"));
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "expected auto, cfg or tensor"));
    free(out);
}

static void test_a_failing_member_fails_the_group_without_hanging(void **state) {
    (void)state;
    char *out;
    char args[4096];
    golden_args("pipeline_sd15_euler_96", args, sizeof args);
    for (int strat = 0; strat < 2; strat++) {
        int rc = tu_sh(&out, "SDRENDER_TP_FAIL_RANK=1 timeout 120 " MPIRUN " -x SDRENDER_TP_FAIL_RANK -np 2 %s generate "
                       "-q --threads 1 --tp 2 --parallel %s %s -o %s 2>&1", tu_bin(), strat ? "tensor" : "cfg", args,
                       tu_tmp("fail.png"));
        assert_int_not_equal(rc, 124); /* no hang */
        assert_int_not_equal(rc, 0);
        if (!strstr(out, "rank 1 of the group: injected failure")) fail_msg("exit %d: %s", rc, out);
        free(out);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_golden_pipeline_with_two_ranks),
        cmocka_unit_test(test_bad_groups_exit_2_with_one_line),
        cmocka_unit_test(test_a_failing_member_fails_the_group_without_hanging),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
