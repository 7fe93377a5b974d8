/*
** tok_added.c — added tokens: cutting them out of the text before the
** model sees it.
**
** tokenizers finds added tokens with a leftmost-longest Aho-Corasick
** automaton, in two passes: tokens with normalized=false on the raw text,
** then tokens with normalized=true on each remaining piece after it has
** been normalised (their patterns are their normalised forms). A match is
** then vetted and widened by the token's flags:
**   single_word  dropped unless no word character (Rust regex \w) touches it
**   lstrip       takes the white space before it (not before the end of the
**                previous match)
**   rstrip       takes the white space after it
** A dropped match still consumes its bytes in the leftmost-longest scan.
**
** Here the automaton is a byte trie: leftmost-longest is "at each start
** position, from the left, the longest pattern that begins there", which the
** trie answers in one walk. A 256-bit table of first bytes skips the
** positions where no pattern starts.
*/
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/size.h"
#include "tokenizer/tok_internal.h"

static size_t edge_slot(uint64_t key, size_t mask) {
    key ^= key >> 30; /* splitmix64's finaliser */
    key *= 0xbf58476d1ce4e5b9ull;
    key ^= key >> 27;
    key *= 0x94d049bb133111ebull;
    key ^= key >> 31;
    return (size_t)key & mask;
}

static int32_t trie_child(const tok_trie *t, int32_t node, unsigned char byte) {
    if (!t->edges) return -1;
    uint64_t key = ((uint64_t)(uint32_t)node << 8) | byte;
    size_t j = edge_slot(key, t->edge_mask);
    while (t->edges[j].child >= 0) {
        if (t->edges[j].key == key) return t->edges[j].child;
        j = (j + 1) & t->edge_mask;
    }
    return -1;
}

static int trie_rehash(tok_trie *t, size_t slots) {
    struct tok_trie_edge *e = malloc(slots * sizeof *e);
    if (!e) return dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < slots; i++) e[i].child = -1;
    if (t->edges)
        for (size_t i = 0; i <= t->edge_mask; i++) {
            if (t->edges[i].child < 0) continue;
            size_t j = edge_slot(t->edges[i].key, slots - 1);
            while (e[j].child >= 0) j = (j + 1) & (slots - 1);
            e[j] = t->edges[i];
        }
    free(t->edges);
    t->edges = e;
    t->edge_mask = slots - 1;
    return DORAC_OK;
}

static int trie_new_node(tok_trie *t, int32_t *node) {
    if (t->n_nodes >= INT32_MAX - 1) return dorac_error(DORAC_E_UNSUPPORTED, "tokenizer: too many added tokens");
    if (t->n_nodes == t->cap_nodes) {
        size_t cap = t->cap_nodes ? t->cap_nodes * 2 : 64;
        int32_t *p = realloc(t->terminal, cap * sizeof *p);
        if (!p) return dorac_error(DORAC_E_NOMEM, "tokenizer: out of memory");
        t->terminal = p;
        t->cap_nodes = cap;
    }
    t->terminal[t->n_nodes] = -1;
    *node = (int32_t)t->n_nodes++;
    return DORAC_OK;
}

int tok_trie_add(tok_trie *t, const char *s, size_t len, int32_t value) {
    int32_t node;
    if (t->n_nodes == 0) DORAC_TRY(trie_new_node(t, &node));
    node = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)s[i];
        int32_t child = trie_child(t, node, b);
        if (child < 0) {
            if (!t->edges || (t->n_edges + 1) * 2 > t->edge_mask + 1)
                DORAC_TRY(trie_rehash(t, t->edges ? (t->edge_mask + 1) * 2 : 64));
            DORAC_TRY(trie_new_node(t, &child));
            uint64_t key = ((uint64_t)(uint32_t)node << 8) | b;
            size_t j = edge_slot(key, t->edge_mask);
            while (t->edges[j].child >= 0) j = (j + 1) & t->edge_mask;
            t->edges[j] = (struct tok_trie_edge){key, child};
            t->n_edges++;
        }
        node = child;
    }
    if (t->terminal[node] >= 0) return 1; /* the same pattern twice */
    t->terminal[node] = value;
    if (len) t->first[(unsigned char)s[0] >> 3] |= (uint8_t)(1u << ((unsigned char)s[0] & 7));
    return DORAC_OK;
}

void tok_trie_free(tok_trie *t) {
    free(t->edges);
    free(t->terminal);
    memset(t, 0, sizeof *t);
}

/* The longest pattern starting at s[pos]: its end and value, or 0. */
static int longest_at(const tok_trie *t, const char *s, size_t len, size_t pos, size_t *end,
                      int32_t *value) {
    int32_t node = 0, found = -1;
    for (size_t i = pos; i < len; i++) {
        node = trie_child(t, node, (unsigned char)s[i]);
        if (node < 0) break;
        if (t->terminal[node] >= 0) {
            found = t->terminal[node];
            *end = i + 1;
        }
    }
    if (found < 0) return 0;
    *value = found;
    return 1;
}

/* The code point that ends s[0..len) (len > 0, valid UTF-8). */
static uint32_t last_char(const char *s, size_t len, size_t *start) {
    size_t i = len - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    size_t n;
    *start = i;
    return tok_utf8_decode(s + i, &n);
}

int tok_added_split(const dorac_tokenizer *tok, const tok_trie *trie, const char *text,
                    size_t len, bool at_origin, tok_pieces *out) {
    size_t start_offset = 0, pos = 0;
    while (pos < len) {
        unsigned char b = (unsigned char)text[pos];
        size_t mend;
        int32_t idx;
        if (!(trie->first[b >> 3] & (1u << (b & 7))) || !longest_at(trie, text, len, pos, &mend, &idx)) {
            pos++;
            continue;
        }
        size_t start = pos, stop = mend;
        pos = mend; /* the scan goes on after the match, used or not */
        const tok_added *a = &tok->added[idx];
        if (a->single_word) {
            size_t n, cs;
            bool start_space = start == 0 || !tok_is_word_char(last_char(text, start, &cs));
            bool stop_space = stop == len || !tok_is_word_char(tok_utf8_decode(text + stop, &n));
            if (!start_space || !stop_space) continue;
        }
        if (a->lstrip) {
            size_t newstart = start, cs;
            while (newstart > 0 && tok_is_white_space(last_char(text, newstart, &cs))) newstart = cs;
            start = newstart > start_offset ? newstart : start_offset;
        }
        if (a->rstrip) {
            size_t n;
            while (stop < len && tok_is_white_space(tok_utf8_decode(text + stop, &n))) stop += n;
        }
        if (start > stop) start = stop; /* cannot happen with real tokens; never read backwards */
        if (start_offset < start)
            DORAC_TRY(tok_pieces_push(out, text + start_offset, start - start_offset, -1,
                                      at_origin && start_offset == 0));
        DORAC_TRY(tok_pieces_push(out, text + start, stop - start, a->id, false));
        start_offset = stop;
    }
    if (start_offset < len)
        DORAC_TRY(tok_pieces_push(out, text + start_offset, len - start_offset, -1,
                                  at_origin && start_offset == 0));
    return DORAC_OK;
}
