/*
 * yamlconf.h - YAML files (LDM model configs such as v1-inference.yaml) as
 * jansson trees, so configs are queried the same way whatever their format.
 *
 * Plain scalars resolve as YAML 1.1 core types: integers, floats
 * (incl. 1e-4 and .inf), true/false/yes/no/on/off, null/~; quoted scalars
 * stay strings. Anchors and aliases are refused (LDM configs do not use them).
 */
#ifndef SD_YAMLCONF_H
#define SD_YAMLCONF_H

#include <jansson.h>

#include "err.h"

/* Parses the first document of path into *out (caller json_decref's). */
int sd_yaml_load(const char *path, json_t **out, sd_error *err);
/* Same from a buffer; `name` is used in messages. */
int sd_yaml_parse(const char *text, size_t len, const char *name, json_t **out, sd_error *err);

/* Follows a dotted path of object keys ("model.params.unet_config.params"); NULL if absent. */
json_t *sd_yaml_json_path(json_t *root, const char *dotted);

#endif
