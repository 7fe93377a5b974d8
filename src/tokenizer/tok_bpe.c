/*
** tok_bpe.c — the BPE model: one pre-token in, ids out.
**
** A pre-token is first cut into characters, each looked up in the
** vocabulary (with continuing_subword_prefix on all but the first and
** end_of_word_suffix on the last). A character that is not there becomes
** its "<0xXX>" byte tokens (byte_fallback), or the unk token (fused with a
** preceding unk when fuse_unk), or nothing. Then merges are applied: always
** the pair of lowest rank, the leftmost on ties, kept in a binary heap so
** that a word of n symbols costs O(n log n), not a rescan per merge. Heap
** entries go stale when a neighbour merges; an entry is used only if the
** pair at its position still maps to the same new token (tokenizers'
** Word::merge_all, whose order this reproduces exactly).
**
** With ignore_merges, a pre-token that is itself in the vocabulary is that
** one token. SentencePiece-style tokenizers, whose whole input is one
** pre-token, are cut into words first where that provably changes nothing
** (tok_bpe_encode_word). Results for pre-tokens shorter than 256 bytes are cached in the
** state (the same text always gives the same ids).
**
** When the tokenizer's last pre-tokenizer is ByteLevel, pre-tokens arrive as
** the raw bytes and byte_level_id[] gives each byte's character token
** directly, so GPT-2's byte-to-character strings are built only for
** ignore_merges lookups and for the rare byte that is not in the vocabulary.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/size.h"
#include "tokenizer/tok_internal.h"

#define CACHE_MAX_KEY 256         /* tokenizers caches words shorter than this */
#define CACHE_MAX_ENTRIES 65536   /* cleared when full */
#define CACHE_MAX_IDS (1u << 22)

/* splitmix64's finaliser: every bit of both ids reaches the slot bits (a
** plain multiply leaves the left id out of the low bits, and clusters). */
static size_t merge_slot(uint64_t key, size_t mask) {
    key ^= key >> 30;
    key *= 0xbf58476d1ce4e5b9ull;
    key ^= key >> 27;
    key *= 0x94d049bb133111ebull;
    key ^= key >> 31;
    return (size_t)key & mask;
}

int tok_bpe_add_merge(tok_bpe *m, int32_t a, int32_t b, uint32_t rank, int32_t new_id) {
    /* m->merges is sized by the caller (tok_load.c) for every merge line */
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t j = merge_slot(key, m->merge_mask);
    while (m->merges[j].key != UINT64_MAX && m->merges[j].key != key) j = (j + 1) & m->merge_mask;
    /* a repeated pair keeps the later line, as tokenizers' HashMap collect does */
    m->merges[j] = (tok_merge_slot){.key = key, .rank = rank, .new_id = new_id};
    return DORAC_OK;
}

int tok_bpe_merge_lookup(const tok_bpe *m, int32_t a, int32_t b, uint32_t *rank, int32_t *new_id) {
    if (!m->merges) return 0;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t j = merge_slot(key, m->merge_mask);
    while (m->merges[j].key != UINT64_MAX) {
        if (m->merges[j].key == key) {
            *rank = m->merges[j].rank;
            *new_id = m->merges[j].new_id;
            return 1;
        }
        j = (j + 1) & m->merge_mask;
    }
    return 0;
}

int tok_bpe_finish(tok_bpe *m) {
    char s[8];
    for (int b = 0; b < 256; b++) {
        snprintf(s, sizeof s, "<0x%02X>", b);
        m->byte_fallback_id[b] = tok_strmap_get(&m->vocab, s, 6);
        tok_buf t = {0};
        DORAC_TRY(tok_buf_append_cp(&t, tok_byte_char[b]));
        m->byte_level_id[b] = tok_strmap_get(&m->vocab, t.p, t.n);
        tok_buf_free(&t);
    }
    for (int c = 0; c < 128; c++) {
        char ch = (char)c;
        m->ascii_id[c] = tok_strmap_get(&m->vocab, &ch, 1);
    }
    m->unk_id = m->unk_token ? tok_strmap_get(&m->vocab, m->unk_token, m->unk_len) : -1;
    return DORAC_OK;
}

void tok_bpe_free(tok_bpe *m) {
    tok_strmap_free(&m->vocab);
    free(m->merges);
    free(m->unk_token);
    free(m->prefix);
    free(m->suffix);
    memset(m, 0, sizeof *m);
}

/* ---- the word being merged -------------------------------------------------- */

static int sym_push(tok_state *st, size_t *n, int32_t id) {
    if (*n >= st->sym_cap) {
        size_t cap = st->sym_cap ? st->sym_cap * 2 : 64, bytes;
        if (!dorac_size_mul(cap, sizeof *st->sym, &bytes)) return dorac_error(DORAC_E_NOMEM, "tokenizer: size overflow");
        void *p = realloc(st->sym, bytes);
        if (!p) return dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory");
        st->sym = p;
        st->sym_cap = cap;
    }
    st->sym[*n] = (struct tok_symbol){.id = id, .prev = (int32_t)*n - 1, .next = -1, .gone = 0};
    if (*n > 0) st->sym[*n - 1].next = (int32_t)*n;
    (*n)++;
    return DORAC_OK;
}

/* (rank, pos) ordering: lower rank first, then lower position. */
static bool heap_less(const struct tok_heap_item *a, const struct tok_heap_item *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static int heap_push(tok_state *st, size_t *n, struct tok_heap_item it) {
    if (*n >= st->heap_cap) {
        size_t cap = st->heap_cap ? st->heap_cap * 2 : 64, bytes;
        if (!dorac_size_mul(cap, sizeof *st->heap, &bytes)) return dorac_error(DORAC_E_NOMEM, "tokenizer: size overflow");
        void *p = realloc(st->heap, bytes);
        if (!p) return dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory");
        st->heap = p;
        st->heap_cap = cap;
    }
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(&it, &st->heap[parent])) break;
        st->heap[i] = st->heap[parent];
        i = parent;
    }
    st->heap[i] = it;
    return DORAC_OK;
}

static struct tok_heap_item heap_pop(tok_state *st, size_t *n) {
    struct tok_heap_item top = st->heap[0], last = st->heap[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct tok_heap_item *best = &last;
        if (l < *n && heap_less(&st->heap[l], best)) {
            m = l;
            best = &st->heap[l];
        }
        if (r < *n && heap_less(&st->heap[r], best)) m = r;
        if (m == i) break;
        st->heap[i] = st->heap[m];
        i = m;
    }
    if (*n > 0) st->heap[i] = last;
    return top;
}

static int merge_all(const tok_bpe *m, tok_state *st, size_t n_sym) {
    size_t n_heap = 0;
    uint32_t rank;
    int32_t new_id;
    for (size_t i = 0; i + 1 < n_sym; i++)
        if (tok_bpe_merge_lookup(m, st->sym[i].id, st->sym[i + 1].id, &rank, &new_id))
            DORAC_TRY(heap_push(st, &n_heap, (struct tok_heap_item){rank, (uint32_t)i, new_id}));
    while (n_heap > 0) {
        struct tok_heap_item top = heap_pop(st, &n_heap);
        struct tok_symbol *cur = &st->sym[top.pos];
        if (cur->gone || cur->next < 0) continue;
        int32_t next_pos = cur->next;
        struct tok_symbol right = st->sym[next_pos];
        if (!tok_bpe_merge_lookup(m, cur->id, right.id, &rank, &new_id) || new_id != top.new_id)
            continue; /* stale: a neighbour has merged since */
        cur->id = top.new_id;
        cur->next = right.next;
        st->sym[next_pos].gone = 1;
        if (right.next >= 0) st->sym[right.next].prev = (int32_t)top.pos;
        if (cur->prev >= 0 && tok_bpe_merge_lookup(m, st->sym[cur->prev].id, cur->id, &rank, &new_id))
            DORAC_TRY(heap_push(st, &n_heap, (struct tok_heap_item){rank, (uint32_t)cur->prev, new_id}));
        cur = &st->sym[top.pos]; /* heap_push may not move sym, but stay safe */
        if (cur->next >= 0 && tok_bpe_merge_lookup(m, cur->id, st->sym[cur->next].id, &rank, &new_id))
            DORAC_TRY(heap_push(st, &n_heap, (struct tok_heap_item){rank, top.pos, new_id}));
    }
    return DORAC_OK;
}

/* Looks up one character (cs, clen) with the prefix / suffix that its place
** in the word calls for; byte is the raw byte in byte-level mode, or -1. */
static int32_t char_id(const tok_bpe *m, tok_state *st, const char *cs, size_t clen, int byte,
                       bool first, bool last, const char **key, size_t *key_len) {
    bool pre = !first && m->prefix, suf = last && m->suffix;
    if (!pre && !suf) {
        *key = cs;
        *key_len = clen;
        if (byte >= 0) return m->byte_level_id[byte];
        if (clen == 1) return m->ascii_id[(unsigned char)cs[0]];
        return tok_strmap_get(&m->vocab, cs, clen);
    }
    st->word.n = 0;
    if ((pre && tok_buf_append(&st->word, m->prefix, m->prefix_len)) ||
        tok_buf_append(&st->word, cs, clen) ||
        (suf && tok_buf_append(&st->word, m->suffix, m->suffix_len))) {
        *key = NULL;
        return -2;
    }
    *key = st->word.p;
    *key_len = st->word.n;
    return tok_strmap_get(&m->vocab, st->word.p, st->word.n);
}

/* tokenizers' BPE::merge_word, then the ids appended to st->ids. */
static int merge_word(const dorac_tokenizer *tok, tok_state *st, const char *s, size_t len) {
    const tok_bpe *m = &tok->bpe;
    bool byte_level = tok->byte_level_last;
    size_t n_sym = 0;
    int32_t pending_unk = -1; /* an unk not yet added (fuse_unk extends it) */
    size_t i = 0;
    while (i < len) {
        char mapped[4];
        const char *cs;
        size_t clen;
        int byte = -1;
        if (byte_level) {
            byte = (unsigned char)s[i];
            uint32_t cp = tok_byte_char[byte];
            if (cp < 0x80) {
                mapped[0] = (char)cp;
                clen = 1;
            } else {
                mapped[0] = (char)(0xC0 | (cp >> 6));
                mapped[1] = (char)(0x80 | (cp & 0x3F));
                clen = 2;
            }
            cs = mapped;
            i += 1;
        } else {
            clen = tok_utf8_len((unsigned char)s[i]);
            if (clen > len - i) clen = len - i;
            cs = s + i;
            i += clen;
        }
        bool first = cs == mapped ? i == 1 : cs == s, last = i >= len;
        const char *key;
        size_t key_len;
        int32_t id = char_id(m, st, cs, clen, byte, first, last, &key, &key_len);
        if (id == -2) return dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory");
        if (id >= 0) {
            if (pending_unk >= 0) DORAC_TRY(sym_push(st, &n_sym, pending_unk));
            pending_unk = -1;
            DORAC_TRY(sym_push(st, &n_sym, id));
            continue;
        }
        if (m->byte_fallback) {
            bool all = true;
            for (size_t k = 0; k < key_len && all; k++) all = m->byte_fallback_id[(unsigned char)key[k]] >= 0;
            if (all) {
                /* tokenizers adds these without flushing a pending unk */
                for (size_t k = 0; k < key_len; k++)
                    DORAC_TRY(sym_push(st, &n_sym, m->byte_fallback_id[(unsigned char)key[k]]));
                continue;
            }
        }
        if (m->unk_token) {
            if (m->unk_id < 0)
                return dorac_error(DORAC_E_FORMAT, "tokenizer: unk_token '%.100s' is not in the vocabulary",
                                   m->unk_token);
            if (pending_unk >= 0 && !m->fuse_unk) DORAC_TRY(sym_push(st, &n_sym, pending_unk));
            pending_unk = m->unk_id;
        }
        /* no unk token: the character is dropped, as tokenizers does */
    }
    if (pending_unk >= 0) DORAC_TRY(sym_push(st, &n_sym, pending_unk));
    DORAC_TRY(merge_all(m, st, n_sym));
    for (size_t k = 0; k < n_sym; k++)
        if (!st->sym[k].gone) DORAC_TRY(tok_ids_push(st, st->sym[k].id));
    return DORAC_OK;
}

/* ---- the pre-token cache ------------------------------------------------- */

static void cache_clear(tok_state *st) {
    if (st->cache_slots) memset(st->cache_slots, 0, (st->cache_mask + 1) * sizeof *st->cache_slots);
    st->cache_n = 0;
    st->cache_keys.n = 0;
    st->cache_n_ids = 0;
}

static bool cache_get(tok_state *st, const char *s, size_t len, uint64_t h) {
    if (!st->cache_slots) return false;
    size_t j = (size_t)h & st->cache_mask;
    while (st->cache_slots[j]) {
        const tok_cache_entry *e = &st->cache_e[st->cache_slots[j] - 1];
        if (e->hash == h && e->key_len == len && !memcmp(st->cache_keys.p + e->key_off, s, len)) {
            for (uint32_t k = 0; k < e->n_ids; k++)
                if (tok_ids_push(st, st->cache_ids[e->ids_off + k])) return false;
            return true;
        }
        j = (j + 1) & st->cache_mask;
    }
    return false;
}

/* Stores ids[from..] for s; a failure only means the word is not cached. */
static void cache_put(tok_state *st, const char *s, size_t len, uint64_t h, size_t from) {
    size_t n_ids = st->n_ids - from;
    if (!st->cache_slots) {
        st->cache_slots = calloc(2 * CACHE_MAX_ENTRIES, sizeof *st->cache_slots);
        st->cache_e = malloc(CACHE_MAX_ENTRIES * sizeof *st->cache_e);
        if (!st->cache_slots || !st->cache_e) {
            free(st->cache_slots);
            free(st->cache_e);
            st->cache_slots = NULL;
            st->cache_e = NULL;
            return;
        }
        st->cache_mask = 2 * CACHE_MAX_ENTRIES - 1;
        st->cache_cap = CACHE_MAX_ENTRIES;
    }
    if (st->cache_n >= CACHE_MAX_ENTRIES || st->cache_n_ids + n_ids > CACHE_MAX_IDS) cache_clear(st);
    if (st->cache_n_ids + n_ids > st->cache_cap_ids) {
        size_t cap = st->cache_cap_ids ? st->cache_cap_ids : 4096;
        while (cap < st->cache_n_ids + n_ids) cap *= 2;
        int32_t *p = realloc(st->cache_ids, cap * sizeof *p);
        if (!p) return;
        st->cache_ids = p;
        st->cache_cap_ids = cap;
    }
    size_t key_off = st->cache_keys.n;
    if (tok_buf_append(&st->cache_keys, s, len)) return;
    if (n_ids) memcpy(st->cache_ids + st->cache_n_ids, st->ids + from, n_ids * sizeof *st->ids);
    st->cache_e[st->cache_n] = (tok_cache_entry){.hash = h, .key_off = (uint32_t)key_off,
                                                 .key_len = (uint32_t)len,
                                                 .ids_off = (uint32_t)st->cache_n_ids,
                                                 .n_ids = (uint32_t)n_ids};
    size_t j = (size_t)h & st->cache_mask;
    while (st->cache_slots[j]) j = (j + 1) & st->cache_mask;
    st->cache_slots[j] = (uint32_t)(++st->cache_n);
    st->cache_n_ids += n_ids;
}

/* One pre-token (or one part of it): the cache, else ignore_merges, else merges. */
static int encode_part(const dorac_tokenizer *tok, tok_state *st, const char *s, size_t len) {
    if (len == 0) return DORAC_OK;
    bool cacheable = st->use_cache && len < CACHE_MAX_KEY;
    uint64_t h = 0;
    if (cacheable) {
        h = tok_hash(s, len);
        if (cache_get(st, s, len, h)) return DORAC_OK;
    }
    size_t from = st->n_ids;
    const tok_bpe *m = &tok->bpe;
    bool done = false;
    if (m->ignore_merges) {
        const char *w = s;
        size_t wlen = len;
        if (tok->byte_level_last) {
            st->word.n = 0;
            for (size_t i = 0; i < len; i++)
                DORAC_TRY(tok_buf_append_cp(&st->word, tok_byte_char[(unsigned char)s[i]]));
            w = st->word.p;
            wlen = st->word.n;
        }
        int32_t id = tok_strmap_get(&m->vocab, w, wlen);
        if (id >= 0) {
            DORAC_TRY(tok_ids_push(st, id));
            done = true;
        }
    }
    if (!done) DORAC_TRY(merge_word(tok, st, s, len));
    if (cacheable) cache_put(st, s, len, h, from);
    return DORAC_OK;
}

int tok_bpe_encode_word(const dorac_tokenizer *tok, tok_state *st, const char *s, size_t len) {
    if (!tok->bpe.split_at_meta || tok->byte_level_last) return encode_part(tok, st, s, len);
    /* Cut before every ▁ that follows another character than ▁. The symbol
    ** left of such a cut always ends with that character and the one on the
    ** right starts with ▁; tok_load.c checked that no merge joins such a
    ** pair, so BPE never crosses the cut and the parts can be encoded (and
    ** cached) one by one. This is what makes SentencePiece-style tokenizers,
    ** which have no pre-tokenizer, as fast as the others. */
    size_t start = 0;
    for (size_t i = 3; i + 3 <= len; i++) {
        if (memcmp(s + i, "\xE2\x96\x81", 3) || !memcmp(s + i - 3, "\xE2\x96\x81", 3)) continue;
        DORAC_TRY(encode_part(tok, st, s + start, i - start));
        start = i;
    }
    return encode_part(tok, st, s + start, len - start);
}
