/*
** test_tokenizer.c — dorac's tokenizer against the `tokenizers` library, id
** for id, on every fixture that tools/ref/make_tokenizer_fixtures.py wrote.
**
** For each tokenizer family and each case of tests/fixtures/tokenizer/
** cases.json:
**   - encode without special tokens gives exactly the recorded ids;
**   - encode with special tokens gives ids_special where recorded, and is
**     always prefix + ids + suffix of the template;
**   - with tokenizer_config.json (llama2), ids_special_config;
**   - decode(ids) and decode(ids_special) with and without skip_special
**     give tokenizers' strings;
** then decode of random id lists (unknown ids included), the vocabulary size
** and a few token lookups.
*/
#include <jansson.h>
#include <stdbool.h>
#include <string.h>

#include "test.h"
#include "tokenizer/tokenizer.h"

#define FIXTURES "tests/fixtures/tokenizer/"

static const char *const families[] = {"gpt2", "llama3", "qwen2", "llama2", "mistral",
                                       "zoo_wordpiece", "zoo_metaspace", "zoo_split"};

static json_t *load_json(const char *path) {
    json_error_t err;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &err);
    if (!j) fprintf(stderr, "%s: line %d: %s\n", path, err.line, err.text);
    return j;
}

/* The case's input bytes: "text", or "hex" for invalid UTF-8. */
static char *case_input(json_t *c, size_t *len) {
    json_t *t = json_object_get(c, "text");
    if (t) {
        *len = json_string_length(t);
        char *s = malloc(*len + 1);
        memcpy(s, json_string_value(t), *len + 1);
        return s;
    }
    const char *hex = json_string_value(json_object_get(c, "hex"));
    *len = strlen(hex) / 2;
    char *s = malloc(*len + 1);
    for (size_t i = 0; i < *len; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        s[i] = (char)v;
    }
    s[*len] = 0;
    return s;
}

static bool ids_equal(const int32_t *got, size_t n, json_t *want) {
    if (!json_is_array(want) || json_array_size(want) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(want, i)) != got[i]) return false;
    return true;
}

static void show_ids(const char *what, const int32_t *got, size_t n, json_t *want) {
    fprintf(stderr, "    %s: got %zu ids, want %zu\n", what, n, json_array_size(want));
    size_t m = n < json_array_size(want) ? n : json_array_size(want), k = 0;
    while (k < m && json_integer_value(json_array_get(want, k)) == got[k]) k++;
    fprintf(stderr, "    first difference at %zu:", k);
    for (size_t i = k; i < k + 6 && i < n; i++) fprintf(stderr, " %d", got[i]);
    fprintf(stderr, "  vs");
    for (size_t i = k; i < k + 6 && i < json_array_size(want); i++)
        fprintf(stderr, " %lld", (long long)json_integer_value(json_array_get(want, i)));
    fprintf(stderr, "\n");
}

/* Decodes and compares with want (a string). */
static bool decode_is(dorac_tokenizer *tok, const int32_t *ids, size_t n, bool skip, const char *want,
                      size_t want_len, const char *name, const char *what) {
    char *text = NULL;
    size_t len = 0;
    int rc = dorac_tokenizer_decode(tok, ids, n, skip, &text, &len);
    bool ok = rc == DORAC_OK && len == want_len && !memcmp(text, want, len);
    if (!ok)
        fprintf(stderr, "  %s: %s: got \"%.*s\" (%zu bytes), want \"%.*s\" (%zu bytes)\n", name, what,
                (int)(len > 200 ? 200 : len), text ? text : "", len, (int)(want_len > 200 ? 200 : want_len),
                want, want_len);
    free(text);
    return ok;
}

static int32_t *json_ids(json_t *a, size_t *n) {
    *n = json_array_size(a);
    int32_t *ids = malloc((*n + 1) * sizeof *ids);
    for (size_t i = 0; i < *n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(a, i));
    return ids;
}

/* The string field key of c, else the fallback. */
static const char *str_or(json_t *c, const char *key, const char *fallback, size_t fallback_len, size_t *len) {
    json_t *v = json_object_get(c, key);
    if (v) {
        *len = json_string_length(v);
        return json_string_value(v);
    }
    *len = fallback_len;
    return fallback;
}

static void run_family(const char *name, json_t *inputs) {
    char path[256], cfg_path[256];
    snprintf(path, sizeof path, FIXTURES "%s.expect.json", name);
    json_t *expect = load_json(path);
    CHECK(expect != NULL);
    if (!expect) return;
    snprintf(path, sizeof path, FIXTURES "%s", json_string_value(json_object_get(expect, "tokenizer")));
    dorac_tokenizer *tok = NULL, *tok_cfg = NULL;
    CHECK_OK(dorac_tokenizer_load(&tok, path, NULL));
    json_t *cfg = json_object_get(expect, "tokenizer_config");
    if (json_is_string(cfg)) {
        snprintf(cfg_path, sizeof cfg_path, FIXTURES "%s", json_string_value(cfg));
        CHECK_OK(dorac_tokenizer_load(&tok_cfg, path, cfg_path));
    }
    if (!tok) {
        json_decref(expect);
        return;
    }
    CHECK(dorac_tokenizer_vocab_size(tok) == json_integer_value(json_object_get(expect, "vocab_size")));
    const char *probe;
    json_t *pid;
    json_object_foreach(json_object_get(expect, "token_probes"), probe, pid) {
        int32_t id = dorac_tokenizer_token_to_id(tok, probe, strlen(probe));
        CHECK(id == json_integer_value(pid));
        size_t len;
        const char *back = dorac_tokenizer_id_to_token(tok, id, &len);
        CHECK(back && len == strlen(probe) && !memcmp(back, probe, len));
    }

    json_t *cases = json_object_get(expect, "cases");
    CHECK(json_array_size(cases) == json_array_size(inputs));
    size_t n_cases = json_array_size(cases), passed = 0;
    for (size_t i = 0; i < n_cases && i < json_array_size(inputs); i++) {
        json_t *c = json_array_get(cases, i), *in = json_array_get(inputs, i);
        const char *cname = json_string_value(json_object_get(c, "name"));
        CHECK(!strcmp(cname, json_string_value(json_object_get(in, "name"))));
        size_t len;
        char *text = case_input(in, &len);
        int32_t *ids = NULL, *ids_sp = NULL;
        size_t n = 0, n_sp = 0;
        bool ok = true;
        int rc = dorac_tokenizer_encode(tok, text, len, false, &ids, &n);
        CHECK_OK(rc);
        if (!ids_equal(ids, n, json_object_get(c, "ids"))) {
            ok = false;
            fprintf(stderr, "  %s/%s: ids differ\n", name, cname);
            show_ids("ids", ids, n, json_object_get(c, "ids"));
        }
        CHECK_OK(dorac_tokenizer_encode(tok, text, len, true, &ids_sp, &n_sp));
        json_t *want_sp = json_object_get(c, "ids_special");
        if (want_sp && !ids_equal(ids_sp, n_sp, want_sp)) {
            ok = false;
            fprintf(stderr, "  %s/%s: ids_special differ\n", name, cname);
            show_ids("ids_special", ids_sp, n_sp, want_sp);
        }
        /* with special tokens: the plain ids inside the template */
        bool inside = n == 0 || n_sp >= n;
        for (size_t k = 0; n > 0 && inside && k + n <= n_sp; k++) {
            if (!memcmp(ids_sp + k, ids, n * sizeof *ids)) break;
            if (k + n == n_sp) inside = false;
        }
        if (!inside) {
            ok = false;
            fprintf(stderr, "  %s/%s: ids_special do not contain ids\n", name, cname);
        }
        json_t *want_cfg = json_object_get(c, "ids_special_config");
        if (want_cfg && tok_cfg) {
            int32_t *ic = NULL;
            size_t nc = 0;
            CHECK_OK(dorac_tokenizer_encode(tok_cfg, text, len, true, &ic, &nc));
            if (!ids_equal(ic, nc, want_cfg)) {
                ok = false;
                fprintf(stderr, "  %s/%s: ids_special_config differ\n", name, cname);
                show_ids("ids_special_config", ic, nc, want_cfg);
            }
            free(ic);
        }
        /* decode parity; a recorded string left out equals the case text */
        json_t *tv = json_object_get(in, "text");
        if (!tv) tv = json_object_get(in, "repaired"); /* hex inputs: what tokenizers saw */
        size_t dl, dsl, dskl;
        const char *dec = str_or(c, "decoded", json_string_value(tv), json_string_length(tv), &dl);
        const char *dsp = str_or(c, "decoded_special", dec, dl, &dsl);
        const char *dskip = str_or(c, "decoded_special_skip", dec, dl, &dskl);
        ok &= decode_is(tok, ids, n, false, dec, dl, cname, "decode(ids)");
        ok &= decode_is(tok, ids_sp, n_sp, false, dsp, dsl, cname, "decode(ids_special)");
        ok &= decode_is(tok, ids_sp, n_sp, true, dskip, dskl, cname, "decode(ids_special, skip)");
        CHECK(ok);
        passed += ok;
        free(ids);
        free(ids_sp);
        free(text);
    }

    json_t *dcases = json_object_get(expect, "decode_cases");
    size_t d_passed = 0;
    for (size_t i = 0; i < json_array_size(dcases); i++) {
        json_t *d = json_array_get(dcases, i);
        size_t n;
        int32_t *ids = json_ids(json_object_get(d, "ids"), &n);
        json_t *t = json_object_get(d, "text"), *ts = json_object_get(d, "text_skip");
        bool ok = decode_is(tok, ids, n, false, json_string_value(t), json_string_length(t), name, "decode_cases");
        ok &= decode_is(tok, ids, n, true, json_string_value(ts), json_string_length(ts), name, "decode_cases skip");
        CHECK(ok);
        d_passed += ok;
        free(ids);
    }
    fprintf(stderr, "%-14s %zu/%zu encode cases, %zu/%zu decode cases exact\n", name, passed, n_cases,
            d_passed, json_array_size(dcases));
    dorac_tokenizer_free(tok);
    dorac_tokenizer_free(tok_cfg);
    json_decref(expect);
}

int main(void) {
    json_t *inputs = load_json(FIXTURES "cases.json");
    CHECK(inputs != NULL && json_array_size(inputs) > 60);
    if (!inputs) return test_report();
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) run_family(families[f], inputs);
    json_decref(inputs);
    return test_report();
}
