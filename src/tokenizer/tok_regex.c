/*
** tok_regex.c — tokenizers' patterns on PCRE2 (UTF + UCP + JIT).
**
** tokenizers compiles its patterns with Oniguruma (Ruby syntax). The
** patterns that real tokenizers use (GPT-2, Llama-3, Qwen2, ...) mean the
** same in PCRE2 except for one detail, which is rewritten here before
** compiling:
**   - `\s` is Unicode White_Space in Oniguruma; PCRE2's \s also matches
**     U+180E (MONGOLIAN VOWEL SEPARATOR). `\s` becomes an explicit class of
**     the 25 White_Space characters, and `\S` outside a class its negation.
**   - `\h` is a hexadecimal digit in Oniguruma (horizontal space in PCRE2).
** And `^` / `$` match at line starts and ends, as Ruby's do (PCRE2_MULTILINE).
**
** tok_regex_find walks the matches with the rules of the onig crate's
** find_iter, which tokenizers uses: after an empty match the search resumes
** one character later, and an empty match right after a non-empty one is
** skipped. The result is tokenizers' find_matches: matches and the gaps
** between them, covering the whole string.
*/
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/tok_internal.h"

#define WS_CLASS_BODY                                                                  \
    "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}" \
    "\\x{202F}\\x{205F}\\x{3000}"
#define HEX_CLASS_BODY "0-9a-fA-F"

/* Rewrites an Oniguruma pattern for PCRE2 (see the top of the file). */
static int translate(const char *p, size_t len, tok_buf *out) {
    bool in_class = false;
    size_t i = 0;
    while (i < len) {
        char c = p[i];
        if (c == '\\' && i + 1 < len) {
            char e = p[i + 1];
            if (e == 'Q') { /* \Q...\E: copied as is */
                const char *end = NULL;
                for (size_t k = i + 2; k + 1 < len; k++)
                    if (p[k] == '\\' && p[k + 1] == 'E') {
                        end = p + k + 2;
                        break;
                    }
                size_t n = end ? (size_t)(end - (p + i)) : len - i;
                DORAC_TRY(tok_buf_append(out, p + i, n));
                i += n;
                continue;
            }
            if (e == 's' || e == 'h') {
                const char *body = e == 's' ? WS_CLASS_BODY : HEX_CLASS_BODY;
                if (!in_class) DORAC_TRY(tok_buf_append(out, "[", 1));
                DORAC_TRY(tok_buf_append(out, body, strlen(body)));
                if (!in_class) DORAC_TRY(tok_buf_append(out, "]", 1));
                i += 2;
                continue;
            }
            if ((e == 'S' || e == 'H') && !in_class) {
                const char *body = e == 'S' ? WS_CLASS_BODY : HEX_CLASS_BODY;
                DORAC_TRY(tok_buf_append(out, "[^", 2));
                DORAC_TRY(tok_buf_append(out, body, strlen(body)));
                DORAC_TRY(tok_buf_append(out, "]", 1));
                i += 2;
                continue;
            }
            /* any other escape: the backslash and one whole character */
            size_t n = 1 + tok_utf8_len((unsigned char)e);
            if (i + n > len) n = len - i;
            DORAC_TRY(tok_buf_append(out, p + i, n));
            i += n;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            DORAC_TRY(tok_buf_append(out, "[", 1));
            i++;
            if (i < len && p[i] == '^') {
                DORAC_TRY(tok_buf_append(out, "^", 1));
                i++;
            }
            if (i < len && p[i] == ']') { /* a leading ] is literal */
                DORAC_TRY(tok_buf_append(out, "]", 1));
                i++;
            }
            continue;
        }
        if (in_class && c == '[' && i + 1 < len && p[i + 1] == ':') { /* [:alpha:] */
            const char *end = NULL;
            for (size_t k = i + 2; k + 1 < len; k++)
                if (p[k] == ':' && p[k + 1] == ']') {
                    end = p + k + 2;
                    break;
                }
            if (end) {
                DORAC_TRY(tok_buf_append(out, p + i, (size_t)(end - (p + i))));
                i = (size_t)(end - p);
                continue;
            }
        }
        if (in_class && c == ']') in_class = false;
        DORAC_TRY(tok_buf_append(out, p + i, 1));
        i++;
    }
    return DORAC_OK;
}

int tok_regex_compile(tok_regex **out, const char *pattern, size_t len, bool is_literal) {
    *out = NULL;
    tok_regex *re = calloc(1, sizeof *re);
    if (!re) return dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory");
    re->source = malloc(len + 1);
    if (!re->source) {
        free(re);
        return dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory");
    }
    memcpy(re->source, pattern, len);
    re->source[len] = '\0';

    tok_buf pat = {0};
    uint32_t options = PCRE2_UTF;
    int rc;
    if (is_literal) {
        options |= PCRE2_LITERAL;
        rc = tok_buf_append(&pat, pattern, len);
    } else {
        options |= PCRE2_UCP | PCRE2_MULTILINE;
        rc = translate(pattern, len, &pat);
    }
    if (rc) {
        tok_buf_free(&pat);
        tok_regex_free(re);
        return rc;
    }
    int err;
    PCRE2_SIZE erroff;
    re->code = pcre2_compile((PCRE2_SPTR)(pat.p ? pat.p : ""), pat.n, options, &err, &erroff, NULL);
    tok_buf_free(&pat);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        rc = dorac_error(DORAC_E_FORMAT, "regex '%.200s' does not compile: %s", re->source,
                         (const char *)msg);
        tok_regex_free(re);
        return rc;
    }
    re->jit = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0;
    *out = re;
    return DORAC_OK;
}

void tok_regex_free(tok_regex *re) {
    if (!re) return;
    pcre2_code_free(re->code);
    free(re->source);
    free(re);
}

/* One search from offset; 1 and the span on a match, 0 on none. */
static int search(const tok_regex *re, tok_match_scratch *ms, const char *s, size_t len,
                  size_t offset, size_t *ms_start, size_t *ms_end) {
    int rc;
    if (re->jit) {
        rc = pcre2_jit_match(re->code, (PCRE2_SPTR)s, len, offset, 0, ms->md, ms->mctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(re->code, (PCRE2_SPTR)s, len, offset, PCRE2_NO_JIT | PCRE2_NO_UTF_CHECK,
                             ms->md, ms->mctx);
    } else {
        rc = pcre2_match(re->code, (PCRE2_SPTR)s, len, offset, PCRE2_NO_UTF_CHECK, ms->md, ms->mctx);
    }
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return dorac_error(DORAC_E_INVALID, "regex '%.200s' failed on a %zu-byte input: %s",
                           re->source, len, (const char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(ms->md);
    if (ov[1] < ov[0] || ov[0] < offset || ov[1] > len)
        return dorac_error(DORAC_E_UNSUPPORTED, "regex '%.200s' reports a match outside the "
                           "searched text (\\K is not supported)", re->source);
    *ms_start = ov[0];
    *ms_end = ov[1];
    return 1;
}

int tok_regex_find(const tok_regex *re, tok_match_scratch *ms, const char *s, size_t len,
                   tok_spans *out) {
    out->n = 0;
    if (len == 0) return tok_spans_push(out, 0, 0, false);
    size_t prev = 0, last_end = 0;
    bool skip_next_empty = false;
    while (last_end <= len) {
        size_t ms_start, ms_end;
        int rc = search(re, ms, s, len, last_end, &ms_start, &ms_end);
        if (rc < 0) return rc;
        if (rc == 0) break;
        last_end = ms_end;
        if (ms_start == ms_end) {
            last_end += ms_end < len ? tok_utf8_len((unsigned char)s[ms_end]) : 1;
            if (skip_next_empty) {
                skip_next_empty = false;
                continue;
            }
        } else {
            skip_next_empty = true;
        }
        if (prev != ms_start) DORAC_TRY(tok_spans_push(out, prev, ms_start, false));
        DORAC_TRY(tok_spans_push(out, ms_start, ms_end, true));
        prev = ms_end;
    }
    if (prev != len) DORAC_TRY(tok_spans_push(out, prev, len, false));
    return DORAC_OK;
}
