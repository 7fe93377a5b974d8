/*
** tokenize.c — `dorac tokenize`: text to ids and back with a model's
** tokenizer.json, as Hugging Face tokenizers does it.
**
**   dorac tokenize --tokenizer FILE [--add-special] < text      → [ids]
**   dorac tokenize --tokenizer FILE --jsonl < data.jsonl        → {"ids": [...]} per line
**   dorac tokenize --tokenizer FILE --decode < ids.json         → text
**   dorac tokenize --tokenizer FILE --decode --jsonl            {"ids"} → {"text"} per line
**
** Text mode encodes stdin byte for byte (a trailing newline is part of the
** text: use printf, not echo, to leave it out); invalid UTF-8 becomes U+FFFD
** as in the library. --decode prints the text exactly, with no newline added,
** so encode | decode gives the text back. tokenizer_config.json next to FILE
** is read when present (add_bos_token / add_eos_token), unless --config names
** another file.
*/
#define _POSIX_C_SOURCE 200809L /* getline */

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "core/error.h"
#include "dorac.h"
#include "tokenizer/tokenizer.h"

static int read_all(FILE *f, char **data, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return dorac_error(DORAC_E_NOMEM, "out of memory reading stdin");
    for (;;) {
        if (n == cap) {
            char *p = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
            if (!p) {
                free(buf);
                return dorac_error(DORAC_E_NOMEM, "out of memory reading stdin");
            }
            buf = p;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        return dorac_error(DORAC_E_IO, "reading stdin failed");
    }
    *data = buf;
    *len = n;
    return DORAC_OK;
}

static void print_ids(FILE *out, const int32_t *ids, size_t n) {
    fputc('[', out);
    for (size_t i = 0; i < n; i++) fprintf(out, i ? ", %d" : "%d", ids[i]);
    fputc(']', out);
}

/* The JSON array of ids in j, as a malloc'd int32 array. */
static int json_to_ids(json_t *j, const char *where, int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    if (!json_is_array(j)) return dorac_error(DORAC_E_FORMAT, "%s: expected a JSON array of ids", where);
    size_t m = json_array_size(j);
    int32_t *v = malloc((m ? m : 1) * sizeof *v);
    if (!v) return dorac_error(DORAC_E_NOMEM, "out of memory");
    for (size_t i = 0; i < m; i++) {
        json_t *e = json_array_get(j, i);
        if (!json_is_integer(e) || json_integer_value(e) < INT32_MIN || json_integer_value(e) > INT32_MAX) {
            free(v);
            return dorac_error(DORAC_E_FORMAT, "%s: element %zu is not a 32-bit integer", where, i);
        }
        v[i] = (int32_t)json_integer_value(e);
    }
    *ids = v;
    *n = m;
    return DORAC_OK;
}

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return false;
    return true;
}

/* One JSONL record: {"text"} → {"ids"}, or with decode {"ids"} → {"text"}. */
static int jsonl_line(const dorac_tokenizer *tok, const char *line, size_t len, size_t lineno,
                      bool decode, bool add_special, bool skip_special, FILE *out) {
    char where[64];
    snprintf(where, sizeof where, "stdin line %zu", lineno);
    json_error_t err;
    json_t *j = json_loadb(line, len, JSON_ALLOW_NUL, &err);
    if (!j) return dorac_error(DORAC_E_FORMAT, "%s column %d: %s", where, err.column, err.text);
    int rc = DORAC_OK;
    if (!json_is_object(j)) {
        rc = dorac_error(DORAC_E_FORMAT, "%s: expected a JSON object", where);
    } else if (!decode) {
        json_t *t = json_object_get(j, "text");
        int32_t *ids = NULL;
        size_t n = 0;
        if (!json_is_string(t)) rc = dorac_error(DORAC_E_FORMAT, "%s: expected {\"text\": \"...\"}", where);
        else rc = dorac_tokenizer_encode(tok, json_string_value(t), json_string_length(t), add_special, &ids, &n);
        if (!rc) {
            fputs("{\"ids\": ", out);
            print_ids(out, ids, n);
            fputs("}\n", out);
        }
        free(ids);
    } else {
        int32_t *ids = NULL;
        size_t n = 0;
        char *text = NULL;
        size_t tlen = 0;
        rc = json_to_ids(json_object_get(j, "ids"), where, &ids, &n);
        if (!rc) rc = dorac_tokenizer_decode(tok, ids, n, skip_special, &text, &tlen);
        if (!rc) {
            json_t *o = json_object();
            json_object_set_new(o, "text", json_stringn(text, tlen));
            char *s = json_dumps(o, JSON_COMPACT);
            json_decref(o);
            if (s) {
                fputs(s, out);
                fputc('\n', out);
                free(s);
            } else {
                rc = dorac_error(DORAC_E_NOMEM, "out of memory");
            }
        }
        free(ids);
        free(text);
    }
    json_decref(j);
    return rc;
}

static int run_jsonl(const dorac_tokenizer *tok, bool decode, bool add_special, bool skip_special) {
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t got;
    int rc = DORAC_OK;
    while (!rc && (got = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        if (blank(line, (size_t)got)) continue;
        rc = jsonl_line(tok, line, (size_t)got, lineno, decode, add_special, skip_special, stdout);
    }
    free(line);
    if (!rc && ferror(stdin)) rc = dorac_error(DORAC_E_IO, "reading stdin failed");
    return rc;
}

static int run_text(const dorac_tokenizer *tok, bool decode, bool add_special, bool skip_special) {
    char *data = NULL;
    size_t len = 0;
    DORAC_TRY(read_all(stdin, &data, &len));
    int rc;
    if (!decode) {
        int32_t *ids = NULL;
        size_t n = 0;
        rc = dorac_tokenizer_encode(tok, data, len, add_special, &ids, &n);
        if (!rc) {
            print_ids(stdout, ids, n);
            fputc('\n', stdout);
        }
        free(ids);
    } else {
        json_error_t err;
        json_t *j = json_loadb(data, len, 0, &err);
        int32_t *ids = NULL;
        size_t n = 0;
        char *text = NULL;
        size_t tlen = 0;
        if (!j) rc = dorac_error(DORAC_E_FORMAT, "stdin: line %d column %d: %s", err.line, err.column, err.text);
        else rc = json_to_ids(j, "stdin", &ids, &n);
        if (!rc) rc = dorac_tokenizer_decode(tok, ids, n, skip_special, &text, &tlen);
        if (!rc) fwrite(text, 1, tlen, stdout);
        json_decref(j);
        free(ids);
        free(text);
    }
    free(data);
    return rc;
}

int cli_tokenize(int argc, char **argv) {
    const char *path = NULL, *config = NULL;
    bool add_special = false, jsonl = false, decode = false, skip_special = false;
    cli_opt opts[] = {
        {"tokenizer", OPT_STRING, &path, "tokenizer.json to use (required)", false},
        {"config", OPT_STRING, &config, "tokenizer_config.json (default: the one next to --tokenizer, if any)", false},
        {"add-special", OPT_FLAG, &add_special, "add the template's special tokens (BOS/EOS)", false},
        {"jsonl", OPT_FLAG, &jsonl, "read {\"text\": ...} lines, write {\"ids\": [...]} lines", false},
        {"decode", OPT_FLAG, &decode, "read ids (a JSON array, or {\"ids\"} lines with --jsonl), write text", false},
        {"skip-special", OPT_FLAG, &skip_special, "with --decode: leave special tokens out", false},
    };
    int pr = cli_parse(argc, argv, opts, sizeof opts / sizeof opts[0],
                       "usage: dorac tokenize --tokenizer FILE [--add-special] [--jsonl] [--decode] < input");
    if (pr) return pr == CLI_PARSE_HELP ? 0 : CLI_EXIT_USAGE;
    if (!path) {
        fprintf(stderr, "dorac: tokenize needs --tokenizer FILE (a tokenizer.json)\n");
        return CLI_EXIT_USAGE;
    }
    if (decode && add_special) {
        fprintf(stderr, "dorac: --add-special applies to encoding, not to --decode\n");
        return CLI_EXIT_USAGE;
    }
    if (skip_special && !decode) {
        fprintf(stderr, "dorac: --skip-special applies to --decode only\n");
        return CLI_EXIT_USAGE;
    }
    char *cfg = NULL;
    if (config) { /* named on the command line: it must exist */
        FILE *f = fopen(config, "rb");
        if (!f) {
            fprintf(stderr, "dorac: --config %s: cannot open\n", config);
            return CLI_EXIT_IO;
        }
        fclose(f);
    } else { /* tokenizer_config.json beside the tokenizer, when there is one */
        const char *slash = strrchr(path, '/');
        size_t dir = slash ? (size_t)(slash - path + 1) : 0;
        cfg = malloc(dir + sizeof "tokenizer_config.json");
        if (!cfg) return cli_fail(DORAC_E_NOMEM);
        memcpy(cfg, path, dir);
        memcpy(cfg + dir, "tokenizer_config.json", sizeof "tokenizer_config.json");
    }
    dorac_tokenizer *tok = NULL;
    int rc = dorac_tokenizer_load(&tok, path, config ? config : cfg);
    free(cfg);
    if (rc) return cli_fail(rc);
    rc = jsonl ? run_jsonl(tok, decode, add_special, skip_special) : run_text(tok, decode, add_special, skip_special);
    dorac_tokenizer_free(tok);
    if (!rc && (fflush(stdout) != 0 || ferror(stdout))) rc = dorac_error(DORAC_E_IO, "writing stdout failed");
    return rc ? cli_fail(rc) : CLI_EXIT_OK;
}
