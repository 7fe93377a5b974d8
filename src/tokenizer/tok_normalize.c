/*
** tok_normalize.c — the normalisers, applied in order to one piece of text.
**
**   Prepend      the prefix, unless the piece is empty
**   Replace      every match of a literal or regex pattern by content
**   NFC/NFD/NFKC/NFKD   utf8proc (ASCII text is left as it is: all four
**                forms leave ASCII unchanged)
**   Lowercase    Rust's char::to_lowercase: the simple mapping, except
**                U+0130 → "i" U+0307, its one unconditional multi-character
**                lowercase; no final-sigma rule (tokenizers maps per char)
**   Strip        Unicode White_Space at the start and/or end
**   StripAccents drops every combining mark (category M)
**   ByteLevel    each byte becomes GPT-2's character for it
*/
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/error.h"
#include "tokenizer/tok_internal.h"

static bool all_ascii(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80) return false;
    return true;
}

static int unicode_form(const char *s, size_t len, utf8proc_option_t options, tok_buf *out) {
    if (all_ascii(s, len)) return tok_buf_append(out, s, len);
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &dst,
                                      options | UTF8PROC_STABLE);
    if (n < 0) {
        free(dst);
        return dorac_error(n == UTF8PROC_ERROR_NOMEM ? DORAC_E_NOMEM : DORAC_E_INVALID,
                           "tokenizer: Unicode normalisation failed: %s", utf8proc_errmsg(n));
    }
    int rc = tok_buf_append(out, dst, (size_t)n);
    free(dst);
    return rc;
}

static int lowercase(const char *s, size_t len, tok_buf *out) {
    DORAC_TRY(tok_buf_reserve(out, len));
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            char l = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            DORAC_TRY(tok_buf_append(out, &l, 1));
            i++;
            continue;
        }
        size_t n;
        uint32_t cp = tok_utf8_decode(s + i, &n);
        i += n;
        if (cp == 0x130) {
            DORAC_TRY(tok_buf_append(out, "i\xCC\x87", 3));
            continue;
        }
        DORAC_TRY(tok_buf_append_cp(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp)));
    }
    return DORAC_OK;
}

static int replace(const tok_norm *nm, tok_state *st, const char *s, size_t len, tok_buf *out) {
    DORAC_TRY(tok_regex_find(nm->re, &st->ms, s, len, &st->spans));
    for (size_t k = 0; k < st->spans.n; k++) {
        const tok_span *sp = &st->spans.v[k];
        if (sp->is_match) DORAC_TRY(tok_buf_append(out, nm->text, nm->text_len));
        else DORAC_TRY(tok_buf_append(out, s + sp->start, sp->end - sp->start));
    }
    return DORAC_OK;
}

static int strip(const tok_norm *nm, const char *s, size_t len, tok_buf *out) {
    size_t a = 0, b = len, n;
    if (nm->left)
        while (a < b) {
            uint32_t cp = tok_utf8_decode(s + a, &n);
            if (!tok_is_white_space(cp)) break;
            a += n;
        }
    if (nm->right)
        while (b > a) {
            size_t k = b - 1;
            while (k > a && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
            if (!tok_is_white_space(tok_utf8_decode(s + k, &n))) break;
            b = k;
        }
    return tok_buf_append(out, s + a, b - a);
}

static int strip_accents(const char *s, size_t len, tok_buf *out) {
    size_t i = 0, n;
    while (i < len) {
        uint32_t cp = tok_utf8_decode(s + i, &n);
        if (!tok_is_mark(cp)) DORAC_TRY(tok_buf_append(out, s + i, n));
        i += n;
    }
    return DORAC_OK;
}

static int apply(const tok_norm *nm, tok_state *st, const char *s, size_t len, tok_buf *out) {
    switch (nm->kind) {
    case TOK_NORM_PREPEND:
        if (len) DORAC_TRY(tok_buf_append(out, nm->text, nm->text_len));
        return tok_buf_append(out, s, len);
    case TOK_NORM_REPLACE: return replace(nm, st, s, len, out);
    case TOK_NORM_NFC: return unicode_form(s, len, UTF8PROC_COMPOSE, out);
    case TOK_NORM_NFD: return unicode_form(s, len, UTF8PROC_DECOMPOSE, out);
    case TOK_NORM_NFKC: return unicode_form(s, len, UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out);
    case TOK_NORM_NFKD: return unicode_form(s, len, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out);
    case TOK_NORM_LOWERCASE: return lowercase(s, len, out);
    case TOK_NORM_STRIP: return strip(nm, s, len, out);
    case TOK_NORM_STRIP_ACCENTS: return strip_accents(s, len, out);
    case TOK_NORM_BYTE_LEVEL:
        for (size_t i = 0; i < len; i++)
            DORAC_TRY(tok_buf_append_cp(out, tok_byte_char[(unsigned char)s[i]]));
        return DORAC_OK;
    }
    return dorac_error(DORAC_E_INVALID, "tokenizer: bad normaliser kind");
}

int tok_normalize(const dorac_tokenizer *tok, tok_state *st, const char *s, size_t len,
                  const char **out, size_t *out_len) {
    const char *cur = s;
    size_t cur_len = len;
    for (size_t k = 0; k < tok->n_norms; k++) {
        tok_buf *dst = cur == st->n1.p ? &st->n2 : &st->n1;
        dst->n = 0;
        DORAC_TRY(tok_buf_reserve(dst, cur_len)); /* never NULL below */
        DORAC_TRY(apply(&tok->norms[k], st, cur, cur_len, dst));
        cur = dst->p;
        cur_len = dst->n;
    }
    *out = cur;
    *out_len = cur_len;
    return DORAC_OK;
}
