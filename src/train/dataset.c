/*
** dataset.c — JSONL and plain-text data into labelled token sequences
** (formats and conventions in dataset.h).
**
** Invariants: every example has n >= 1, ids[i] in [0, vocab) when the
** vocabulary is known, labels[i] either an id or DORAC_IGNORE_INDEX. Lines
** are read with a bounded buffer (DATASET_MAX_LINE), so a file without
** newlines cannot exhaust memory.
*/
#include "train/dataset.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/error.h"

#define DATASET_MAX_LINE ((size_t)256 << 20)
#define DATASET_MAX_TOKENS ((int64_t)1 << 30)

/* ---------------------------------------------------------------------- */
/* a growable (ids, labels) pair                                          */
/* ---------------------------------------------------------------------- */

typedef struct seq {
    int32_t *ids, *labels;
    int64_t n, cap;
} seq;

static int seq_push(seq *s, const int32_t *ids, size_t n, bool labelled, const char *where) {
    if ((int64_t)n > DATASET_MAX_TOKENS - s->n)
        return dorac_error(DORAC_E_INVALID, "%s: example longer than %lld tokens", where, (long long)DATASET_MAX_TOKENS);
    if (s->n + (int64_t)n > s->cap) {
        int64_t cap = s->cap ? s->cap : 64;
        while (cap < s->n + (int64_t)n) cap *= 2;
        int32_t *a = realloc(s->ids, (size_t)cap * sizeof *a);
        if (!a) return dorac_error(DORAC_E_NOMEM, "%s: out of memory", where);
        s->ids = a;
        int32_t *b = realloc(s->labels, (size_t)cap * sizeof *b);
        if (!b) return dorac_error(DORAC_E_NOMEM, "%s: out of memory", where);
        s->labels = b;
        s->cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        s->ids[s->n] = ids[i];
        s->labels[s->n++] = labelled ? ids[i] : DORAC_IGNORE_INDEX;
    }
    return DORAC_OK;
}

static int seq_push_one(seq *s, int32_t id, bool labelled, const char *where) {
    return seq_push(s, &id, 1, labelled, where);
}

/* Encodes text and appends it. */
static int seq_text(seq *s, const dorac_tokenizer *tok, const char *text, size_t len, bool add_special,
                    bool labelled, const char *where) {
    int32_t *ids;
    size_t n;
    int rc = dorac_tokenizer_encode(tok, text, len, add_special, &ids, &n);
    if (rc) return dorac_error_prefix(rc, "%s", where);
    rc = seq_push(s, ids, n, labelled, where);
    free(ids);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* the formats                                                            */
/* ---------------------------------------------------------------------- */

static int need_tokenizer(const dorac_dataset_options *opt, const char *field, const char *where) {
    if (!opt->tok)
        return dorac_error(DORAC_E_INVALID, "%s: '%s' needs a tokenizer (tokenizer.json in the model folder)", where, field);
    return DORAC_OK;
}

static int get_string(json_t *obj, const char *key, const char **s, size_t *len, const char *where) {
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v)) return dorac_error(DORAC_E_FORMAT, "%s: '%s' must be a string", where, key);
    *s = json_string_value(v);
    *len = json_string_length(v);
    return DORAC_OK;
}

static int parse_ids(json_t *arr, const char *key, seq *s, bool allow_ignore, int64_t vocab, const char *where) {
    if (!json_is_array(arr)) return dorac_error(DORAC_E_FORMAT, "%s: '%s' must be an array of integers", where, key);
    size_t n = json_array_size(arr);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v))
            return dorac_error(DORAC_E_FORMAT, "%s: '%s'[%zu] is not an integer", where, key, i);
        json_int_t x = json_integer_value(v);
        bool ignore = allow_ignore && x == DORAC_IGNORE_INDEX;
        if (!ignore && (x < 0 || x > INT32_MAX || (vocab > 0 && x >= vocab)))
            return dorac_error(DORAC_E_FORMAT, "%s: '%s'[%zu] = %lld is outside the vocabulary [0, %lld)", where, key, i,
                               (long long)x, (long long)(vocab > 0 ? vocab : INT32_MAX));
        int32_t id = (int32_t)x;
        DORAC_TRY(seq_push(s, &id, 1, true, where));
    }
    return DORAC_OK;
}

static int parse_input_ids(json_t *obj, seq *s, const dorac_dataset_options *opt, const char *where) {
    DORAC_TRY(parse_ids(json_object_get(obj, "input_ids"), "input_ids", s, false, opt->vocab_size, where));
    json_t *labels = json_object_get(obj, "labels");
    if (!labels || json_is_null(labels)) return DORAC_OK;
    seq l = {0};
    int rc = parse_ids(labels, "labels", &l, true, opt->vocab_size, where);
    if (!rc && l.n != s->n)
        rc = dorac_error(DORAC_E_FORMAT, "%s: 'labels' has %lld entries, 'input_ids' has %lld", where, (long long)l.n,
                         (long long)s->n);
    if (!rc) memcpy(s->labels, l.ids, (size_t)l.n * sizeof *l.ids);
    free(l.ids), free(l.labels);
    return rc;
}

static int parse_prompt_completion(json_t *obj, seq *s, const dorac_dataset_options *opt, const char *where) {
    const char *p = NULL, *c = NULL;
    size_t pl = 0, cl = 0;
    DORAC_TRY(need_tokenizer(opt, "prompt", where));
    DORAC_TRY(get_string(obj, "prompt", &p, &pl, where));
    DORAC_TRY(get_string(obj, "completion", &c, &cl, where));
    int32_t bos = dorac_tokenizer_bos_id(opt->tok), eos = dorac_tokenizer_eos_id(opt->tok);
    if (opt->add_special && bos >= 0) DORAC_TRY(seq_push_one(s, bos, false, where));
    DORAC_TRY(seq_text(s, opt->tok, p, pl, false, false, where));
    DORAC_TRY(seq_text(s, opt->tok, c, cl, false, true, where));
    if (eos >= 0) DORAC_TRY(seq_push_one(s, eos, true, where));
    return DORAC_OK;
}

static int parse_messages(json_t *obj, seq *s, const dorac_dataset_options *opt, const char *where) {
    DORAC_TRY(need_tokenizer(opt, "messages", where));
    json_t *msgs = json_object_get(obj, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return dorac_error(DORAC_E_FORMAT, "%s: 'messages' must be a non-empty array", where);
    int32_t bos = dorac_tokenizer_bos_id(opt->tok), eos = dorac_tokenizer_eos_id(opt->tok);
    if (bos >= 0) DORAC_TRY(seq_push_one(s, bos, false, where));
    bool any_assistant = false;
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *msg = json_array_get(msgs, i);
        char at[300];
        snprintf(at, sizeof at, "%s: messages[%zu]", where, i);
        if (!json_is_object(msg)) return dorac_error(DORAC_E_FORMAT, "%s is not an object", at);
        const char *role = NULL, *content = NULL;
        size_t rl = 0, cl = 0;
        DORAC_TRY(get_string(msg, "role", &role, &rl, at));
        DORAC_TRY(get_string(msg, "content", &content, &cl, at));
        if (rl == 0 || rl > 64 || memchr(role, '|', rl) || memchr(role, '\n', rl))
            return dorac_error(DORAC_E_FORMAT, "%s: role must be 1-64 characters without '|' or newlines", at);
        bool assistant = rl == 9 && !memcmp(role, "assistant", 9);
        any_assistant |= assistant;
        char header[80];
        int hl = snprintf(header, sizeof header, "<|%.*s|>\n", (int)rl, role);
        DORAC_TRY(seq_text(s, opt->tok, header, (size_t)hl, false, false, at));
        DORAC_TRY(seq_text(s, opt->tok, content, cl, false, assistant, at));
        if (assistant && eos >= 0) DORAC_TRY(seq_push_one(s, eos, true, at));
        DORAC_TRY(seq_text(s, opt->tok, "\n", 1, false, false, at));
    }
    if (!any_assistant) return dorac_error(DORAC_E_FORMAT, "%s: 'messages' has no assistant turn, so nothing to learn", where);
    return DORAC_OK;
}

int dorac_example_parse(dorac_example *ex, const char *line, size_t len, const dorac_dataset_options *opt,
                        const char *where) {
    memset(ex, 0, sizeof *ex);
    json_error_t jerr;
    json_t *obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj) return dorac_error(DORAC_E_FORMAT, "%s: invalid JSON at column %d: %s", where, jerr.column, jerr.text);
    seq s = {0};
    int rc;
    if (!json_is_object(obj)) rc = dorac_error(DORAC_E_FORMAT, "%s: a line must be a JSON object", where);
    else if (json_object_get(obj, "input_ids")) rc = parse_input_ids(obj, &s, opt, where);
    else if (json_object_get(obj, "messages")) rc = parse_messages(obj, &s, opt, where);
    else if (json_object_get(obj, "prompt") || json_object_get(obj, "completion")) rc = parse_prompt_completion(obj, &s, opt, where);
    else if (json_object_get(obj, "text")) {
        const char *t = NULL;
        size_t tl = 0;
        rc = need_tokenizer(opt, "text", where);
        if (!rc) rc = get_string(obj, "text", &t, &tl, where);
        if (!rc) rc = seq_text(&s, opt->tok, t, tl, opt->add_special, true, where);
    } else
        rc = dorac_error(DORAC_E_FORMAT, "%s: expected one of 'text', 'prompt'+'completion', 'messages', 'input_ids'", where);
    json_decref(obj);
    if (!rc && s.n == 0) rc = dorac_error(DORAC_E_FORMAT, "%s: the example has no tokens", where);
    if (rc) {
        free(s.ids), free(s.labels);
        return rc;
    }
    ex->ids = s.ids, ex->labels = s.labels, ex->n = s.n;
    return DORAC_OK;
}

void dorac_example_free(dorac_example *ex) {
    free(ex->ids);
    free(ex->labels);
    memset(ex, 0, sizeof *ex);
}

size_t dorac_dataset_truncate(dorac_dataset *ds, int64_t max_len) {
    size_t cut = 0;
    for (size_t i = 0; i < ds->n; i++) {
        dorac_example *e = &ds->ex[i];
        if (e->n <= max_len) continue;
        for (int64_t t = max_len; t < e->n; t++) ds->n_labels -= e->labels[t] != DORAC_IGNORE_INDEX;
        ds->n_tokens -= e->n - max_len;
        e->n = max_len;
        cut++;
    }
    return cut;
}

void dorac_dataset_free(dorac_dataset *ds) {
    for (size_t i = 0; i < ds->n; i++) dorac_example_free(&ds->ex[i]);
    free(ds->ex);
    memset(ds, 0, sizeof *ds);
}

/* ---------------------------------------------------------------------- */
/* files                                                                  */
/* ---------------------------------------------------------------------- */

static int dataset_add(dorac_dataset *ds, dorac_example *ex) {
    if (ds->n == ds->cap) {
        size_t cap = ds->cap ? 2 * ds->cap : 256;
        dorac_example *e = realloc(ds->ex, cap * sizeof *e);
        if (!e) return dorac_error(DORAC_E_NOMEM, "out of memory for the dataset");
        ds->ex = e, ds->cap = cap;
    }
    ds->ex[ds->n++] = *ex;
    ds->n_tokens += ex->n;
    for (int64_t i = 0; i < ex->n; i++) ds->n_labels += ex->labels[i] != DORAC_IGNORE_INDEX;
    return DORAC_OK;
}

/* Reads one line (without its '\n' or "\r\n") into *buf; 0 at EOF with no
** data, 1 with a line, negative status on error. */
static int read_line(FILE *f, char **buf, size_t *cap, size_t *len, const char *path, int64_t line) {
    *len = 0;
    int c, got = 0;
    while ((c = getc(f)) != EOF) {
        got = 1;
        if (c == '\n') break;
        if (*len + 2 > *cap) {
            if (*cap >= DATASET_MAX_LINE)
                return dorac_error(DORAC_E_FORMAT, "%s:%lld: line longer than %zu bytes", path, (long long)line, DATASET_MAX_LINE);
            size_t nc = *cap ? 2 * *cap : 4096;
            char *b = realloc(*buf, nc);
            if (!b) return dorac_error(DORAC_E_NOMEM, "%s:%lld: out of memory", path, (long long)line);
            *buf = b, *cap = nc;
        }
        (*buf)[(*len)++] = (char)c;
    }
    if (ferror(f)) return dorac_error(DORAC_E_IO, "%s:%lld: read error", path, (long long)line);
    if (*len && (*buf)[*len - 1] == '\r') (*len)--;
    if (*buf) (*buf)[*len] = '\0';
    return got;
}

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t') return false;
    return true;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* .txt: paragraphs separated by blank lines, each encoded as {"text"}. */
static int load_txt(dorac_dataset *ds, FILE *f, const char *path, const dorac_dataset_options *opt) {
    DORAC_TRY(need_tokenizer(opt, "a .txt file", path));
    char *buf = NULL, *para = NULL;
    size_t cap = 0, len, plen = 0, pcap = 0;
    int64_t line = 0, start = 0;
    int rc = DORAC_OK, got;
    for (;;) {
        got = read_line(f, &buf, &cap, &len, path, line + 1);
        if (got < 0) {
            rc = got;
            break;
        }
        if (got) line++;
        bool end_para = !got || blank(buf ? buf : "", len);
        if (!end_para) {
            if (plen == 0) start = line;
            if (plen + len + 2 > pcap) {
                size_t nc = (plen + len + 2) * 2;
                char *p = realloc(para, nc);
                if (!p) {
                    rc = dorac_error(DORAC_E_NOMEM, "%s: out of memory", path);
                    break;
                }
                para = p, pcap = nc;
            }
            if (plen) para[plen++] = '\n';
            memcpy(para + plen, buf, len);
            plen += len;
        }
        if (end_para && plen) {
            char where[300];
            snprintf(where, sizeof where, "%s:%lld", path, (long long)start);
            seq s = {0};
            rc = seq_text(&s, opt->tok, para, plen, opt->add_special, true, where);
            dorac_example ex = {s.ids, s.labels, s.n, start};
            if (!rc && s.n) rc = dataset_add(ds, &ex);
            else free(s.ids), free(s.labels);
            plen = 0;
            if (rc) break;
        }
        if (!got) break;
    }
    free(buf), free(para);
    return rc;
}

static int load_jsonl(dorac_dataset *ds, FILE *f, const char *path, const dorac_dataset_options *opt) {
    char *buf = NULL;
    size_t cap = 0, len;
    int64_t line = 0;
    int rc = DORAC_OK, got;
    while ((got = read_line(f, &buf, &cap, &len, path, line + 1)) > 0) {
        line++;
        if (blank(buf, len)) continue;
        char where[300];
        snprintf(where, sizeof where, "%s:%lld", path, (long long)line);
        dorac_example ex;
        rc = dorac_example_parse(&ex, buf, len, opt, where);
        if (rc == DORAC_E_FORMAT && opt->skip_bad_lines) {
            ds->n_skipped++;
            rc = DORAC_OK;
            continue;
        }
        if (rc) break;
        ex.line = line;
        rc = dataset_add(ds, &ex);
        if (rc) {
            dorac_example_free(&ex);
            break;
        }
    }
    if (got < 0) rc = got;
    free(buf);
    return rc;
}

int dorac_dataset_load(dorac_dataset *ds, const char *path, const dorac_dataset_options *opt) {
    memset(ds, 0, sizeof *ds);
    FILE *f = fopen(path, "rb");
    if (!f) return dorac_error(DORAC_E_IO, "%s: cannot open the data file", path);
    int rc = ends_with(path, ".txt") ? load_txt(ds, f, path, opt) : load_jsonl(ds, f, path, opt);
    fclose(f);
    if (!rc && ds->n == 0)
        rc = dorac_error(DORAC_E_FORMAT, "%s: no examples%s", path, ds->n_skipped ? " (every line was skipped)" : "");
    if (rc) dorac_dataset_free(ds);
    return rc;
}
