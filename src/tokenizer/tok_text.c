/*
** tok_text.c — growable buffers, piece lists and the string → id hash map
** that the tokenizer is built from.
**
** Every size is checked with core/size.h before it reaches realloc: a
** tokenizer.json can claim anything, and texts can be large.
*/
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/size.h"
#include "tokenizer/tok_internal.h"

/* Grows *cap (elements of size elem) so that need elements fit. */
static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return DORAC_OK;
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (!dorac_size_mul(c, 2, &c)) return dorac_error(DORAC_E_NOMEM, "tokenizer: size overflow");
    }
    size_t bytes;
    if (!dorac_size_mul(c, elem, &bytes)) return dorac_error(DORAC_E_NOMEM, "tokenizer: size overflow");
    void *q = realloc(*p, bytes);
    if (!q) return dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory (%zu bytes)", bytes);
    *p = q;
    *cap = c;
    return DORAC_OK;
}

int tok_buf_reserve(tok_buf *b, size_t extra) {
    size_t need;
    if (!dorac_size_add(b->n, extra, &need) || !dorac_size_add(need, 1, &need))
        return dorac_error(DORAC_E_NOMEM, "tokenizer: size overflow");
    void *p = b->p;
    int rc = grow(&p, &b->cap, need, 1);
    b->p = p;
    if (!rc) b->p[b->n] = '\0'; /* keeps "NUL-terminated" true for an empty buffer */
    return rc;
}

int tok_buf_append(tok_buf *b, const void *data, size_t len) {
    DORAC_TRY(tok_buf_reserve(b, len));
    if (len) memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = '\0';
    return DORAC_OK;
}

int tok_buf_append_cp(tok_buf *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return tok_buf_append(b, u, n);
}

void tok_buf_free(tok_buf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

void tok_pieces_reset(tok_pieces *l) {
    l->n = 0;
    l->text.n = 0;
}

void tok_pieces_free(tok_pieces *l) {
    tok_buf_free(&l->text);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

int tok_pieces_push(tok_pieces *l, const char *s, size_t len, int32_t id, bool at_origin) {
    if (len == 0) return DORAC_OK;
    return tok_pieces_push_keep(l, s, len, id, at_origin);
}

int tok_pieces_push_keep(tok_pieces *l, const char *s, size_t len, int32_t id, bool at_origin) {
    size_t need;
    if (!dorac_size_add(l->n, 1, &need)) return dorac_error(DORAC_E_NOMEM, "tokenizer: size overflow");
    void *p = l->v;
    DORAC_TRY(grow(&p, &l->cap, need, sizeof *l->v));
    l->v = p;
    size_t off = l->text.n;
    DORAC_TRY(tok_buf_append(&l->text, s, len));
    l->v[l->n++] = (tok_piece){.off = off, .len = len, .id = id, .at_origin = at_origin};
    return DORAC_OK;
}

int tok_spans_push(tok_spans *sp, size_t start, size_t end, bool is_match) {
    size_t need;
    if (!dorac_size_add(sp->n, 1, &need)) return dorac_error(DORAC_E_NOMEM, "tokenizer: size overflow");
    void *p = sp->v;
    DORAC_TRY(grow(&p, &sp->cap, need, sizeof *sp->v));
    sp->v = p;
    sp->v[sp->n++] = (tok_span){start, end, is_match};
    return DORAC_OK;
}

/* 64-bit FNV-1a over 8-byte words with a final mix: fast on short keys
** (tokens are a few bytes), good enough spread for open addressing. */
uint64_t tok_hash(const void *data, size_t len) {
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)len;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
        p += 8;
        len -= 8;
    }
    while (len--) h = (h ^ *p++) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static int strmap_rehash(tok_strmap *m, size_t slots) {
    uint32_t *s = calloc(slots, sizeof *s);
    if (!s) return dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory");
    size_t mask = slots - 1;
    for (size_t i = 0; i < m->n; i++) {
        size_t j = (size_t)m->e[i].hash & mask;
        while (s[j]) j = (j + 1) & mask;
        s[j] = (uint32_t)(i + 1);
    }
    free(m->slots);
    m->slots = s;
    m->mask = mask;
    return DORAC_OK;
}

int tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t value) {
    if (m->n >= UINT32_MAX - 1) return dorac_error(DORAC_E_UNSUPPORTED, "tokenizer: too many strings");
    if (!m->slots || (m->n + 1) * 2 > m->mask + 1) {
        size_t slots = m->slots ? (m->mask + 1) * 2 : 64;
        DORAC_TRY(strmap_rehash(m, slots));
    }
    uint64_t h = tok_hash(key, len);
    size_t j = (size_t)h & m->mask;
    while (m->slots[j]) {
        struct tok_strmap_entry *e = &m->e[m->slots[j] - 1];
        if (e->hash == h && e->len == len && !memcmp(m->pool.p + e->off, key, len)) {
            e->value = value;
            return DORAC_OK;
        }
        j = (j + 1) & m->mask;
    }
    void *p = m->e;
    DORAC_TRY(grow(&p, &m->cap, m->n + 1, sizeof *m->e));
    m->e = p;
    size_t off = m->pool.n;
    DORAC_TRY(tok_buf_append(&m->pool, key, len));
    m->e[m->n] = (struct tok_strmap_entry){.hash = h, .off = off, .len = len, .value = value};
    m->slots[j] = (uint32_t)(++m->n);
    return DORAC_OK;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t len) {
    if (!m->slots) return -1;
    uint64_t h = tok_hash(key, len);
    size_t j = (size_t)h & m->mask;
    while (m->slots[j]) {
        const struct tok_strmap_entry *e = &m->e[m->slots[j] - 1];
        if (e->hash == h && e->len == len && !memcmp(m->pool.p + e->off, key, len)) return e->value;
        j = (j + 1) & m->mask;
    }
    return -1;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->slots);
    free(m->e);
    tok_buf_free(&m->pool);
    memset(m, 0, sizeof *m);
}
