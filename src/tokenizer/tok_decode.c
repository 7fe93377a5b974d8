/*
** tok_decode.c — ids to text, as tokenizers' decode(ids, skip_special_tokens).
**
** Each id becomes its token string: an added token's (its normalised form
** when it is matched normalised, as tokenizers' simple_id_to_token gives),
** else the model's. Ids that name nothing are skipped, and so are special
** tokens when skip_special is set. The decoders then rewrite the token list
** in order, and the result is the tokens joined; without a decoder, the
** tokens joined by spaces.
**
**   ByteLevel     every character back to its byte (a token with a character
**                 outside GPT-2's table is kept as UTF-8), then all the bytes
**                 as one string with invalid UTF-8 → U+FFFD (from_utf8_lossy)
**   Replace       pattern → content in each token
**   ByteFallback  runs of "<0xXX>" tokens → their bytes as text, or one
**                 U+FFFD per byte when the run is not valid UTF-8
**   Fuse          all tokens into one
**   Strip         up to start leading / stop trailing copies of a character
**   Metaspace     replacement → ' ', dropped in the first token (unless
**                 prepend_scheme is never)
**   BPEDecoder    suffix → ' ' (→ "" in the last token)
*/
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/tok_internal.h"

#define TOK_TEXT(l, i) ((l)->text.p + (l)->v[i].off)

static int byte_level(tok_state *st, tok_pieces *in, tok_pieces *out) {
    tok_buf *bytes = &st->n1;
    bytes->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        const char *t = TOK_TEXT(in, i);
        size_t len = in->v[i].len, k = 0, n;
        size_t mark = bytes->n;
        bool ok = true;
        while (k < len) {
            int b = tok_char_byte(tok_utf8_decode(t + k, &n));
            if (b < 0) {
                ok = false;
                break;
            }
            char c = (char)b;
            DORAC_TRY(tok_buf_append(bytes, &c, 1));
            k += n;
        }
        if (!ok) {
            bytes->n = mark;
            DORAC_TRY(tok_buf_append(bytes, t, len));
        }
    }
    tok_buf *fixed = &st->n2;
    fixed->n = 0;
    DORAC_TRY(tok_buf_reserve(fixed, bytes->n));
    DORAC_TRY(tok_utf8_repair(fixed, bytes->p ? bytes->p : "", bytes->n));
    return tok_pieces_push(out, fixed->p, fixed->n, -1, false);
}

/* Pushes a token that may be empty (decoders keep empty tokens: they
** matter to Metaspace's "first token" and BPEDecoder's "last token"). */
static int push_keep(tok_pieces *out, const char *s, size_t len) {
    return tok_pieces_push_keep(out, len ? s : "", len, -1, false);
}

static int flush_bytes(tok_buf *run, tok_pieces *out) {
    if (!run->n) return DORAC_OK;
    if (tok_utf8_valid(run->p, run->n)) {
        DORAC_TRY(push_keep(out, run->p, run->n));
    } else {
        for (size_t k = 0; k < run->n; k++) DORAC_TRY(push_keep(out, "\xEF\xBF\xBD", 3));
    }
    run->n = 0;
    return DORAC_OK;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int byte_fallback(tok_state *st, tok_pieces *in, tok_pieces *out) {
    tok_buf *run = &st->n1;
    run->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        const char *t = TOK_TEXT(in, i);
        size_t len = in->v[i].len;
        if (len == 6 && !memcmp(t, "<0x", 3) && t[5] == '>' && hex_digit(t[3]) >= 0 && hex_digit(t[4]) >= 0) {
            char b = (char)(hex_digit(t[3]) * 16 + hex_digit(t[4]));
            DORAC_TRY(tok_buf_append(run, &b, 1));
            continue;
        }
        DORAC_TRY(flush_bytes(run, out));
        DORAC_TRY(push_keep(out, t, len));
    }
    return flush_bytes(run, out);
}

static int fuse(tok_state *st, tok_pieces *in, tok_pieces *out) {
    tok_buf *all = &st->n1;
    all->n = 0;
    DORAC_TRY(tok_buf_reserve(all, in->text.n));
    for (size_t i = 0; i < in->n; i++) DORAC_TRY(tok_buf_append(all, TOK_TEXT(in, i), in->v[i].len));
    return push_keep(out, all->p, all->n);
}

static int replace(tok_state *st, const tok_decoder *d, tok_pieces *in, tok_pieces *out) {
    tok_buf *t = &st->n1;
    for (size_t i = 0; i < in->n; i++) {
        const char *s = TOK_TEXT(in, i);
        t->n = 0;
        DORAC_TRY(tok_regex_find(d->re, &st->ms, s, in->v[i].len, &st->spans));
        for (size_t k = 0; k < st->spans.n; k++) {
            const tok_span *sp = &st->spans.v[k];
            if (sp->is_match) DORAC_TRY(tok_buf_append(t, d->text, d->text_len));
            else DORAC_TRY(tok_buf_append(t, s + sp->start, sp->end - sp->start));
        }
        DORAC_TRY(push_keep(out, t->p, t->n));
    }
    return DORAC_OK;
}

static int strip(const tok_decoder *d, tok_pieces *in, tok_pieces *out) {
    for (size_t i = 0; i < in->n; i++) {
        const char *s = TOK_TEXT(in, i);
        size_t len = in->v[i].len, a = 0, b = len, n;
        for (size_t k = 0; k < d->start && a < len; k++) {
            if (tok_utf8_decode(s + a, &n) != d->ch) break;
            a += n;
        }
        for (size_t k = 0; k < d->stop && b > 0; k++) {
            size_t c = b - 1;
            while (c > 0 && ((unsigned char)s[c] & 0xC0) == 0x80) c--;
            if (tok_utf8_decode(s + c, &n) != d->ch) break;
            b = c;
        }
        if (a > b) a = b; /* tokenizers would panic here; an empty token is the sane reading */
        DORAC_TRY(push_keep(out, s + a, b - a));
    }
    return DORAC_OK;
}

static int metaspace(tok_state *st, const tok_decoder *d, tok_pieces *in, tok_pieces *out) {
    tok_buf *t = &st->n1;
    for (size_t i = 0; i < in->n; i++) {
        const char *s = TOK_TEXT(in, i);
        size_t len = in->v[i].len, k = 0, n;
        t->n = 0;
        while (k < len) {
            uint32_t cp = tok_utf8_decode(s + k, &n);
            if (cp != d->ch) DORAC_TRY(tok_buf_append(t, s + k, n));
            else if (!(i == 0 && d->prepend != TOK_PREPEND_NEVER)) DORAC_TRY(tok_buf_append(t, " ", 1));
            k += n;
        }
        DORAC_TRY(push_keep(out, t->p, t->n));
    }
    return DORAC_OK;
}

/* Rust's str::replace(suffix, rep); an empty suffix matches between every
** two characters and at both ends. */
static int bpe_suffix(tok_state *st, const tok_decoder *d, tok_pieces *in, tok_pieces *out) {
    tok_buf *t = &st->n1;
    for (size_t i = 0; i < in->n; i++) {
        const char *s = TOK_TEXT(in, i);
        size_t len = in->v[i].len, k = 0;
        const char *rep = i + 1 == in->n ? "" : " ";
        size_t rep_len = strlen(rep);
        t->n = 0;
        if (d->text_len == 0) {
            size_t n;
            DORAC_TRY(tok_buf_append(t, rep, rep_len));
            while (k < len) {
                tok_utf8_decode(s + k, &n);
                DORAC_TRY(tok_buf_append(t, s + k, n));
                DORAC_TRY(tok_buf_append(t, rep, rep_len));
                k += n;
            }
        } else {
            while (k < len) {
                if (len - k >= d->text_len && !memcmp(s + k, d->text, d->text_len)) {
                    DORAC_TRY(tok_buf_append(t, rep, rep_len));
                    k += d->text_len;
                } else {
                    DORAC_TRY(tok_buf_append(t, s + k, 1));
                    k++;
                }
            }
        }
        DORAC_TRY(push_keep(out, t->p, t->n));
    }
    return DORAC_OK;
}

static int run_decoder(tok_state *st, const tok_decoder *d, tok_pieces *in, tok_pieces *out) {
    switch (d->kind) {
    case TOK_DEC_BYTE_LEVEL: return byte_level(st, in, out);
    case TOK_DEC_REPLACE: return replace(st, d, in, out);
    case TOK_DEC_BYTE_FALLBACK: return byte_fallback(st, in, out);
    case TOK_DEC_FUSE: return fuse(st, in, out);
    case TOK_DEC_STRIP: return strip(d, in, out);
    case TOK_DEC_METASPACE: return metaspace(st, d, in, out);
    case TOK_DEC_BPE: return bpe_suffix(st, d, in, out);
    }
    return dorac_error(DORAC_E_INVALID, "tokenizer: bad decoder kind");
}

/* The string decode uses for id, or NULL. */
static const char *token_string(const dorac_tokenizer *tok, int32_t id, size_t *len) {
    if (id < 0 || id >= tok->n_ids) return NULL;
    const tok_id_info *info = &tok->ids[id];
    if (info->added >= 0) {
        const tok_added *a = &tok->added[info->added];
        *len = a->pattern_len;
        return a->pattern;
    }
    if (info->model_off < 0) return NULL;
    *len = info->model_len;
    return tok->model_strings.p + info->model_off;
}

/* tokenizers' is_special_token: the string is the content of a special
** added token. */
static bool special_string(const dorac_tokenizer *tok, const char *s, size_t len) {
    int32_t id = tok_strmap_get(&tok->added_map, s, len);
    if (id < 0 || id >= tok->n_ids || tok->ids[id].added < 0) return false;
    const tok_added *a = &tok->added[tok->ids[id].added];
    return a->special && a->content_len == len && !memcmp(a->content, s, len);
}

static int decode_with(const dorac_tokenizer *tok, tok_state *st, const int32_t *ids, size_t n,
                       bool skip_special, char **text, size_t *len) {
    tok_pieces *cur = &st->a, *next = &st->b;
    tok_pieces_reset(cur);
    for (size_t i = 0; i < n; i++) {
        size_t tl;
        const char *t = token_string(tok, ids[i], &tl);
        if (!t) continue;
        if (skip_special && special_string(tok, t, tl)) continue;
        DORAC_TRY(push_keep(cur, t, tl));
    }
    tok_buf out = {0};
    int rc = DORAC_OK;
    if (tok->has_decoder) {
        for (size_t k = 0; k < tok->n_decoders && !rc; k++) {
            tok_pieces_reset(next);
            rc = run_decoder(st, &tok->decoders[k], cur, next);
            tok_pieces *tmp = cur;
            cur = next;
            next = tmp;
        }
        for (size_t i = 0; i < cur->n && !rc; i++) rc = tok_buf_append(&out, TOK_TEXT(cur, i), cur->v[i].len);
    } else {
        for (size_t i = 0; i < cur->n && !rc; i++) {
            if (i) rc = tok_buf_append(&out, " ", 1);
            if (!rc) rc = tok_buf_append(&out, TOK_TEXT(cur, i), cur->v[i].len);
        }
    }
    if (!rc) rc = tok_buf_reserve(&out, 0); /* a NUL-terminated string even when empty */
    if (rc) {
        tok_buf_free(&out);
        return rc;
    }
    *text = out.p;
    *len = out.n;
    return DORAC_OK;
}

int dorac_tokenizer_decode(const dorac_tokenizer *tok, const int32_t *ids, size_t n,
                           bool skip_special, char **text, size_t *len) {
    if (text) *text = NULL;
    if (len) *len = 0;
    if (!tok || !text || !len || (!ids && n))
        return dorac_error(DORAC_E_INVALID, "dorac_tokenizer_decode: NULL argument");
    tok_state *st = NULL;
    DORAC_TRY(tok_state_acquire(tok, &st));
    int rc = decode_with(tok, st, ids, n, skip_special, text, len);
    tok_state_release(tok, st);
    return rc;
}
