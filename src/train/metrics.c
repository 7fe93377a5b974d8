/*
** metrics.c — metrics.jsonl reader (see metrics.h for the damage rules).
*/
#include "train/metrics.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/fsutil.h"

static bool blank(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') return false;
    return true;
}

/* An optional numeric field: NAN when absent or null. */
static int optional_number(const json_t *obj, const char *key, double *out, const char *name, size_t line) {
    const json_t *v = json_object_get(obj, key);
    *out = NAN;
    if (!v || json_is_null(v)) return DORAC_OK;
    if (!json_is_number(v)) return dorac_error(DORAC_E_FORMAT, "%s:%zu: '%s' must be a number", name, line, key);
    *out = json_number_value(v);
    return DORAC_OK;
}

static int parse_record(dorac_metrics_record *r, const json_t *obj, const char *name, size_t line) {
    if (!json_is_object(obj)) return dorac_error(DORAC_E_FORMAT, "%s:%zu: a record must be a JSON object", name, line);
    const json_t *step = json_object_get(obj, "step"), *loss = json_object_get(obj, "loss");
    if (!step) return dorac_error(DORAC_E_FORMAT, "%s:%zu: the record has no 'step'", name, line);
    if (!json_is_integer(step) || json_integer_value(step) < 0)
        return dorac_error(DORAC_E_FORMAT, "%s:%zu: 'step' must be a non-negative integer", name, line);
    if (!loss) return dorac_error(DORAC_E_FORMAT, "%s:%zu: the record has no 'loss'", name, line);
    if (!json_is_number(loss)) return dorac_error(DORAC_E_FORMAT, "%s:%zu: 'loss' must be a number", name, line);
    r->step = (int64_t)json_integer_value(step);
    r->loss = json_number_value(loss);
    r->line = line;
    DORAC_TRY(optional_number(obj, "lr", &r->lr, name, line));
    DORAC_TRY(optional_number(obj, "grad_norm", &r->grad_norm, name, line));
    DORAC_TRY(optional_number(obj, "tokens_per_s", &r->tokens_per_s, name, line));
    DORAC_TRY(optional_number(obj, "eval_loss", &r->eval_loss, name, line));
    return DORAC_OK;
}

static int by_step(const void *a, const void *b) {
    const dorac_metrics_record *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line; /* file order: a stable sort */
}

int dorac_metrics_parse(dorac_metrics *m, const char *text, size_t n, const char *name) {
    memset(m, 0, sizeof *m);
    size_t cap = 0, line = 0, pos = 0;
    int rc = DORAC_OK;
    while (!rc && pos < n) {
        const char *start = text + pos;
        const char *nl = memchr(start, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - start) : n - pos;
        pos += len + (nl ? 1 : 0);
        line++;
        if (blank(start, len)) continue;
        json_error_t e;
        json_t *obj = json_loadb(start, len, JSON_REJECT_DUPLICATES, &e);
        if (!obj) {
            if (!nl) { /* the last line, unterminated: a torn final write */
                m->torn_tail = true;
                break;
            }
            rc = dorac_error(DORAC_E_FORMAT, "%s:%zu: %s (column %d)", name, line, e.text, e.column);
            break;
        }
        if (m->n == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            dorac_metrics_record *r = ncap > SIZE_MAX / sizeof *r ? NULL : realloc(m->records, ncap * sizeof *r);
            if (!r) {
                json_decref(obj);
                rc = dorac_error(DORAC_E_NOMEM, "%s: out of memory at line %zu", name, line);
                break;
            }
            m->records = r;
            cap = ncap;
        }
        rc = parse_record(&m->records[m->n], obj, name, line);
        json_decref(obj);
        if (!rc) m->n++;
    }
    if (!rc && m->n == 0) rc = dorac_error(DORAC_E_FORMAT, "%s: no records (an empty metrics file)", name);
    if (rc) {
        dorac_metrics_free(m);
        return rc;
    }
    qsort(m->records, m->n, sizeof *m->records, by_step);
    for (size_t i = 0; i < m->n; i++) m->n_eval += isfinite(m->records[i].eval_loss) ? 1 : 0;
    return DORAC_OK;
}

int dorac_metrics_load(dorac_metrics *m, const char *path) {
    memset(m, 0, sizeof *m);
    char *text;
    size_t n;
    DORAC_TRY(dorac_read_file(path, DORAC_METRICS_MAX_BYTES, &text, &n));
    int rc = dorac_metrics_parse(m, text, n, path);
    free(text);
    return rc;
}

void dorac_metrics_free(dorac_metrics *m) {
    if (!m) return;
    free(m->records);
    memset(m, 0, sizeof *m);
}
