/*
** tok_encode.c — text to ids, in tokenizers' order:
**
**   1. invalid UTF-8 → U+FFFD (maximal subparts; see tokenizer.h)
**   2. added tokens with normalized=false are cut out of the raw text
**   3. each remaining piece is normalised, then the normalized=true added
**      tokens are cut out of it
**   4. the pre-tokenizers split the text pieces further
**   5. each text piece goes through BPE; added tokens are their ids
**   6. the post-processor's single template, when add_special is set
**
** It also owns the per-call scratch (tok_state). The tokenizer keeps one
** shared state with the pre-token cache behind a mutex; a call that finds
** it busy gets a fresh state without a cache, so threads never wait.
*/
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/size.h"
#include "tokenizer/tok_internal.h"

#define MATCH_LIMIT 10000000u    /* as Oniguruma's default retry limit */
#define JIT_STACK_MAX (1u << 20)

int tok_state_init(tok_state *st, bool use_cache) {
    memset(st, 0, sizeof *st);
    st->use_cache = use_cache;
    st->ms.md = pcre2_match_data_create(1, NULL);
    st->ms.mctx = pcre2_match_context_create(NULL);
    st->ms.jit_stack = pcre2_jit_stack_create(32 * 1024, JIT_STACK_MAX, NULL);
    if (!st->ms.md || !st->ms.mctx) {
        tok_state_free(st);
        return dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory");
    }
    pcre2_set_match_limit(st->ms.mctx, MATCH_LIMIT);
    if (st->ms.jit_stack) pcre2_jit_stack_assign(st->ms.mctx, NULL, st->ms.jit_stack);
    return DORAC_OK;
}

void tok_state_free(tok_state *st) {
    if (!st) return;
    tok_buf_free(&st->input);
    tok_pieces_free(&st->a);
    tok_pieces_free(&st->b);
    tok_buf_free(&st->n1);
    tok_buf_free(&st->n2);
    tok_buf_free(&st->word);
    free(st->spans.v);
    pcre2_match_data_free(st->ms.md);
    pcre2_match_context_free(st->ms.mctx);
    pcre2_jit_stack_free(st->ms.jit_stack);
    free(st->sym);
    free(st->heap);
    free(st->ids);
    free(st->cache_slots);
    free(st->cache_e);
    tok_buf_free(&st->cache_keys);
    free(st->cache_ids);
    memset(st, 0, sizeof *st);
}

int tok_state_acquire(const dorac_tokenizer *tok, tok_state **st) {
    /* the lock and the shared state are scratch, not part of the tokenizer's
    ** value: a const tokenizer may still take them */
    if (pthread_mutex_trylock((pthread_mutex_t *)&tok->lock) == 0) {
        *st = tok->shared;
        return DORAC_OK;
    }
    tok_state *s = malloc(sizeof *s);
    if (!s) return dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory");
    int rc = tok_state_init(s, false);
    if (rc) {
        free(s);
        return rc;
    }
    *st = s;
    return DORAC_OK;
}

void tok_state_release(const dorac_tokenizer *tok, tok_state *st) {
    if (st == tok->shared) {
        pthread_mutex_unlock((pthread_mutex_t *)&tok->lock);
        return;
    }
    tok_state_free(st);
    free(st);
}

int tok_ids_push(tok_state *st, int32_t id) {
    if (st->n_ids == st->cap_ids) {
        size_t cap = st->cap_ids ? st->cap_ids * 2 : 256, bytes;
        if (!dorac_size_mul(cap, sizeof *st->ids, &bytes)) return dorac_error(DORAC_E_NOMEM, "tokenizer: size overflow");
        int32_t *p = realloc(st->ids, bytes);
        if (!p) return dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory");
        st->ids = p;
        st->cap_ids = cap;
    }
    st->ids[st->n_ids++] = id;
    return DORAC_OK;
}

/* Steps 1-5: the model's ids into st->ids. */
static int encode_pieces(const dorac_tokenizer *tok, tok_state *st, const char *text, size_t len) {
    st->n_ids = 0;
    tok_pieces_reset(&st->a);
    tok_pieces_reset(&st->b);
    const char *src = text;
    if (!tok_utf8_valid(text, len)) {
        st->input.n = 0;
        DORAC_TRY(tok_utf8_repair(&st->input, text, len));
        src = st->input.p;
        len = st->input.n;
    }
    if (tok->has_raw) DORAC_TRY(tok_added_split(tok, &tok->trie_raw, src, len, true, &st->b));
    else DORAC_TRY(tok_pieces_push(&st->b, src, len, -1, true));

    for (size_t i = 0; i < st->b.n; i++) {
        const tok_piece *p = &st->b.v[i];
        const char *s = st->b.text.p + p->off;
        if (p->id >= 0) {
            DORAC_TRY(tok_pieces_push(&st->a, s, p->len, p->id, false));
            continue;
        }
        const char *ns;
        size_t nlen;
        DORAC_TRY(tok_normalize(tok, st, s, p->len, &ns, &nlen));
        if (tok->has_norm) DORAC_TRY(tok_added_split(tok, &tok->trie_norm, ns, nlen, p->at_origin, &st->a));
        else DORAC_TRY(tok_pieces_push(&st->a, ns, nlen, -1, p->at_origin));
    }

    DORAC_TRY(tok_pretokenize(tok, st));

    for (size_t i = 0; i < st->a.n; i++) {
        const tok_piece *p = &st->a.v[i];
        if (p->id >= 0) DORAC_TRY(tok_ids_push(st, p->id));
        else DORAC_TRY(tok_bpe_encode_word(tok, st, st->a.text.p + p->off, p->len));
    }
    return DORAC_OK;
}

/* Step 6, into a fresh array for the caller. */
static int apply_template(const dorac_tokenizer *tok, const tok_state *st, bool add_special,
                          int32_t **ids, size_t *n) {
    size_t total = 0;
    if (!tok->has_template) {
        total = st->n_ids;
    } else {
        for (size_t k = 0; k < tok->n_tmpl; k++) {
            const tok_template_item *it = &tok->tmpl[k];
            size_t add = it->is_sequence ? st->n_ids : add_special ? it->n_ids : 0;
            if (!dorac_size_add(total, add, &total)) return dorac_error(DORAC_E_NOMEM, "tokenizer: size overflow");
        }
    }
    if (total == 0) return DORAC_OK;
    size_t bytes;
    if (!dorac_size_mul(total, sizeof **ids, &bytes)) return dorac_error(DORAC_E_NOMEM, "tokenizer: size overflow");
    int32_t *out = malloc(bytes);
    if (!out) return dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory (%zu ids)", total);
    size_t w = 0;
    if (!tok->has_template) {
        if (st->n_ids) memcpy(out, st->ids, st->n_ids * sizeof *out);
        w = st->n_ids;
    } else {
        /* tokenizers applies the template's $A pieces even without special
        ** tokens; only the special pieces depend on add_special */
        for (size_t k = 0; k < tok->n_tmpl; k++) {
            const tok_template_item *it = &tok->tmpl[k];
            if (it->is_sequence) {
                if (st->n_ids) memcpy(out + w, st->ids, st->n_ids * sizeof *out);
                w += st->n_ids;
            } else if (add_special) {
                if (it->n_ids) memcpy(out + w, it->ids, it->n_ids * sizeof *out);
                w += it->n_ids;
            }
        }
    }
    *ids = out;
    *n = w;
    return DORAC_OK;
}

int dorac_tokenizer_encode(const dorac_tokenizer *tok, const char *text, size_t len,
                           bool add_special, int32_t **ids, size_t *n) {
    if (ids) *ids = NULL;
    if (n) *n = 0;
    if (!tok || !ids || !n || (!text && len))
        return dorac_error(DORAC_E_INVALID, "dorac_tokenizer_encode: NULL argument");
    if (!text) text = "";
    tok_state *st = NULL;
    DORAC_TRY(tok_state_acquire(tok, &st));
    int rc = encode_pieces(tok, st, text, len);
    if (!rc) rc = apply_template(tok, st, add_special, ids, n);
    tok_state_release(tok, st);
    return rc;
}
