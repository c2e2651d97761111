/*
 * fuzz_yaml.c - the LDM .yaml reader (core/formats/yamlconf.c: libyaml events to a jansson tree) on
 * bytes in memory, then the dotted-path lookups the single-file loader makes (core/model/model.c).
 */
#include <stdlib.h>

#include "fuzzutil.h"
#include "yamlconf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_t *root = NULL;
    sd_error err = {0};
    if (sd_yaml_parse((const char *)data, size, "fuzz.yaml", &root, &err) < 0) return 0;
    static const char *paths[] = {"model.params.linear_start", "model.params.parameterization",
                                  "model.params.cond_stage_config.params.layer",
                                  "model.params.unet_config.params.context_dim", "model", ""};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) (void)sd_yaml_json_path(root, paths[i]);
    char *s = json_dumps(root, JSON_ENCODE_ANY);
    free(s);
    json_decref(root);
    return 0;
}
