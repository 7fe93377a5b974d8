/*
** tok_pretokenize.c — the pre-tokenizers: each one turns the piece list
** st->a into a finer one (st->b, then swapped back), leaving added-token
** pieces alone.
**
**   Split      regex or literal matches, then one of tokenizers' five
**              delimiter behaviours; invert flips which spans are matches
**   ByteLevel  optional prefix space, GPT-2's regex (use_regex), then every
**              byte becomes GPT-2's character for it. When ByteLevel is the
**              last pre-tokenizer that mapping is left to the BPE model
**              (tok_bpe.c), which reads the raw bytes through a table.
**   Metaspace  ' ' → replacement, prepend_scheme, optional split before
**              every replacement character (merged with next)
**   Digits     numeric characters (Nd, Nl, No) split off, one by one or in runs
**
** Empty pieces are dropped, as tokenizers drops empty splits.
*/
#include <string.h>

#include "core/error.h"
#include "tokenizer/tok_internal.h"

/* tokenizers' find_matches for a char predicate: each matching character is
** its own match. */
static int char_find(const char *s, size_t len, uint32_t target, bool numeric, tok_spans *out) {
    out->n = 0;
    if (len == 0) return tok_spans_push(out, 0, 0, false);
    size_t last_offset = 0, i = 0, n;
    while (i < len) {
        uint32_t cp = tok_utf8_decode(s + i, &n);
        if (numeric ? tok_is_numeric(cp) : cp == target) {
            if (last_offset < i) DORAC_TRY(tok_spans_push(out, last_offset, i, false));
            DORAC_TRY(tok_spans_push(out, i, i + n, true));
            last_offset = i + n;
        }
        i += n;
    }
    if (len > last_offset) DORAC_TRY(tok_spans_push(out, last_offset, len, false));
    return DORAC_OK;
}

/* Applies a delimiter behaviour in place: afterwards every span with
** is_match == false is a piece to keep (tokenizers' NormalizedString::split). */
static void apply_behavior(tok_spans *sp, tok_split_behavior behavior) {
    size_t w = 0;
    bool previous_match = false;
    switch (behavior) {
    case TOK_SPLIT_ISOLATED:
        for (size_t i = 0; i < sp->n; i++) sp->v[i].is_match = false;
        return;
    case TOK_SPLIT_REMOVED:
        return; /* matches are the removed spans */
    case TOK_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < sp->n; i++) {
            tok_span s = sp->v[i];
            if (s.is_match == previous_match && w > 0) sp->v[w - 1].end = s.end;
            else sp->v[w++] = (tok_span){s.start, s.end, false};
            previous_match = s.is_match;
        }
        sp->n = w;
        return;
    case TOK_SPLIT_MERGED_WITH_PREVIOUS:
        for (size_t i = 0; i < sp->n; i++) {
            tok_span s = sp->v[i];
            if (s.is_match && !previous_match && w > 0) sp->v[w - 1].end = s.end;
            else sp->v[w++] = (tok_span){s.start, s.end, false};
            previous_match = s.is_match;
        }
        sp->n = w;
        return;
    case TOK_SPLIT_MERGED_WITH_NEXT: {
        /* the same from the right, writing from the end down */
        size_t r = sp->n;
        for (size_t i = sp->n; i-- > 0;) {
            tok_span s = sp->v[i];
            if (s.is_match && !previous_match && r < sp->n) sp->v[r].start = s.start;
            else sp->v[--r] = (tok_span){s.start, s.end, false};
            previous_match = s.is_match;
        }
        memmove(sp->v, sp->v + r, (sp->n - r) * sizeof *sp->v);
        sp->n -= r;
        return;
    }
    }
}

static int push_spans(tok_pieces *out, const char *s, const tok_spans *sp, bool at_origin) {
    for (size_t i = 0; i < sp->n; i++)
        if (!sp->v[i].is_match)
            DORAC_TRY(tok_pieces_push(out, s + sp->v[i].start, sp->v[i].end - sp->v[i].start, -1,
                                      at_origin && sp->v[i].start == 0));
    return DORAC_OK;
}

static int byte_level(const dorac_tokenizer *tok, const tok_pretok *pt, tok_state *st,
                      const char *s, size_t len, bool at_origin, bool map_bytes) {
    tok_buf *w = &st->word;
    w->n = 0;
    if (pt->add_prefix_space && (len == 0 || s[0] != ' ')) DORAC_TRY(tok_buf_append(w, " ", 1));
    DORAC_TRY(tok_buf_append(w, s, len));
    if (pt->re) {
        DORAC_TRY(tok_regex_find(tok->gpt2_re, &st->ms, w->p, w->n, &st->spans));
    } else {
        st->spans.n = 0;
        DORAC_TRY(tok_spans_push(&st->spans, 0, w->n, false));
    }
    for (size_t i = 0; i < st->spans.n; i++) {
        const tok_span *sp = &st->spans.v[i];
        if (sp->end == sp->start) continue;
        bool origin = at_origin && sp->start == 0;
        if (!map_bytes) {
            DORAC_TRY(tok_pieces_push(&st->b, w->p + sp->start, sp->end - sp->start, -1, origin));
            continue;
        }
        /* materialise GPT-2's characters: a later pre-tokenizer reads them
        ** (st->n1 is free: normalisation is over by now) */
        tok_buf *m = &st->n1;
        m->n = 0;
        for (size_t k = sp->start; k < sp->end; k++)
            DORAC_TRY(tok_buf_append_cp(m, tok_byte_char[(unsigned char)w->p[k]]));
        DORAC_TRY(tok_pieces_push(&st->b, m->p, m->n, -1, origin));
    }
    return DORAC_OK;
}

static int metaspace(const tok_pretok *pt, tok_state *st, const char *s, size_t len, bool at_origin) {
    tok_buf *w = &st->word;
    w->n = 0;
    tok_buf rep = {0};
    DORAC_TRY(tok_buf_append_cp(&rep, pt->replacement));
    int rc = DORAC_OK;
    /* replace ' ' first, then decide on the prefix */
    tok_buf body = {0};
    for (size_t i = 0; i < len && !rc; i++)
        rc = s[i] == ' ' ? tok_buf_append(&body, rep.p, rep.n) : tok_buf_append(&body, s + i, 1);
    if (!rc) {
        bool starts = body.n >= rep.n && !memcmp(body.p, rep.p, rep.n);
        bool prepend = !starts && (pt->prepend == TOK_PREPEND_ALWAYS ||
                                   (pt->prepend == TOK_PREPEND_FIRST && at_origin));
        if (prepend) rc = tok_buf_append(w, rep.p, rep.n);
        if (!rc) rc = tok_buf_append(w, body.p, body.n);
    }
    tok_buf_free(&rep);
    tok_buf_free(&body);
    DORAC_TRY(rc);
    if (!pt->split) return tok_pieces_push(&st->b, w->p, w->n, -1, at_origin);
    DORAC_TRY(char_find(w->p, w->n, pt->replacement, false, &st->spans));
    apply_behavior(&st->spans, TOK_SPLIT_MERGED_WITH_NEXT);
    return push_spans(&st->b, w->p, &st->spans, at_origin);
}

int tok_pretokenize(const dorac_tokenizer *tok, tok_state *st) {
    for (size_t k = 0; k < tok->n_pretoks; k++) {
        const tok_pretok *pt = &tok->pretoks[k];
        bool last = k + 1 == tok->n_pretoks;
        tok_pieces_reset(&st->b);
        for (size_t i = 0; i < st->a.n; i++) {
            const tok_piece *p = &st->a.v[i];
            const char *s = st->a.text.p + p->off;
            if (p->id >= 0) {
                DORAC_TRY(tok_pieces_push(&st->b, s, p->len, p->id, p->at_origin));
                continue;
            }
            switch (pt->kind) {
            case TOK_PRE_BYTE_LEVEL:
                DORAC_TRY(byte_level(tok, pt, st, s, p->len, p->at_origin, !(last && tok->byte_level_last)));
                break;
            case TOK_PRE_SPLIT:
                DORAC_TRY(tok_regex_find(pt->re, &st->ms, s, p->len, &st->spans));
                if (pt->invert)
                    for (size_t j = 0; j < st->spans.n; j++) st->spans.v[j].is_match = !st->spans.v[j].is_match;
                apply_behavior(&st->spans, pt->behavior);
                DORAC_TRY(push_spans(&st->b, s, &st->spans, p->at_origin));
                break;
            case TOK_PRE_METASPACE:
                DORAC_TRY(metaspace(pt, st, s, p->len, p->at_origin));
                break;
            case TOK_PRE_DIGITS:
                DORAC_TRY(char_find(s, p->len, 0, true, &st->spans));
                apply_behavior(&st->spans, pt->individual_digits ? TOK_SPLIT_ISOLATED : TOK_SPLIT_CONTIGUOUS);
                DORAC_TRY(push_spans(&st->b, s, &st->spans, p->at_origin));
                break;
            }
        }
        tok_pieces tmp = st->a;
        st->a = st->b;
        st->b = tmp;
    }
    return DORAC_OK;
}
