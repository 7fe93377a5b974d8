/*
** tok_load.c — tokenizer.json (and tokenizer_config.json) into a
** dorac_tokenizer, plus the small accessors of tokenizer.h.
**
** The file is untrusted: every field is type-checked, every id is range-
** checked before it indexes anything, and sizes go through core/size.h.
** A component that dorac does not implement is DORAC_E_UNSUPPORTED with
** its name; a malformed one is DORAC_E_FORMAT with the path of the field
** (e.g. "pre_tokenizer.pretokenizers[0].pattern"). Sequences of normalisers,
** pre-tokenizers, post-processors and decoders are flattened into lists:
** applying a Sequence is applying its members in order.
**
** Added tokens get their ids as tokenizers' AddedVocabulary::add_tokens
** assigns them (the "id" field is not trusted): the id of the same content
** in the model's vocabulary if any, else the next id after the model's
** vocabulary size.
*/
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/size.h"
#include "tokenizer/tok_internal.h"

#define MAX_FILE_BYTES ((size_t)1 << 30)
#define MAX_ID ((int64_t)1 << 30)

/* ---- JSON helpers ---------------------------------------------------------- */

/* A string field. required: absent or null is an error; otherwise *s = NULL. */
static int get_string(json_t *obj, const char *key, const char *where, bool required,
                      const char **s, size_t *len) {
    json_t *v = json_object_get(obj, key);
    *s = NULL;
    if (len) *len = 0;
    if (!v || json_is_null(v)) {
        if (required) return dorac_error(DORAC_E_FORMAT, "%s.%s: missing (a string is required)", where, key);
        return DORAC_OK;
    }
    if (!json_is_string(v)) return dorac_error(DORAC_E_FORMAT, "%s.%s: expected a string", where, key);
    *s = json_string_value(v);
    if (len) *len = json_string_length(v);
    return DORAC_OK;
}

static int get_bool(json_t *obj, const char *key, const char *where, bool dflt, bool *out) {
    json_t *v = json_object_get(obj, key);
    *out = dflt;
    if (!v || json_is_null(v)) return DORAC_OK;
    if (!json_is_boolean(v)) return dorac_error(DORAC_E_FORMAT, "%s.%s: expected true or false", where, key);
    *out = json_is_true(v);
    return DORAC_OK;
}

static int get_size(json_t *obj, const char *key, const char *where, size_t dflt, size_t *out) {
    json_t *v = json_object_get(obj, key);
    *out = dflt;
    if (!v || json_is_null(v)) return DORAC_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return dorac_error(DORAC_E_FORMAT, "%s.%s: expected a non-negative integer", where, key);
    *out = (size_t)json_integer_value(v);
    return DORAC_OK;
}

/* A one-character string (Metaspace's replacement, Strip's content). */
static int get_char(json_t *obj, const char *key, const char *where, uint32_t dflt, uint32_t *out) {
    const char *s;
    size_t len, n;
    *out = dflt;
    DORAC_TRY(get_string(obj, key, where, false, &s, &len));
    if (!s) return DORAC_OK;
    if (len == 0 || tok_utf8_len((unsigned char)s[0]) != len || !tok_utf8_valid(s, len))
        return dorac_error(DORAC_E_FORMAT, "%s.%s: expected exactly one character", where, key);
    *out = tok_utf8_decode(s, &n);
    return DORAC_OK;
}

static int dup_string(const char *s, size_t len, char **out) {
    *out = malloc(len + 1);
    if (!*out) return dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory");
    memcpy(*out, s, len);
    (*out)[len] = '\0';
    return DORAC_OK;
}

/* The "type" of a component; an object without one is malformed. */
static int get_type(json_t *obj, const char *where, const char **type) {
    if (!json_is_object(obj)) return dorac_error(DORAC_E_FORMAT, "%s: expected an object or null", where);
    const char *t;
    DORAC_TRY(get_string(obj, "type", where, true, &t, NULL));
    *type = t;
    return DORAC_OK;
}

/* {"String": s} or {"Regex": r} → a compiled pattern. */
static int get_pattern(json_t *obj, const char *where, tok_regex **re) {
    json_t *p = json_object_get(obj, "pattern");
    if (!json_is_object(p)) return dorac_error(DORAC_E_FORMAT, "%s.pattern: expected {\"String\": ...} or {\"Regex\": ...}", where);
    json_t *s = json_object_get(p, "String"), *r = json_object_get(p, "Regex");
    json_t *v = s ? s : r;
    if (!v || !json_is_string(v) || (s && r))
        return dorac_error(DORAC_E_FORMAT, "%s.pattern: expected {\"String\": ...} or {\"Regex\": ...}", where);
    int rc = tok_regex_compile(re, json_string_value(v), json_string_length(v), s != NULL);
    if (rc) return dorac_error_prefix(rc, "%s.pattern", where);
    return DORAC_OK;
}

static int grow_array(void **p, size_t n, size_t elem) {
    size_t bytes;
    if (!dorac_size_mul(n + 1, elem, &bytes)) return dorac_error(DORAC_E_NOMEM, "tokenizer: size overflow");
    void *q = realloc(*p, bytes);
    if (!q) return dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory");
    *p = q;
    memset((char *)q + n * elem, 0, elem);
    return DORAC_OK;
}

/* ---- model ------------------------------------------------------------------ */

static int load_model(dorac_tokenizer *tok, json_t *model) {
    const char *where = "model", *type = NULL;
    if (!model || json_is_null(model)) return dorac_error(DORAC_E_FORMAT, "model: missing");
    DORAC_TRY(get_type(model, where, &type));
    if (strcmp(type, "BPE"))
        return dorac_error(DORAC_E_UNSUPPORTED, "model: type '%s' is not supported (dorac implements BPE)", type);
    tok_bpe *m = &tok->bpe;

    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout)) {
        if (!json_is_number(dropout)) return dorac_error(DORAC_E_FORMAT, "model.dropout: expected a number or null");
        double p = json_number_value(dropout);
        if (!(p >= 0.0 && p <= 1.0)) return dorac_error(DORAC_E_FORMAT, "model.dropout: %g is not in [0, 1]", p);
        if (p > 0.0)
            return dorac_error(DORAC_E_UNSUPPORTED, "model.dropout: BPE dropout %g is random and not supported", p);
    }
    const char *s;
    size_t len;
    DORAC_TRY(get_string(model, "unk_token", where, false, &s, &len));
    if (s) DORAC_TRY(dup_string(s, len, &m->unk_token));
    m->unk_len = len;
    DORAC_TRY(get_string(model, "continuing_subword_prefix", where, false, &s, &len));
    if (s) DORAC_TRY(dup_string(s, len, &m->prefix));
    m->prefix_len = len;
    DORAC_TRY(get_string(model, "end_of_word_suffix", where, false, &s, &len));
    if (s) DORAC_TRY(dup_string(s, len, &m->suffix));
    m->suffix_len = len;
    DORAC_TRY(get_bool(model, "fuse_unk", where, false, &m->fuse_unk));
    DORAC_TRY(get_bool(model, "byte_fallback", where, false, &m->byte_fallback));
    DORAC_TRY(get_bool(model, "ignore_merges", where, false, &m->ignore_merges));

    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) return dorac_error(DORAC_E_FORMAT, "model.vocab: expected an object of token: id");
    const char *key;
    size_t klen;
    json_t *val;
    int64_t max_id = -1;
    json_object_keylen_foreach(vocab, key, klen, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= MAX_ID)
            return dorac_error(DORAC_E_FORMAT, "model.vocab['%.80s']: id must be an integer in [0, 2^30)", key);
        int64_t id = json_integer_value(val);
        DORAC_TRY(tok_strmap_put(&m->vocab, key, klen, (int32_t)id));
        if (id > max_id) max_id = id;
    }
    m->n_vocab = m->vocab.n;
    tok->n_ids = (int32_t)(max_id + 1);
    return DORAC_OK;
}

static int load_merges(dorac_tokenizer *tok, json_t *model) {
    tok_bpe *m = &tok->bpe;
    json_t *merges = json_object_get(model, "merges");
    size_t n = 0;
    if (merges && !json_is_null(merges)) {
        if (!json_is_array(merges)) return dorac_error(DORAC_E_FORMAT, "model.merges: expected an array");
        n = json_array_size(merges);
    }
    size_t slots = 16;
    while (slots < 2 * n) {
        if (!dorac_size_mul(slots, 2, &slots)) return dorac_error(DORAC_E_NOMEM, "model.merges: too many");
    }
    size_t bytes;
    if (!dorac_size_mul(slots, sizeof *m->merges, &bytes)) return dorac_error(DORAC_E_NOMEM, "model.merges: too many");
    m->merges = malloc(bytes);
    if (!m->merges) return dorac_error(DORAC_E_NOMEM, "model.merges: out of memory");
    for (size_t i = 0; i < slots; i++) m->merges[i].key = UINT64_MAX;
    m->merge_mask = slots - 1;

    tok_buf joined = {0};
    int rc = DORAC_OK;
    int form = 0; /* 1: "a b" strings, 2: [a, b] pairs; tokenizers refuses a mix */
    m->split_at_meta = true;
    uint32_t rank = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *e = json_array_get(merges, i);
        const char *a, *b;
        size_t alen, blen;
        if (json_is_string(e)) {
            if (form == 2) rc = dorac_error(DORAC_E_FORMAT, "model.merges[%zu]: strings and pairs mixed", i);
            form = 1;
            const char *line = json_string_value(e);
            size_t len = json_string_length(e);
            if (len >= 8 && !memcmp(line, "#version", 8)) continue;
            const char *sp = memchr(line, ' ', len);
            if (!rc && (!sp || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - line))))
                rc = dorac_error(DORAC_E_FORMAT, "model.merges[%zu]: '%.80s' is not two tokens separated by one space", i, line);
            if (rc) break;
            a = line;
            alen = (size_t)(sp - line);
            b = sp + 1;
            blen = len - alen - 1;
        } else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                   json_is_string(json_array_get(e, 1))) {
            if (form == 1) {
                rc = dorac_error(DORAC_E_FORMAT, "model.merges[%zu]: strings and pairs mixed", i);
                break;
            }
            form = 2;
            a = json_string_value(json_array_get(e, 0));
            alen = json_string_length(json_array_get(e, 0));
            b = json_string_value(json_array_get(e, 1));
            blen = json_string_length(json_array_get(e, 1));
        } else {
            rc = dorac_error(DORAC_E_FORMAT, "model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", i);
            break;
        }
        int32_t ia = tok_strmap_get(&m->vocab, a, alen), ib = tok_strmap_get(&m->vocab, b, blen);
        if (ia < 0 || ib < 0) {
            rc = dorac_error(DORAC_E_FORMAT, "model.merges[%zu]: token '%.80s' is not in the vocabulary", i,
                             ia < 0 ? a : b);
            break;
        }
        /* the merged token is a + b without b's continuing_subword_prefix */
        if (blen < m->prefix_len) {
            rc = dorac_error(DORAC_E_FORMAT, "model.merges[%zu]: '%.80s' is shorter than the continuing_subword_prefix", i, b);
            break;
        }
        joined.n = 0;
        rc = tok_buf_append(&joined, a, alen);
        if (!rc) rc = tok_buf_append(&joined, b + m->prefix_len, blen - m->prefix_len);
        if (rc) break;
        int32_t inew = tok_strmap_get(&m->vocab, joined.p, joined.n);
        if (inew < 0) {
            rc = dorac_error(DORAC_E_FORMAT, "model.merges[%zu]: merged token '%.80s' is not in the vocabulary", i, joined.p);
            break;
        }
        rc = tok_bpe_add_merge(m, ia, ib, rank++, inew);
        /* a merge (a, "▁...") with a not made of ▁ only could join two words */
        if (blen >= 3 && !memcmp(b, "\xE2\x96\x81", 3))
            for (size_t k = 0; k < alen && m->split_at_meta; k += 3)
                if (alen - k < 3 || memcmp(a + k, "\xE2\x96\x81", 3)) m->split_at_meta = false;
    }
    tok_buf_free(&joined);
    /* the ▁ must be a token itself (an unknown ▁ could fuse unks across the
    ** cut), and nothing may depend on where a word starts or ends */
    if (m->prefix || m->suffix || m->ignore_merges || tok_strmap_get(&m->vocab, "\xE2\x96\x81", 3) < 0)
        m->split_at_meta = false;
    return rc;
}

/* ---- normalizers -------------------------------------------------------------- */

static int add_norm(dorac_tokenizer *tok, tok_norm nm) {
    DORAC_TRY(grow_array((void **)&tok->norms, tok->n_norms, sizeof *tok->norms));
    tok->norms[tok->n_norms++] = nm;
    return DORAC_OK;
}

static int load_normalizer(dorac_tokenizer *tok, json_t *j, const char *where, int depth) {
    if (!j || json_is_null(j)) return DORAC_OK;
    if (depth > 16) return dorac_error(DORAC_E_FORMAT, "%s: nested too deeply", where);
    const char *type = NULL;
    DORAC_TRY(get_type(j, where, &type));
    char sub[160];
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(j, "normalizers");
        if (!json_is_array(list)) return dorac_error(DORAC_E_FORMAT, "%s.normalizers: expected an array", where);
        for (size_t i = 0; i < json_array_size(list); i++) {
            snprintf(sub, sizeof sub, "%s.normalizers[%zu]", where, i);
            DORAC_TRY(load_normalizer(tok, json_array_get(list, i), sub, depth + 1));
        }
        return DORAC_OK;
    }
    tok_norm nm = {0};
    const char *s;
    size_t len;
    if (!strcmp(type, "Prepend")) {
        nm.kind = TOK_NORM_PREPEND;
        DORAC_TRY(get_string(j, "prepend", where, true, &s, &len));
        DORAC_TRY(dup_string(s, len, &nm.text));
        nm.text_len = len;
    } else if (!strcmp(type, "Replace")) {
        nm.kind = TOK_NORM_REPLACE;
        DORAC_TRY(get_string(j, "content", where, true, &s, &len));
        DORAC_TRY(dup_string(s, len, &nm.text));
        nm.text_len = len;
        int rc = get_pattern(j, where, &nm.re);
        if (rc) {
            free(nm.text);
            return rc;
        }
    } else if (!strcmp(type, "NFC")) nm.kind = TOK_NORM_NFC;
    else if (!strcmp(type, "NFD")) nm.kind = TOK_NORM_NFD;
    else if (!strcmp(type, "NFKC")) nm.kind = TOK_NORM_NFKC;
    else if (!strcmp(type, "NFKD")) nm.kind = TOK_NORM_NFKD;
    else if (!strcmp(type, "Lowercase")) nm.kind = TOK_NORM_LOWERCASE;
    else if (!strcmp(type, "StripAccents")) nm.kind = TOK_NORM_STRIP_ACCENTS;
    else if (!strcmp(type, "ByteLevel")) nm.kind = TOK_NORM_BYTE_LEVEL;
    else if (!strcmp(type, "Strip")) {
        nm.kind = TOK_NORM_STRIP;
        DORAC_TRY(get_bool(j, "strip_left", where, true, &nm.left));
        DORAC_TRY(get_bool(j, "strip_right", where, true, &nm.right));
    } else
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: normalizer '%s' is not supported", where, type);
    int rc = add_norm(tok, nm);
    if (rc) {
        free(nm.text);
        tok_regex_free(nm.re);
    }
    return rc;
}

/* ---- pre-tokenizers ------------------------------------------------------------ */

static const char *const GPT2_PATTERN =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int get_prepend_scheme(json_t *j, const char *where, tok_prepend_scheme *out) {
    const char *s;
    DORAC_TRY(get_string(j, "prepend_scheme", where, false, &s, NULL));
    bool aps, has_aps = json_is_boolean(json_object_get(j, "add_prefix_space"));
    DORAC_TRY(get_bool(j, "add_prefix_space", where, true, &aps));
    *out = TOK_PREPEND_ALWAYS;
    if (s) {
        if (!strcmp(s, "always")) *out = TOK_PREPEND_ALWAYS;
        else if (!strcmp(s, "first")) *out = TOK_PREPEND_FIRST;
        else if (!strcmp(s, "never")) *out = TOK_PREPEND_NEVER;
        else return dorac_error(DORAC_E_FORMAT, "%s.prepend_scheme: '%.40s' is not always, first or never", where, s);
    }
    if (has_aps && !aps) { /* the older spelling */
        if (*out != TOK_PREPEND_NEVER)
            return dorac_error(DORAC_E_FORMAT, "%s: add_prefix_space does not match declared prepend_scheme", where);
        *out = TOK_PREPEND_NEVER;
    }
    return DORAC_OK;
}

static int add_pretok(dorac_tokenizer *tok, tok_pretok pt) {
    DORAC_TRY(grow_array((void **)&tok->pretoks, tok->n_pretoks, sizeof *tok->pretoks));
    tok->pretoks[tok->n_pretoks++] = pt;
    return DORAC_OK;
}

static int load_pretokenizer(dorac_tokenizer *tok, json_t *j, const char *where, int depth) {
    if (!j || json_is_null(j)) return DORAC_OK;
    if (depth > 16) return dorac_error(DORAC_E_FORMAT, "%s: nested too deeply", where);
    const char *type = NULL;
    DORAC_TRY(get_type(j, where, &type));
    char sub[160];
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(j, "pretokenizers");
        if (!json_is_array(list)) return dorac_error(DORAC_E_FORMAT, "%s.pretokenizers: expected an array", where);
        for (size_t i = 0; i < json_array_size(list); i++) {
            snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", where, i);
            DORAC_TRY(load_pretokenizer(tok, json_array_get(list, i), sub, depth + 1));
        }
        return DORAC_OK;
    }
    tok_pretok pt = {0};
    if (!strcmp(type, "ByteLevel")) {
        pt.kind = TOK_PRE_BYTE_LEVEL;
        bool use_regex;
        DORAC_TRY(get_bool(j, "add_prefix_space", where, true, &pt.add_prefix_space));
        DORAC_TRY(get_bool(j, "use_regex", where, true, &use_regex));
        if (use_regex) {
            if (!tok->gpt2_re) DORAC_TRY(tok_regex_compile(&tok->gpt2_re, GPT2_PATTERN, strlen(GPT2_PATTERN), false));
            pt.re = tok->gpt2_re; /* shared; freed once */
        }
    } else if (!strcmp(type, "Split")) {
        pt.kind = TOK_PRE_SPLIT;
        const char *b;
        DORAC_TRY(get_string(j, "behavior", where, true, &b, NULL));
        if (!strcmp(b, "Removed")) pt.behavior = TOK_SPLIT_REMOVED;
        else if (!strcmp(b, "Isolated")) pt.behavior = TOK_SPLIT_ISOLATED;
        else if (!strcmp(b, "MergedWithPrevious")) pt.behavior = TOK_SPLIT_MERGED_WITH_PREVIOUS;
        else if (!strcmp(b, "MergedWithNext")) pt.behavior = TOK_SPLIT_MERGED_WITH_NEXT;
        else if (!strcmp(b, "Contiguous")) pt.behavior = TOK_SPLIT_CONTIGUOUS;
        else return dorac_error(DORAC_E_FORMAT, "%s.behavior: '%.40s' is not a split behavior", where, b);
        DORAC_TRY(get_bool(j, "invert", where, false, &pt.invert));
        DORAC_TRY(get_pattern(j, where, &pt.re));
    } else if (!strcmp(type, "Metaspace")) {
        pt.kind = TOK_PRE_METASPACE;
        DORAC_TRY(get_char(j, "replacement", where, 0x2581, &pt.replacement));
        DORAC_TRY(get_prepend_scheme(j, where, &pt.prepend));
        DORAC_TRY(get_bool(j, "split", where, true, &pt.split));
    } else if (!strcmp(type, "Digits")) {
        pt.kind = TOK_PRE_DIGITS;
        DORAC_TRY(get_bool(j, "individual_digits", where, false, &pt.individual_digits));
    } else
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: pre-tokenizer '%s' is not supported", where, type);
    int rc = add_pretok(tok, pt);
    if (rc && pt.re != tok->gpt2_re) tok_regex_free(pt.re);
    return rc;
}

/* ---- decoders -------------------------------------------------------------- */

static int add_decoder(dorac_tokenizer *tok, tok_decoder d) {
    DORAC_TRY(grow_array((void **)&tok->decoders, tok->n_decoders, sizeof *tok->decoders));
    tok->decoders[tok->n_decoders++] = d;
    return DORAC_OK;
}

static int load_decoder(dorac_tokenizer *tok, json_t *j, const char *where, int depth) {
    if (!j || json_is_null(j)) return DORAC_OK;
    if (depth > 16) return dorac_error(DORAC_E_FORMAT, "%s: nested too deeply", where);
    const char *type = NULL;
    DORAC_TRY(get_type(j, where, &type));
    tok->has_decoder = true;
    char sub[160];
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(j, "decoders");
        if (!json_is_array(list)) return dorac_error(DORAC_E_FORMAT, "%s.decoders: expected an array", where);
        for (size_t i = 0; i < json_array_size(list); i++) {
            snprintf(sub, sizeof sub, "%s.decoders[%zu]", where, i);
            DORAC_TRY(load_decoder(tok, json_array_get(list, i), sub, depth + 1));
        }
        return DORAC_OK;
    }
    tok_decoder d = {0};
    const char *s;
    size_t len;
    if (!strcmp(type, "ByteLevel")) d.kind = TOK_DEC_BYTE_LEVEL;
    else if (!strcmp(type, "ByteFallback")) d.kind = TOK_DEC_BYTE_FALLBACK;
    else if (!strcmp(type, "Fuse")) d.kind = TOK_DEC_FUSE;
    else if (!strcmp(type, "Replace")) {
        d.kind = TOK_DEC_REPLACE;
        DORAC_TRY(get_string(j, "content", where, true, &s, &len));
        DORAC_TRY(dup_string(s, len, &d.text));
        d.text_len = len;
        int rc = get_pattern(j, where, &d.re);
        if (rc) {
            free(d.text);
            return rc;
        }
    } else if (!strcmp(type, "Strip")) {
        d.kind = TOK_DEC_STRIP;
        DORAC_TRY(get_char(j, "content", where, ' ', &d.ch));
        DORAC_TRY(get_size(j, "start", where, 0, &d.start));
        DORAC_TRY(get_size(j, "stop", where, 0, &d.stop));
    } else if (!strcmp(type, "Metaspace")) {
        d.kind = TOK_DEC_METASPACE;
        DORAC_TRY(get_char(j, "replacement", where, 0x2581, &d.ch));
        DORAC_TRY(get_prepend_scheme(j, where, &d.prepend));
    } else if (!strcmp(type, "BPEDecoder")) {
        d.kind = TOK_DEC_BPE;
        DORAC_TRY(get_string(j, "suffix", where, false, &s, &len));
        if (!s) {
            s = "</w>";
            len = 4;
        }
        DORAC_TRY(dup_string(s, len, &d.text));
        d.text_len = len;
    } else
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: decoder '%s' is not supported", where, type);
    int rc = add_decoder(tok, d);
    if (rc) {
        free(d.text);
        tok_regex_free(d.re);
    }
    return rc;
}

/* ---- post-processors --------------------------------------------------------- */

static int check_id(const dorac_tokenizer *tok, json_int_t id, const char *where, const char *name) {
    if (id < 0 || id >= MAX_ID)
        return dorac_error(DORAC_E_FORMAT, "%s: special token '%.80s' has a bad id", where, name);
    (void)tok; /* the range against the vocabulary is checked once all ids are known */
    return DORAC_OK;
}

static int add_tmpl_item(dorac_tokenizer *tok, bool is_sequence, const int32_t *ids, size_t n) {
    DORAC_TRY(grow_array((void **)&tok->tmpl, tok->n_tmpl, sizeof *tok->tmpl));
    tok_template_item *it = &tok->tmpl[tok->n_tmpl];
    it->is_sequence = is_sequence;
    if (n) {
        it->ids = malloc(n * sizeof *ids);
        if (!it->ids) return dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory");
        memcpy(it->ids, ids, n * sizeof *ids);
        it->n_ids = n;
    }
    tok->n_tmpl++;
    return DORAC_OK;
}

/* RobertaProcessing / BertProcessing: "cls": [token, id], "sep": [token, id]. */
static int pair_id(json_t *j, const char *key, const char *where, int32_t *id) {
    json_t *v = json_object_get(j, key);
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_string(json_array_get(v, 0)) ||
        !json_is_integer(json_array_get(v, 1)))
        return dorac_error(DORAC_E_FORMAT, "%s.%s: expected [token, id]", where, key);
    json_int_t i = json_integer_value(json_array_get(v, 1));
    if (i < 0 || i >= MAX_ID) return dorac_error(DORAC_E_FORMAT, "%s.%s: bad id", where, key);
    *id = (int32_t)i;
    return DORAC_OK;
}

static int load_template(dorac_tokenizer *tok, json_t *j, const char *where) {
    json_t *single = json_object_get(j, "single"), *specials = json_object_get(j, "special_tokens");
    if (!json_is_array(single)) return dorac_error(DORAC_E_FORMAT, "%s.single: expected an array", where);
    if (specials && !json_is_null(specials) && !json_is_object(specials))
        return dorac_error(DORAC_E_FORMAT, "%s.special_tokens: expected an object", where);
    for (size_t i = 0; i < json_array_size(single); i++) {
        json_t *item = json_array_get(single, i), *seq, *sp;
        if (!json_is_object(item)) return dorac_error(DORAC_E_FORMAT, "%s.single[%zu]: expected an object", where, i);
        if ((seq = json_object_get(item, "Sequence"))) {
            const char *id;
            DORAC_TRY(get_string(seq, "id", where, true, &id, NULL));
            if (strcmp(id, "A"))
                return dorac_error(DORAC_E_FORMAT, "%s.single[%zu]: a single-sequence template can only use $A", where, i);
            DORAC_TRY(add_tmpl_item(tok, true, NULL, 0));
        } else if ((sp = json_object_get(item, "SpecialToken"))) {
            const char *name;
            DORAC_TRY(get_string(sp, "id", where, true, &name, NULL));
            json_t *def = specials ? json_object_get(specials, name) : NULL;
            json_t *ids = def ? json_object_get(def, "ids") : NULL;
            if (!json_is_array(ids))
                return dorac_error(DORAC_E_FORMAT, "%s: special token '%.80s' is not in special_tokens", where, name);
            size_t n = json_array_size(ids);
            if (n > 64) return dorac_error(DORAC_E_FORMAT, "%s: special token '%.80s' has too many ids", where, name);
            int32_t buf[64];
            for (size_t k = 0; k < n; k++) {
                json_t *v = json_array_get(ids, k);
                if (!json_is_integer(v)) return dorac_error(DORAC_E_FORMAT, "%s: special token '%.80s': ids must be integers", where, name);
                DORAC_TRY(check_id(tok, json_integer_value(v), where, name));
                buf[k] = (int32_t)json_integer_value(v);
            }
            DORAC_TRY(add_tmpl_item(tok, false, buf, n));
        } else {
            return dorac_error(DORAC_E_FORMAT, "%s.single[%zu]: expected Sequence or SpecialToken", where, i);
        }
    }
    return DORAC_OK;
}

static int load_post_processor(dorac_tokenizer *tok, json_t *j, const char *where, int depth) {
    if (!j || json_is_null(j)) return DORAC_OK;
    if (depth > 16) return dorac_error(DORAC_E_FORMAT, "%s: nested too deeply", where);
    const char *type = NULL;
    DORAC_TRY(get_type(j, where, &type));
    char sub[160];
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(j, "processors");
        if (!json_is_array(list)) return dorac_error(DORAC_E_FORMAT, "%s.processors: expected an array", where);
        for (size_t i = 0; i < json_array_size(list); i++) {
            snprintf(sub, sizeof sub, "%s.processors[%zu]", where, i);
            DORAC_TRY(load_post_processor(tok, json_array_get(list, i), sub, depth + 1));
        }
        return DORAC_OK;
    }
    if (!strcmp(type, "ByteLevel")) return DORAC_OK; /* offsets only; ids unchanged */
    bool template_like = !strcmp(type, "TemplateProcessing") || !strcmp(type, "RobertaProcessing") ||
                         !strcmp(type, "BertProcessing");
    if (!template_like)
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: post-processor '%s' is not supported", where, type);
    if (tok->has_template)
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: a second template post-processor in one Sequence is not supported", where);
    tok->has_template = true;
    if (!strcmp(type, "TemplateProcessing")) return load_template(tok, j, where);
    int32_t cls, sep;
    DORAC_TRY(pair_id(j, "cls", where, &cls));
    DORAC_TRY(pair_id(j, "sep", where, &sep));
    DORAC_TRY(add_tmpl_item(tok, false, &cls, 1));
    DORAC_TRY(add_tmpl_item(tok, true, NULL, 0));
    return add_tmpl_item(tok, false, &sep, 1);
}

/* ---- added tokens ----------------------------------------------------------- */

static int load_added(dorac_tokenizer *tok, json_t *list) {
    if (!list || json_is_null(list)) return DORAC_OK;
    if (!json_is_array(list)) return dorac_error(DORAC_E_FORMAT, "added_tokens: expected an array");
    size_t n = json_array_size(list);
    if (n) {
        size_t bytes;
        if (!dorac_size_mul(n, sizeof *tok->added, &bytes)) return dorac_error(DORAC_E_NOMEM, "added_tokens: too many");
        tok->added = calloc(n, sizeof *tok->added);
        if (!tok->added) return dorac_error(DORAC_E_NOMEM, "added_tokens: out of memory");
    }
    /* tokenizers' add_tokens: the next new id follows the model's vocabulary size */
    int64_t next_id = (int64_t)tok->bpe.n_vocab;
    char where[64];
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(list, i);
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        if (!json_is_object(e)) return dorac_error(DORAC_E_FORMAT, "%s: expected an object", where);
        const char *content;
        size_t clen;
        tok_added a = {0};
        DORAC_TRY(get_string(e, "content", where, true, &content, &clen));
        DORAC_TRY(get_bool(e, "special", where, false, &a.special));
        DORAC_TRY(get_bool(e, "single_word", where, false, &a.single_word));
        DORAC_TRY(get_bool(e, "lstrip", where, false, &a.lstrip));
        DORAC_TRY(get_bool(e, "rstrip", where, false, &a.rstrip));
        DORAC_TRY(get_bool(e, "normalized", where, !a.special, &a.normalized));
        if (clen == 0) continue;
        int32_t id = tok_strmap_get(&tok->added_map, content, clen);
        if (id >= 0 && id < tok->n_ids && tok->ids[id].added >= 0) {
            const tok_added *o = &tok->added[tok->ids[id].added];
            if (o->content_len == clen && !memcmp(o->content, content, clen) && o->special == a.special &&
                o->single_word == a.single_word && o->lstrip == a.lstrip && o->rstrip == a.rstrip &&
                o->normalized == a.normalized)
                continue; /* the same token again */
        }
        if (id < 0) id = tok_strmap_get(&tok->bpe.vocab, content, clen);
        if (id < 0) {
            if (next_id >= MAX_ID) return dorac_error(DORAC_E_FORMAT, "%s: too many tokens", where);
            id = (int32_t)next_id++;
        }
        DORAC_TRY(dup_string(content, clen, &a.content));
        a.content_len = clen;
        a.id = id;
        tok->added[tok->n_added] = a; /* owns content from here */
        tok_added *slot = &tok->added[tok->n_added++];
        if (a.normalized && tok->n_norms) {
            const char *ns;
            size_t nlen;
            DORAC_TRY(tok_normalize(tok, tok->shared, content, clen, &ns, &nlen));
            DORAC_TRY(dup_string(ns, nlen, &slot->pattern));
            slot->pattern_len = nlen;
        } else {
            DORAC_TRY(dup_string(content, clen, &slot->pattern));
            slot->pattern_len = clen;
        }
        DORAC_TRY(tok_strmap_put(&tok->added_map, content, clen, id));
        if (id >= tok->n_ids) {
            /* grow the id table to cover the new id */
            size_t old = (size_t)tok->n_ids, want = (size_t)id + 1, bytes;
            if (!dorac_size_mul(want, sizeof *tok->ids, &bytes)) return dorac_error(DORAC_E_NOMEM, "tokenizer: too many ids");
            tok_id_info *p = realloc(tok->ids, bytes);
            if (!p) return dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory");
            for (size_t k = old; k < want; k++) p[k] = (tok_id_info){.model_off = -1, .model_len = 0, .added = -1};
            tok->ids = p;
            tok->n_ids = (int32_t)want;
        }
        tok->ids[id].added = (int32_t)(tok->n_added - 1);
    }
    return DORAC_OK;
}

static int build_tries(dorac_tokenizer *tok) {
    for (int32_t id = 0; id < tok->n_ids; id++) {
        int32_t k = tok->ids[id].added;
        if (k < 0) continue;
        const tok_added *a = &tok->added[k];
        tok_trie *t = a->normalized ? &tok->trie_norm : &tok->trie_raw;
        const char *p = a->normalized ? a->pattern : a->content;
        size_t len = a->normalized ? a->pattern_len : a->content_len;
        if (len == 0) continue; /* normalised to nothing: cannot match */
        int rc = tok_trie_add(t, p, len, k);
        if (rc == 1)
            return dorac_error(DORAC_E_FORMAT, "added_tokens: two tokens match the same text '%.80s'", p);
        DORAC_TRY(rc);
        if (a->normalized) tok->has_norm = true;
        else tok->has_raw = true;
    }
    return DORAC_OK;
}

/* The model's id → string table. */
static int build_ids(dorac_tokenizer *tok) {
    size_t n = tok->n_ids > 0 ? (size_t)tok->n_ids : 0, bytes;
    /* ids are untrusted: a handful of tokens must not claim a billion rows */
    if (n > 16 * tok->bpe.vocab.n + (1u << 16))
        return dorac_error(DORAC_E_UNSUPPORTED, "model.vocab: ids up to %zu for %zu tokens are too sparse",
                           n, tok->bpe.vocab.n);
    if (!dorac_size_mul(n ? n : 1, sizeof *tok->ids, &bytes)) return dorac_error(DORAC_E_NOMEM, "tokenizer: too many ids");
    tok->ids = malloc(bytes);
    if (!tok->ids) return dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < n; i++) tok->ids[i] = (tok_id_info){.model_off = -1, .model_len = 0, .added = -1};
    const tok_strmap *v = &tok->bpe.vocab;
    for (size_t i = 0; i < v->n; i++) {
        const struct tok_strmap_entry *e = &v->e[i];
        tok_id_info *info = &tok->ids[e->value];
        if (info->model_off >= 0) continue; /* two strings, one id: the first stays */
        info->model_off = (int64_t)tok->model_strings.n;
        info->model_len = (uint32_t)e->len;
        DORAC_TRY(tok_buf_append(&tok->model_strings, v->pool.p + e->off, e->len));
        DORAC_TRY(tok_buf_append(&tok->model_strings, "", 1)); /* NUL for id_to_token */
    }
    return DORAC_OK;
}

/* ---- tokenizer_config.json ------------------------------------------------ */

static int config_token(json_t *cfg, const char *key, const char **s, size_t *len) {
    json_t *v = json_object_get(cfg, key);
    *s = NULL;
    if (!v || json_is_null(v)) return DORAC_OK;
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v))
        return dorac_error(DORAC_E_FORMAT, "tokenizer_config: %s: expected a string or {\"content\": ...}", key);
    *s = json_string_value(v);
    *len = json_string_length(v);
    return DORAC_OK;
}

static int load_config(dorac_tokenizer *tok, json_t *cfg) {
    if (!json_is_object(cfg)) return dorac_error(DORAC_E_FORMAT, "tokenizer_config: expected an object");
    const char *bos, *eos;
    size_t bos_len = 0, eos_len = 0;
    DORAC_TRY(config_token(cfg, "bos_token", &bos, &bos_len));
    DORAC_TRY(config_token(cfg, "eos_token", &eos, &eos_len));
    int32_t bos_id = bos ? dorac_tokenizer_token_to_id(tok, bos, bos_len) : -1;
    int32_t eos_id = eos ? dorac_tokenizer_token_to_id(tok, eos, eos_len) : -1;
    if (bos_id >= 0) tok->bos_id = bos_id;
    if (eos_id >= 0) tok->eos_id = eos_id;

    json_t *ab = json_object_get(cfg, "add_bos_token"), *ae = json_object_get(cfg, "add_eos_token");
    bool has_ab = ab && !json_is_null(ab), has_ae = ae && !json_is_null(ae);
    if ((has_ab && !json_is_boolean(ab)) || (has_ae && !json_is_boolean(ae)))
        return dorac_error(DORAC_E_FORMAT, "tokenizer_config: add_bos_token / add_eos_token must be true or false");
    if (!has_ab && !has_ae) return DORAC_OK;

    /* the new template: [bos] $A [eos]; a side whose key is absent keeps the
    ** special tokens that tokenizer.json's template has there */
    int32_t pre[64], post[64];
    size_t n_pre = 0, n_post = 0, k = 0;
    if (has_ab) {
        if (json_is_true(ab)) {
            if (bos_id < 0)
                return dorac_error(DORAC_E_FORMAT, "tokenizer_config: add_bos_token is true but bos_token is %s",
                                   bos ? "not a token" : "not set");
            pre[n_pre++] = bos_id;
        }
    } else {
        for (; k < tok->n_tmpl && !tok->tmpl[k].is_sequence; k++)
            for (size_t i = 0; i < tok->tmpl[k].n_ids && n_pre < 64; i++) pre[n_pre++] = tok->tmpl[k].ids[i];
    }
    if (has_ae) {
        if (json_is_true(ae)) {
            if (eos_id < 0)
                return dorac_error(DORAC_E_FORMAT, "tokenizer_config: add_eos_token is true but eos_token is %s",
                                   eos ? "not a token" : "not set");
            post[n_post++] = eos_id;
        }
    } else if (tok->has_template) {
        size_t last = tok->n_tmpl;
        while (last > 0 && !tok->tmpl[last - 1].is_sequence) last--;
        if (last > 0)
            for (size_t j = last; j < tok->n_tmpl; j++)
                for (size_t i = 0; i < tok->tmpl[j].n_ids && n_post < 64; i++) post[n_post++] = tok->tmpl[j].ids[i];
    }
    for (size_t j = 0; j < tok->n_tmpl; j++) free(tok->tmpl[j].ids);
    free(tok->tmpl);
    tok->tmpl = NULL;
    tok->n_tmpl = 0;
    tok->has_template = true;
    if (n_pre) DORAC_TRY(add_tmpl_item(tok, false, pre, n_pre));
    DORAC_TRY(add_tmpl_item(tok, true, NULL, 0));
    if (n_post) DORAC_TRY(add_tmpl_item(tok, false, post, n_post));
    return DORAC_OK;
}

/* BOS / EOS when the config did not name them (see tokenizer.h). */
static void guess_bos_eos(dorac_tokenizer *tok) {
    static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", "<bos>", "<|endoftext|>"};
    static const char *const eos_names[] = {"</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>"};
    if (tok->has_template && tok->n_tmpl > 0) {
        if (tok->bos_id < 0 && !tok->tmpl[0].is_sequence && tok->tmpl[0].n_ids)
            tok->bos_id = tok->tmpl[0].ids[0];
        const tok_template_item *last = &tok->tmpl[tok->n_tmpl - 1];
        if (tok->eos_id < 0 && tok->n_tmpl > 1 && !last->is_sequence && last->n_ids)
            tok->eos_id = last->ids[last->n_ids - 1];
    }
    for (size_t i = 0; i < 4; i++) {
        int32_t b = tok_strmap_get(&tok->added_map, bos_names[i], strlen(bos_names[i]));
        int32_t e = tok_strmap_get(&tok->added_map, eos_names[i], strlen(eos_names[i]));
        if (tok->bos_id < 0 && b >= 0 && dorac_tokenizer_is_special(tok, b)) tok->bos_id = b;
        if (tok->eos_id < 0 && e >= 0 && dorac_tokenizer_is_special(tok, e)) tok->eos_id = e;
    }
}

/* ---- loading ---------------------------------------------------------------- */

static int parse_json(const char *data, size_t len, const char *what, json_t **out) {
    json_error_t err;
    *out = json_loadb(data, len, JSON_ALLOW_NUL, &err);
    if (!*out)
        return dorac_error(DORAC_E_FORMAT, "%s: line %d column %d: %s", what, err.line, err.column, err.text);
    return DORAC_OK;
}

static int build(dorac_tokenizer *tok, json_t *root, json_t *cfg) {
    if (!json_is_object(root)) return dorac_error(DORAC_E_FORMAT, "expected a JSON object at the top");
    json_t *version = json_object_get(root, "version");
    if (version && !json_is_null(version) && (!json_is_string(version) || strcmp(json_string_value(version), "1.0")))
        return dorac_error(DORAC_E_UNSUPPORTED, "version: only tokenizer.json version \"1.0\" is known");
    json_t *model = json_object_get(root, "model");
    DORAC_TRY(load_model(tok, model));
    DORAC_TRY(load_merges(tok, model));
    DORAC_TRY(tok_bpe_finish(&tok->bpe));
    DORAC_TRY(build_ids(tok));
    DORAC_TRY(load_normalizer(tok, json_object_get(root, "normalizer"), "normalizer", 0));
    DORAC_TRY(load_pretokenizer(tok, json_object_get(root, "pre_tokenizer"), "pre_tokenizer", 0));
    tok->byte_level_last = tok->n_pretoks > 0 && tok->pretoks[tok->n_pretoks - 1].kind == TOK_PRE_BYTE_LEVEL;
    DORAC_TRY(load_decoder(tok, json_object_get(root, "decoder"), "decoder", 0));
    DORAC_TRY(load_post_processor(tok, json_object_get(root, "post_processor"), "post_processor", 0));
    DORAC_TRY(load_added(tok, json_object_get(root, "added_tokens")));
    DORAC_TRY(build_tries(tok));
    if (cfg) DORAC_TRY(load_config(tok, cfg));
    /* every id that encode can emit names a token */
    for (size_t k = 0; k < tok->n_tmpl; k++)
        for (size_t i = 0; i < tok->tmpl[k].n_ids; i++)
            if (tok->tmpl[k].ids[i] >= tok->n_ids)
                return dorac_error(DORAC_E_FORMAT, "post_processor: special token id %d names no token "
                                   "(the vocabulary has %d ids)", tok->tmpl[k].ids[i], tok->n_ids);
    guess_bos_eos(tok);
    return DORAC_OK;
}

int dorac_tokenizer_load_buffer(dorac_tokenizer **out, const char *json, size_t json_len,
                                const char *config, size_t config_len, const char *name) {
    if (!out) return dorac_error(DORAC_E_INVALID, "dorac_tokenizer_load_buffer: NULL out");
    *out = NULL;
    if (!name) name = "tokenizer.json";
    if (!json && json_len) return dorac_error(DORAC_E_INVALID, "dorac_tokenizer_load_buffer: NULL json");
    dorac_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory");
    tok->bos_id = tok->eos_id = -1;
    tok->shared = malloc(sizeof *tok->shared);
    int rc = tok->shared ? tok_state_init(tok->shared, true) : dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory");
    if (rc) {
        free(tok->shared);
        free(tok);
        return rc;
    }
    pthread_mutex_init(&tok->lock, NULL);
    json_t *root = NULL, *cfg = NULL;
    rc = parse_json(json ? json : "", json_len, name, &root);
    if (!rc && config) rc = parse_json(config, config_len, "tokenizer_config.json", &cfg);
    if (!rc) {
        rc = build(tok, root, cfg);
        if (rc) dorac_error_prefix(rc, "%s", name);
    }
    json_decref(root);
    json_decref(cfg);
    if (rc) {
        dorac_tokenizer_free(tok);
        return rc;
    }
    *out = tok;
    return DORAC_OK;
}

static int read_file(const char *path, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return dorac_error(DORAC_E_IO, "%s: cannot open: %s", path, strerror(errno));
    tok_buf b = {0};
    char chunk[65536];
    size_t got;
    int rc = DORAC_OK;
    while (!rc && (got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.n + got > MAX_FILE_BYTES) rc = dorac_error(DORAC_E_UNSUPPORTED, "%s: larger than 1 GiB", path);
        else rc = tok_buf_append(&b, chunk, got);
    }
    if (!rc && ferror(f)) rc = dorac_error(DORAC_E_IO, "%s: read failed: %s", path, strerror(errno));
    fclose(f);
    if (rc) {
        tok_buf_free(&b);
        return rc;
    }
    *data = b.p;
    *len = b.n;
    return DORAC_OK;
}

int dorac_tokenizer_load(dorac_tokenizer **out, const char *path, const char *config_path) {
    if (!out || !path) return dorac_error(DORAC_E_INVALID, "dorac_tokenizer_load: NULL argument");
    *out = NULL;
    char *json, *cfg = NULL;
    size_t len, cfg_len = 0;
    bool have_cfg = false;
    DORAC_TRY(read_file(path, &json, &len));
    if (config_path) {
        FILE *f = fopen(config_path, "rb");
        if (f) { /* a missing config is not an error: many folders have none */
            fclose(f);
            int rc = read_file(config_path, &cfg, &cfg_len);
            if (rc) {
                free(json);
                return rc;
            }
            have_cfg = true;
        }
    }
    /* an empty file reads as NULL data; it is still a (malformed) file */
    int rc = dorac_tokenizer_load_buffer(out, json ? json : "", len, have_cfg ? (cfg ? cfg : "") : NULL,
                                         cfg_len, path);
    free(json);
    free(cfg);
    return rc;
}

/* ---- freeing and accessors -------------------------------------------------- */

void dorac_tokenizer_free(dorac_tokenizer *tok) {
    if (!tok) return;
    tok_bpe_free(&tok->bpe);
    for (size_t i = 0; i < tok->n_norms; i++) {
        free(tok->norms[i].text);
        tok_regex_free(tok->norms[i].re);
    }
    free(tok->norms);
    for (size_t i = 0; i < tok->n_pretoks; i++)
        if (tok->pretoks[i].re != tok->gpt2_re) tok_regex_free(tok->pretoks[i].re);
    free(tok->pretoks);
    tok_regex_free(tok->gpt2_re);
    for (size_t i = 0; i < tok->n_decoders; i++) {
        free(tok->decoders[i].text);
        tok_regex_free(tok->decoders[i].re);
    }
    free(tok->decoders);
    for (size_t i = 0; i < tok->n_tmpl; i++) free(tok->tmpl[i].ids);
    free(tok->tmpl);
    for (size_t i = 0; i < tok->n_added; i++) {
        free(tok->added[i].content);
        free(tok->added[i].pattern);
    }
    free(tok->added);
    tok_strmap_free(&tok->added_map);
    tok_trie_free(&tok->trie_raw);
    tok_trie_free(&tok->trie_norm);
    free(tok->ids);
    tok_buf_free(&tok->model_strings);
    if (tok->shared) {
        tok_state_free(tok->shared);
        free(tok->shared);
        pthread_mutex_destroy(&tok->lock);
    }
    free(tok);
}

int32_t dorac_tokenizer_vocab_size(const dorac_tokenizer *tok) { return tok ? tok->n_ids : 0; }

int32_t dorac_tokenizer_token_to_id(const dorac_tokenizer *tok, const char *token, size_t len) {
    if (!tok || (!token && len)) return -1;
    int32_t id = tok_strmap_get(&tok->added_map, token ? token : "", len);
    return id >= 0 ? id : tok_strmap_get(&tok->bpe.vocab, token ? token : "", len);
}

const char *dorac_tokenizer_id_to_token(const dorac_tokenizer *tok, int32_t id, size_t *len) {
    if (!tok || id < 0 || id >= tok->n_ids) return NULL;
    const tok_id_info *info = &tok->ids[id];
    if (info->added >= 0) {
        if (len) *len = tok->added[info->added].content_len;
        return tok->added[info->added].content;
    }
    if (info->model_off < 0) return NULL;
    if (len) *len = info->model_len;
    return tok->model_strings.p + info->model_off;
}

bool dorac_tokenizer_is_special(const dorac_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || id >= tok->n_ids || tok->ids[id].added < 0) return false;
    return tok->added[tok->ids[id].added].special;
}

int32_t dorac_tokenizer_bos_id(const dorac_tokenizer *tok) { return tok ? tok->bos_id : -1; }
int32_t dorac_tokenizer_eos_id(const dorac_tokenizer *tok) { return tok ? tok->eos_id : -1; }
