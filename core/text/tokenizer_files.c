/*
 * tokenizer_files.c - reading and writing the tokenizer's file formats: a
 * transformers tokenizer folder and OpenAI's bpe_simple_vocab_16e6.txt.gz.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fsutil.h"
#include "tokenizer_impl.h"
#include "unicode.h"

/* Splits buf (modified in place) into lines at '\n'; *lines (caller frees) points into buf. */
static int split_lines(char *buf, size_t len, char ***lines, int *n, const char *path, sd_error *err) {
    size_t count = 1;
    for (size_t i = 0; i < len; i++) count += buf[i] == '\n';
    if (count > INT32_MAX) return sd_err(err, SD_EINPUT, "%s: too many lines", path);
    char **l = malloc(count * sizeof *l);
    if (!l) return sd_err(err, SD_ENOMEM, "%s: out of memory", path);
    int k = 0;
    char *p = buf;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '\n') {
            buf[i] = 0;
            l[k++] = p;
            p = buf + i + 1;
        }
    }
    l[k++] = p; /* the text after the last newline (buf is NUL-terminated) */
    *lines = l;
    *n = k;
    return 0;
}

/* Blank = only spaces, tabs or CR. */
static int is_blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r') return 0;
    return 1;
}

/*
 * The merge lines of a file's text: line 0 is the header, then at most
 * TOKENIZER_MAX_MERGES lines (transformers and SimpleTokenizer both read
 * lines 1..48894 and ignore the rest); trailing blank lines are dropped, as
 * the Python readers strip the text first. text must be NUL-terminated.
 */
static int merge_lines(char *text, size_t len, const char *path, int require_version, char ***all, char ***merges,
                       int *n_merges, sd_error *err) {
    int n = 0;
    *merges = NULL;
    *n_merges = 0;
    if (strlen(text) != len) return sd_err(err, SD_EINPUT, "%s: contains a NUL byte; is it really a merges file?", path);
    if (!uni_utf8_is_valid((const unsigned char *)text, len))
        return sd_err(err, SD_EINPUT, "%s: is not valid UTF-8; is it really a merges file?", path);
    int rc = split_lines(text, len, all, &n, path, err);
    if (rc < 0) return rc;
    if (require_version && strncmp((*all)[0], "#version", 8) != 0)
        return sd_err(err, SD_EINPUT, "%s: the first line must be the '#version: ...' header, got '%.60s'", path,
                      (*all)[0]);
    while (n > 1 && is_blank((*all)[n - 1])) n--;
    int m = n - 1;
    if (m > TOKENIZER_MAX_MERGES) m = TOKENIZER_MAX_MERGES;
    *merges = *all + 1;
    *n_merges = m;
    return 0;
}

/* The string value of a special-token entry: "tok" or {"content": "tok", ...}; NULL when absent or null. */
static const char *special_value(json_t *root, const char *key, const char *path, int *bad, sd_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return NULL;
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!v || !json_is_string(v)) {
        *bad = sd_err(err, SD_EINPUT, "%s: '%s' must be a string or an object with a string 'content'", path, key);
        return NULL;
    }
    return json_string_value(v);
}

/*
 * Reads the special tokens one JSON file names into vals[TOK_*] (a file read
 * later overrides one read earlier); *root keeps the strings alive (caller
 * json_decref's it). A missing file is skipped.
 */
static int read_special_file(const char *dir, const char *name, const char *vals[TOK_NSPECIAL], json_t **root,
                             sd_error *err) {
    static const char *const keys[TOK_NSPECIAL] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    *root = NULL;
    char *path = sd_fs_path_join(dir, name);
    if (!path) return sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
    if (!sd_fs_is_file(path)) {
        free(path);
        return 0;
    }
    json_error_t je;
    *root = json_load_file(path, 0, &je);
    int rc = 0;
    if (!*root)
        rc = sd_err(err, SD_EINPUT, "%s: not valid JSON (line %d: %s)", path, je.line, je.text);
    else if (!json_is_object(*root))
        rc = sd_err(err, SD_EINPUT, "%s: not a JSON object", path);
    for (int i = 0; i < TOK_NSPECIAL && rc == 0; i++) {
        const char *s = special_value(*root, keys[i], path, &rc, err);
        if (s) vals[i] = s;
    }
    free(path);
    return rc;
}

/* The special tokens of a folder: special_tokens_map.json overrides tokenizer_config.json, as in transformers. */
static int apply_special_files(tokenizer_bpe *tok, const char *dir, sd_error *err) {
    const char *vals[TOK_NSPECIAL] = {NULL};
    json_t *config = NULL, *map = NULL;
    int rc = read_special_file(dir, "tokenizer_config.json", vals, &config, err);
    if (rc == 0) rc = read_special_file(dir, "special_tokens_map.json", vals, &map, err);
    char *where = sd_fs_path_join(dir, map ? "special_tokens_map.json" : "tokenizer_config.json");
    if (rc == 0 && !where) rc = sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
    for (int i = 0; i < TOK_NSPECIAL && rc == 0; i++)
        if (vals[i]) rc = tokenizer_set_special(tok, i, vals[i], where, err);
    free(where);
    json_decref(config);
    json_decref(map);
    return rc;
}

/* vocab.json -> token strings by id (pointers into root, which the caller keeps alive). */
static int read_vocab_json(const char *path, json_t **root_out, char ***tokens_out, int *n_out, sd_error *err) {
    json_error_t je;
    *tokens_out = NULL;
    json_t *root = json_load_file(path, 0, &je);
    *root_out = root;
    if (!root) {
        if (!sd_fs_is_file(path)) return sd_err(err, SD_ENOTFOUND, "%s: not found (a tokenizer folder needs vocab.json)", path);
        return sd_err(err, SD_EINPUT, "%s: not valid JSON (line %d: %s)", path, je.line, je.text);
    }
    if (!json_is_object(root)) return sd_err(err, SD_EINPUT, "%s: not a JSON object of token -> id", path);
    size_t n = json_object_size(root);
    if (n == 0 || n > INT32_MAX / 2) return sd_err(err, SD_EINPUT, "%s: has %zu tokens", path, n);
    char **tokens = calloc(n, sizeof *tokens);
    if (!tokens) return sd_err(err, SD_ENOMEM, "%s: out of memory", path);
    *tokens_out = tokens;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!json_is_integer(val))
            return sd_err(err, SD_EINPUT, "%s: the id of token '%s' is not an integer", path, key);
        json_int_t id = json_integer_value(val);
        if (id < 0 || (size_t)id >= n)
            return sd_err(err, SD_EINPUT, "%s: token '%s' has id %lld; the %zu ids must be 0..%zu", path, key,
                          (long long)id, n, n - 1);
        if (tokens[id])
            return sd_err(err, SD_EINPUT, "%s: id %lld is given to both '%s' and '%s'", path, (long long)id,
                          tokens[id], key);
        tokens[id] = (char *)key;
    }
    *n_out = (int)n;
    return 0;
}

int tokenizer_load_dir(tokenizer_bpe **out, const char *dir, sd_error *err) {
    *out = NULL;
    char *vpath = sd_fs_path_join(dir, "vocab.json");
    char *mpath = sd_fs_path_join(dir, "merges.txt");
    json_t *root = NULL;
    char **tokens = NULL, **all = NULL, **merges = NULL, *text = NULL;
    int n_tokens = 0, n_merges = 0, rc = 0;
    size_t len = 0;
    tokenizer_bpe *tok = NULL;
    if (!vpath || !mpath) rc = sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
    if (rc == 0 && !sd_fs_is_dir(dir)) rc = sd_err(err, SD_ENOTFOUND, "%s: tokenizer folder not found", dir);
    if (rc == 0) rc = read_vocab_json(vpath, &root, &tokens, &n_tokens, err);
    if (rc == 0 && !sd_fs_is_file(mpath))
        rc = sd_err(err, SD_ENOTFOUND, "%s: not found (a tokenizer folder needs merges.txt)", mpath);
    if (rc == 0) rc = sd_fs_read_file(mpath, &text, &len, err);
    if (rc == 0) rc = merge_lines(text, len, mpath, 1, &all, &merges, &n_merges, err);
    if (rc == 0) rc = tokenizer_from_tables(&tok, dir, tokens, n_tokens, vpath, merges, n_merges, mpath, 2, err);
    if (rc == 0) rc = apply_special_files(tok, dir, err);
    if (rc == 0) rc = tokenizer_check_specials(tok, vpath, err);
    if (rc < 0) {
        tokenizer_free(tok);
        tok = NULL;
    }
    *out = tok;
    json_decref(root);
    free(tokens);
    free(all);
    free(text);
    free(vpath);
    free(mpath);
    return rc;
}

/* Reads a whole gzip (or plain) file into a NUL-terminated buffer. */
static int read_gz(const char *path, char **out, size_t *len, sd_error *err) {
    *out = NULL;
    *len = 0;
    if (!sd_fs_is_file(path)) return sd_err(err, SD_ENOTFOUND, "%s: not found", path);
    gzFile gz = gzopen(path, "rb");
    if (!gz) return sd_err(err, SD_EIO, "%s: cannot open", path);
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    int rc = buf ? 0 : sd_err(err, SD_ENOMEM, "%s: out of memory", path);
    while (rc == 0) {
        if (n == cap) {
            if (cap > ((size_t)256 << 20)) {
                rc = sd_err(err, SD_EINPUT, "%s: more than 256 MiB uncompressed; not a BPE vocabulary", path);
                break;
            }
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) {
                rc = sd_err(err, SD_ENOMEM, "%s: out of memory", path);
                break;
            }
            buf = nb;
            cap *= 2;
        }
        int got = gzread(gz, buf + n, (unsigned)(cap - n > (1u << 30) ? (1u << 30) : cap - n));
        if (got < 0) {
            int zerr;
            const char *msg = gzerror(gz, &zerr);
            rc = sd_err(err, SD_EINPUT, "%s: corrupt gzip data (%s)", path, msg);
        } else if (got == 0) {
            int zerr;
            const char *msg = gzerror(gz, &zerr);
            if (zerr != Z_OK && zerr != Z_STREAM_END)
                rc = sd_err(err, SD_EINPUT, "%s: corrupt gzip data (%s)", path, msg);
            break;
        } else {
            n += (size_t)got;
        }
    }
    /* a truncated stream reads as a short file without an error from gzread; gzclose_r reports it */
    int crc = gzclose_r(gz);
    if (rc == 0 && crc != Z_OK) rc = sd_err(err, SD_EINPUT, "%s: corrupt or truncated gzip data", path);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

int tokenizer_load_openai_gz(tokenizer_bpe **out, const char *path, sd_error *err) {
    *out = NULL;
    char *text = NULL, **all = NULL, **merges = NULL, **tokens = NULL, *joined = NULL;
    int n_merges = 0;
    size_t len = 0;
    int rc = read_gz(path, &text, &len, err);
    if (rc == 0) rc = merge_lines(text, len, path, 0, &all, &merges, &n_merges, err);
    /* SimpleTokenizer's vocabulary: byte symbols, byte symbols + "</w>", each merge joined, the two specials */
    int n_tokens = 512 + n_merges + 2;
    size_t jlen = 0;
    for (int r = 0; r < n_merges && rc == 0; r++) jlen += strlen(merges[r]) + 1;
    if (rc == 0) {
        tokens = calloc((size_t)n_tokens, sizeof *tokens);
        joined = malloc(512 * 8 + jlen + 1);
        if (!tokens || !joined) rc = sd_err(err, SD_ENOMEM, "%s: out of memory", path);
    }
    if (rc == 0) {
        uint32_t sym[256];
        uint8_t order[256];
        tokenizer_byte_symbols(sym, order);
        char *p = joined;
        for (int k = 0; k < 512; k++) {
            tokens[k] = p;
            p += uni_utf8_encode_cp(sym[order[k % 256]], (unsigned char *)p);
            if (k >= 256) {
                memcpy(p, "</w>", 4);
                p += 4;
            }
            *p++ = 0;
        }
        for (int r = 0; r < n_merges; r++) {
            /* ''.join(merge.split()) */
            tokens[512 + r] = p;
            for (const char *s = merges[r]; *s; s++)
                if (*s != ' ' && *s != '\t' && *s != '\r') *p++ = *s;
            *p++ = 0;
            if (tokens[512 + r][0] == 0) {
                rc = sd_err(err, SD_EINPUT, "%s line %d: empty merge line", path, r + 2);
                break;
            }
        }
        tokens[512 + n_merges] = "<|startoftext|>";
        tokens[513 + n_merges] = "<|endoftext|>";
    }
    tokenizer_bpe *tok = NULL;
    if (rc == 0) rc = tokenizer_from_tables(&tok, path, tokens, n_tokens, path, merges, n_merges, path, 2, err);
    if (rc == 0) rc = tokenizer_check_specials(tok, path, err);
    if (rc < 0) {
        tokenizer_free(tok);
        tok = NULL;
    }
    *out = tok;
    free(text);
    free(all);
    free(tokens);
    free(joined);
    return rc;
}

/* Writes a string into dir/name atomically. */
static int write_text(const char *dir, const char *name, const char *text, size_t len, sd_error *err) {
    char *path = sd_fs_path_join(dir, name);
    if (!path) return sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
    sd_fs_atomic_file af;
    int rc = sd_fs_atomic_open(&af, path, err);
    if (rc == 0) {
        rc = sd_fs_atomic_write(&af, text, len, err);
        if (rc == 0)
            rc = sd_fs_atomic_commit(&af, err);
        else
            sd_fs_atomic_abort(&af);
    }
    free(path);
    return rc;
}

static int write_json(const char *dir, const char *name, json_t *obj, sd_error *err) {
    char *s = obj ? json_dumps(obj, JSON_INDENT(2)) : NULL;
    if (!s) return sd_err(err, SD_ENOMEM, "tokenizer: out of memory writing %s", name);
    size_t len = strlen(s);
    char *t = malloc(len + 2);
    int rc;
    if (!t) {
        rc = sd_err(err, SD_ENOMEM, "tokenizer: out of memory writing %s", name);
    } else {
        memcpy(t, s, len);
        t[len] = '\n';
        rc = write_text(dir, name, t, len + 1, err);
    }
    free(t);
    free(s);
    return rc;
}

/* special_tokens_map.json and tokenizer_config.json with tok's special tokens. */
static json_t *specials_json(const tokenizer_bpe *tok, int config) {
    json_t *o = json_object();
    if (!o) return NULL;
    int bad = 0;
    if (config) {
        bad |= json_object_set_new(o, "tokenizer_class", json_string("CLIPTokenizer"));
        bad |= json_object_set_new(o, "model_max_length", json_integer(77));
        bad |= json_object_set_new(o, "do_lower_case", json_true());
        bad |= json_object_set_new(o, "errors", json_string("replace"));
        bad |= json_object_set_new(o, "add_prefix_space", json_false());
    }
    static const char *const keys[TOK_NSPECIAL] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    for (int i = 0; i < TOK_NSPECIAL; i++) bad |= json_object_set_new(o, keys[i], json_string(tok->special[i]));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int tokenizer_save_dir(const tokenizer_bpe *tok, const char *dir, sd_error *err) {
    int rc = sd_fs_mkdirs(dir, err);
    if (rc < 0) return rc;

    /* vocab.json in id order */
    json_t *vocab = json_object();
    for (int i = 0; vocab && i < tok->n_vocab; i++) {
        int32_t id;
        /* a string that occurs twice keeps its last id, as when it was read */
        if (strmap_get(&tok->vocab, tok->tokens[i], strlen(tok->tokens[i]), &id) && id != i) continue;
        if (json_object_set_new(vocab, tok->tokens[i], json_integer(i)) < 0) {
            json_decref(vocab);
            vocab = NULL;
        }
    }
    rc = write_json(dir, "vocab.json", vocab, err);
    json_decref(vocab);
    if (rc < 0) return rc;

    /* merges.txt: the header, then the merges in force in rank order */
    size_t cap = 32;
    for (int r = 0; r < tok->n_merges; r++)
        cap += strlen(tok->tokens[tok->merge_parts[2 * r]]) + strlen(tok->tokens[tok->merge_parts[2 * r + 1]]) + 2;
    char *text = malloc(cap);
    if (!text) return sd_err(err, SD_ENOMEM, "tokenizer: out of memory writing merges.txt");
    size_t len = (size_t)sprintf(text, "#version: 0.2\n");
    for (int r = 0; r < tok->n_merges; r++) {
        if (!tokenizer_merge_in_force(tok, r)) continue;
        len += (size_t)sprintf(text + len, "%s %s\n", tok->tokens[tok->merge_parts[2 * r]],
                               tok->tokens[tok->merge_parts[2 * r + 1]]);
    }
    rc = write_text(dir, "merges.txt", text, len, err);
    free(text);
    if (rc < 0) return rc;

    json_t *o = specials_json(tok, 0);
    rc = write_json(dir, "special_tokens_map.json", o, err);
    json_decref(o);
    if (rc < 0) return rc;
    o = specials_json(tok, 1);
    rc = write_json(dir, "tokenizer_config.json", o, err);
    json_decref(o);
    return rc;
}
