#include "yamlconf.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "fsutil.h"

/* Resolves an unquoted scalar to a JSON value (YAML 1.1 style, as PyYAML does). */
static json_t *plain_scalar(const char *s) {
    if (!*s || !strcmp(s, "~") || !strcasecmp(s, "null")) return json_null();
    if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on")) return json_true();
    if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off")) return json_false();
    char *end;
    errno = 0;
    long long iv = strtoll(s, &end, 10);
    if (!*end && !errno) return json_integer(iv);
    if (!strcasecmp(s, ".inf") || !strcasecmp(s, "+.inf")) return json_real(INFINITY);
    if (!strcasecmp(s, "-.inf")) return json_real(-INFINITY);
    errno = 0;
    double dv = strtod(s, &end);
    /* strtod also accepts "inf", "nan", hex: YAML does not, keep those as strings */
    if (!*end && !errno && strpbrk(s, "0123456789") && !strpbrk(s, "xXnN")) return json_real(dv);
    return json_string(s);
}

typedef struct {
    yaml_parser_t parser;
    const char *name;
    sd_error *err;
} yreader;

static int next_event(yreader *r, yaml_event_t *ev) {
    if (!yaml_parser_parse(&r->parser, ev))
        return sd_err(r->err, SD_EINPUT, "%s:%zu: YAML syntax error: %s", r->name, r->parser.problem_mark.line + 1,
                      r->parser.problem ? r->parser.problem : "unknown");
    return 0;
}

static int read_node(yreader *r, yaml_event_t *ev, json_t **out, int depth);

/* Reads the children of a mapping or sequence whose start event was consumed. */
static int read_children(yreader *r, json_t *container, int is_map, int depth) {
    for (;;) {
        yaml_event_t ev;
        if (next_event(r, &ev) < 0) return r->err ? r->err->code : SD_EINPUT;
        if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        json_t *key = NULL, *val = NULL;
        int rc = read_node(r, &ev, is_map ? &key : &val, depth + 1);
        if (rc < 0) return rc;
        if (is_map) {
            if (!json_is_string(key) && !json_is_integer(key)) {
                size_t line = r->parser.mark.line + 1;
                json_decref(key);
                return sd_err(r->err, SD_EINPUT, "%s:%zu: mapping key is not a scalar", r->name, line);
            }
            char kbuf[32];
            const char *k = json_is_string(key) ? json_string_value(key) : kbuf;
            if (json_is_integer(key)) snprintf(kbuf, sizeof kbuf, "%lld", (long long)json_integer_value(key));
            yaml_event_t vev;
            if (next_event(r, &vev) < 0) {
                json_decref(key);
                return r->err ? r->err->code : SD_EINPUT;
            }
            rc = read_node(r, &vev, &val, depth + 1);
            if (rc == 0) json_object_set_new(container, k, val);
            json_decref(key);
            if (rc < 0) return rc;
        } else {
            json_array_append_new(container, val);
        }
    }
}

/* Converts the node starting with event ev (consumed here) into *out. */
static int read_node(yreader *r, yaml_event_t *ev, json_t **out, int depth) {
    int rc = 0;
    *out = NULL;
    if (depth > 64) {
        yaml_event_delete(ev);
        return sd_err(r->err, SD_EINPUT, "%s: YAML nested too deeply", r->name);
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        const char *v = (const char *)ev->data.scalar.value;
        *out = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? plain_scalar(v) : json_string(v);
        break;
    }
    case YAML_MAPPING_START_EVENT:
        *out = json_object();
        rc = read_children(r, *out, 1, depth);
        break;
    case YAML_SEQUENCE_START_EVENT:
        *out = json_array();
        rc = read_children(r, *out, 0, depth);
        break;
    case YAML_ALIAS_EVENT:
        rc = sd_err(r->err, SD_EUNSUPPORTED, "%s:%zu: YAML aliases are not supported", r->name,
                    ev->start_mark.line + 1);
        break;
    default:
        rc = sd_err(r->err, SD_EINPUT, "%s: unexpected YAML event", r->name);
        break;
    }
    yaml_event_delete(ev);
    if (rc < 0 && *out) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

int sd_yaml_parse(const char *text, size_t len, const char *name, json_t **out, sd_error *err) {
    yreader r = {.name = name, .err = err};
    *out = NULL;
    if (!yaml_parser_initialize(&r.parser)) return sd_err(err, SD_ENOMEM, "out of memory");
    yaml_parser_set_input_string(&r.parser, (const unsigned char *)text, len);
    int rc = 0;
    for (;;) {
        yaml_event_t ev;
        if ((rc = next_event(&r, &ev)) < 0) break;
        if (ev.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (ev.type == YAML_STREAM_START_EVENT || ev.type == YAML_DOCUMENT_START_EVENT) {
            yaml_event_delete(&ev);
            continue;
        }
        rc = read_node(&r, &ev, out, 0);
        break;
    }
    yaml_parser_delete(&r.parser);
    if (rc == 0 && !*out) rc = sd_err(err, SD_EINPUT, "%s: empty YAML document", name);
    return rc;
}

int sd_yaml_load(const char *path, json_t **out, sd_error *err) {
    char *text;
    size_t len;
    *out = NULL;
    int rc = sd_fs_read_file(path, &text, &len, err);
    if (rc < 0) return rc;
    rc = sd_yaml_parse(text, len, path, out, err);
    free(text);
    return rc;
}

json_t *sd_yaml_json_path(json_t *root, const char *dotted) {
    char key[128];
    const char *p = dotted;
    json_t *cur = root;
    while (cur && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof key) return NULL;
        memcpy(key, p, n);
        key[n] = 0;
        cur = json_is_object(cur) ? json_object_get(cur, key) : NULL;
        p = dot ? dot + 1 : p + n;
    }
    return cur;
}
