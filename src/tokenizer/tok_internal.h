/*
** tok_internal.h — what the files of src/tokenizer/ share. Not for callers
** outside this folder: they use tokenizer.h.
**
** The tokenizer is built once by tok_load.c and never changes afterwards;
** everything that encode and decode write lives in a tok_state (scratch
** buffers, PCRE2 match data, the pre-token cache), so that a loaded
** tokenizer can be shared by threads (tok_encode.c hands out states).
**
** Text invariant: every string that reaches a regex, a normaliser or the
** BPE model is valid UTF-8. Input is repaired on entry (tok_utf8_repair),
** every transformation writes whole characters and every split falls on a
** character boundary. PCRE2 is therefore called with PCRE2_NO_UTF_CHECK.
*/
#ifndef DORAC_TOK_INTERNAL_H
#define DORAC_TOK_INTERNAL_H

#include <pcre2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

/* ------------------------------------------------------------------------ */
/* Buffers and piece lists (tok_text.c)                                     */
/* ------------------------------------------------------------------------ */

/* A growable byte buffer. p is NUL-terminated whenever n < cap. */
typedef struct tok_buf {
    char *p;
    size_t n;   /* bytes used */
    size_t cap; /* bytes allocated */
} tok_buf;

int tok_buf_reserve(tok_buf *b, size_t extra);
int tok_buf_append(tok_buf *b, const void *data, size_t len);
int tok_buf_append_cp(tok_buf *b, uint32_t cp); /* one code point as UTF-8 */
void tok_buf_free(tok_buf *b);

/* A piece of text on its way through the pipeline: a span of the list's
** text, or an added token that is already decided. */
typedef struct tok_piece {
    size_t off, len; /* bytes in the owning list's text */
    int32_t id;      /* >= 0: an added token, never split again; -1: text */
    bool at_origin;  /* starts at offset 0 of the input (Metaspace "first") */
} tok_piece;

typedef struct tok_pieces {
    tok_buf text;
    tok_piece *v;
    size_t n, cap;
} tok_pieces;

void tok_pieces_reset(tok_pieces *l);
void tok_pieces_free(tok_pieces *l);
/* Appends a piece whose text is copied into l->text. Empty text pieces are
** dropped, as tokenizers drops empty splits. */
int tok_pieces_push(tok_pieces *l, const char *s, size_t len, int32_t id, bool at_origin);
/* The same, keeping an empty piece (decoders keep empty tokens). */
int tok_pieces_push_keep(tok_pieces *l, const char *s, size_t len, int32_t id, bool at_origin);

/* A string → id hash map. Inserting a key twice keeps the later id (what
** a JSON object with a repeated key gives in serde and jansson). */
typedef struct tok_strmap {
    uint32_t *slots; /* entry index + 1; 0 = empty */
    size_t mask;     /* slots - 1, a power of two minus one */
    struct tok_strmap_entry {
        uint64_t hash;
        size_t off;  /* key in pool */
        size_t len;
        int32_t value;
    } *e;
    size_t n, cap;
    tok_buf pool;
} tok_strmap;

int tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t value);
int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t len); /* -1 if absent */
void tok_strmap_free(tok_strmap *m);
uint64_t tok_hash(const void *data, size_t len);

/* ------------------------------------------------------------------------ */
/* UTF-8 and Unicode properties (tok_unicode.c)                             */
/* ------------------------------------------------------------------------ */

/* Decodes the code point at s (valid UTF-8, at least one byte); *n gets its
** length in bytes. */
uint32_t tok_utf8_decode(const char *s, size_t *n);
/* Length of the UTF-8 sequence that lead byte c starts (1 for junk). */
size_t tok_utf8_len(unsigned char c);
/* Appends src to out with each maximal invalid subsequence replaced by
** U+FFFD (Unicode's "substitution of maximal subparts"). */
int tok_utf8_repair(tok_buf *out, const char *src, size_t len);
bool tok_utf8_valid(const char *s, size_t len);
bool tok_is_white_space(uint32_t cp);  /* Unicode White_Space (Rust is_whitespace) */
bool tok_is_word_char(uint32_t cp);    /* Rust regex \w */
bool tok_is_numeric(uint32_t cp);      /* Rust char::is_numeric: Nd, Nl, No */
bool tok_is_mark(uint32_t cp);           /* general category M (Mn, Mc, Me) */

/* GPT-2's byte ↔ character table: tok_byte_char[b] is the code point that
** stands for byte b; tok_char_byte(cp) is the byte or -1. */
extern const uint16_t tok_byte_char[256];
int tok_char_byte(uint32_t cp);

/* ------------------------------------------------------------------------ */
/* Regexes (tok_regex.c)                                                    */
/* ------------------------------------------------------------------------ */

typedef struct tok_regex {
    pcre2_code *code;
    bool jit;     /* JIT-compiled */
    char *source; /* the pattern as written in tokenizer.json, for messages */
} tok_regex;

/* Scratch that matching needs; one per thread (inside a tok_state). */
typedef struct tok_match_scratch {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
} tok_match_scratch;

/* Compiles an Oniguruma-style pattern (literal when is_literal). */
int tok_regex_compile(tok_regex **out, const char *pattern, size_t len, bool is_literal);
void tok_regex_free(tok_regex *re);

/* One match or gap, as tokenizers' Pattern::find_matches returns them. */
typedef struct tok_span {
    size_t start, end;
    bool is_match;
} tok_span;

typedef struct tok_spans {
    tok_span *v;
    size_t n, cap;
} tok_spans;

/* find_matches: the spans that cover s, matches found with Oniguruma's
** find_iter rules for empty matches. */
int tok_regex_find(const tok_regex *re, tok_match_scratch *ms, const char *s, size_t len,
                   tok_spans *out);
int tok_spans_push(tok_spans *sp, size_t start, size_t end, bool is_match);

/* ------------------------------------------------------------------------ */
/* Components                                                               */
/* ------------------------------------------------------------------------ */

typedef enum {
    TOK_NORM_PREPEND, TOK_NORM_REPLACE, TOK_NORM_NFC, TOK_NORM_NFD, TOK_NORM_NFKC,
    TOK_NORM_NFKD, TOK_NORM_LOWERCASE, TOK_NORM_STRIP, TOK_NORM_STRIP_ACCENTS,
    TOK_NORM_BYTE_LEVEL
} tok_norm_kind;

/* One normaliser; Sequences are flattened into the tokenizer's list. */
typedef struct tok_norm {
    tok_norm_kind kind;
    char *text;       /* Prepend: the prefix; Replace: the content */
    size_t text_len;
    tok_regex *re;    /* Replace: the pattern */
    bool left, right; /* Strip */
} tok_norm;

typedef enum {
    TOK_SPLIT_REMOVED, TOK_SPLIT_ISOLATED, TOK_SPLIT_MERGED_WITH_PREVIOUS,
    TOK_SPLIT_MERGED_WITH_NEXT, TOK_SPLIT_CONTIGUOUS
} tok_split_behavior;

typedef enum { TOK_PRE_BYTE_LEVEL, TOK_PRE_SPLIT, TOK_PRE_METASPACE, TOK_PRE_DIGITS } tok_pre_kind;
typedef enum { TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST, TOK_PREPEND_NEVER } tok_prepend_scheme;

typedef struct tok_pretok {
    tok_pre_kind kind;
    tok_regex *re;               /* Split; ByteLevel with use_regex (GPT-2's pattern) */
    tok_split_behavior behavior; /* Split */
    bool invert;                 /* Split */
    bool add_prefix_space;       /* ByteLevel */
    bool individual_digits;      /* Digits */
    uint32_t replacement;        /* Metaspace */
    tok_prepend_scheme prepend;  /* Metaspace */
    bool split;                  /* Metaspace */
} tok_pretok;

typedef enum {
    TOK_DEC_BYTE_LEVEL, TOK_DEC_REPLACE, TOK_DEC_BYTE_FALLBACK, TOK_DEC_FUSE, TOK_DEC_STRIP,
    TOK_DEC_METASPACE, TOK_DEC_BPE
} tok_dec_kind;

typedef struct tok_decoder {
    tok_dec_kind kind;
    tok_regex *re;              /* Replace */
    char *text;                 /* Replace: content; BPEDecoder: suffix */
    size_t text_len;
    uint32_t ch;                /* Strip: content; Metaspace: replacement */
    size_t start, stop;         /* Strip */
    tok_prepend_scheme prepend; /* Metaspace */
} tok_decoder;

/* The single-sequence template: special ids and $A slots, in order. */
typedef struct tok_template_item {
    bool is_sequence; /* $A */
    int32_t *ids;     /* special ids (not for $A) */
    size_t n_ids;
} tok_template_item;

/* ------------------------------------------------------------------------ */
/* BPE (tok_bpe.c)                                                          */
/* ------------------------------------------------------------------------ */

typedef struct tok_merge_slot {
    uint64_t key;    /* (left id << 32) | right id; UINT64_MAX = empty */
    uint32_t rank;   /* line of the merge; lower merges first */
    int32_t new_id;
} tok_merge_slot;

typedef struct tok_bpe {
    tok_strmap vocab;
    size_t n_vocab;          /* distinct strings in vocab (tokenizers' get_vocab_size) */
    tok_merge_slot *merges;
    size_t merge_mask;
    char *unk_token;         /* NULL: none */
    size_t unk_len;
    int32_t unk_id;          /* -1 when unk_token is absent from vocab */
    char *prefix, *suffix;   /* continuing_subword_prefix, end_of_word_suffix, or NULL */
    size_t prefix_len, suffix_len;
    bool fuse_unk, byte_fallback, ignore_merges;
    bool split_at_meta;      /* merges never join across "x|▁" (x not ▁): a pre-token may be
                                cut before each such ▁ and its parts encoded (and cached)
                                separately, with the same ids (see tok_bpe.c) */
    int32_t byte_fallback_id[256]; /* "<0xXX>" ids, -1 absent */
    int32_t byte_level_id[256];    /* id of GPT-2's char for each byte, -1 absent */
    int32_t ascii_id[128];         /* id of a one-character ASCII token, -1 absent */
} tok_bpe;

int tok_bpe_merge_lookup(const tok_bpe *m, int32_t a, int32_t b, uint32_t *rank, int32_t *new_id);
int tok_bpe_add_merge(tok_bpe *m, int32_t a, int32_t b, uint32_t rank, int32_t new_id);
int tok_bpe_finish(tok_bpe *m); /* fills the byte tables once vocab is in */
void tok_bpe_free(tok_bpe *m);

/* ------------------------------------------------------------------------ */
/* Added tokens (tok_added.c)                                               */
/* ------------------------------------------------------------------------ */

typedef struct tok_added {
    char *content;     /* as given */
    size_t content_len;
    char *pattern;     /* what is matched: content, or its normalised form */
    size_t pattern_len;
    int32_t id;
    bool single_word, lstrip, rstrip, normalized, special;
} tok_added;

/* A byte trie for leftmost-longest matching of many strings. */
typedef struct tok_trie {
    struct tok_trie_edge { uint64_t key; int32_t child; } *edges; /* key = node<<8 | byte */
    size_t edge_mask, n_edges;
    int32_t *terminal; /* per node: index into tok->added, or -1 */
    size_t n_nodes, cap_nodes;
    uint8_t first[32]; /* bitmap of first bytes */
} tok_trie;

int tok_trie_add(tok_trie *t, const char *s, size_t len, int32_t value);
void tok_trie_free(tok_trie *t);

/* ------------------------------------------------------------------------ */
/* Per-thread scratch (tok_encode.c)                                        */
/* ------------------------------------------------------------------------ */

typedef struct tok_cache_entry {
    uint64_t hash;
    uint32_t key_off, key_len;
    uint32_t ids_off, n_ids;
} tok_cache_entry;

typedef struct tok_state {
    tok_buf input;        /* the input after UTF-8 repair (when it needed one) */
    tok_pieces a, b;      /* the piece list and the next one */
    tok_buf n1, n2;       /* normaliser scratch */
    tok_buf word;         /* a pre-token in the model's characters */
    tok_spans spans;
    tok_match_scratch ms;
    struct tok_symbol { int32_t id; int32_t prev, next; uint8_t gone; } *sym;
    size_t sym_cap;
    struct tok_heap_item { uint32_t rank; uint32_t pos; int32_t new_id; } *heap;
    size_t heap_cap;
    int32_t *ids;         /* encode output */
    size_t n_ids, cap_ids;
    /* the pre-token cache (only in the shared state) */
    bool use_cache;
    uint32_t *cache_slots;
    size_t cache_mask;
    tok_cache_entry *cache_e;
    size_t cache_n, cache_cap;
    tok_buf cache_keys;
    int32_t *cache_ids;
    size_t cache_n_ids, cache_cap_ids;
} tok_state;

/* ------------------------------------------------------------------------ */
/* The tokenizer                                                            */
/* ------------------------------------------------------------------------ */

/* Per id: its model string and/or added token. */
typedef struct tok_id_info {
    int64_t model_off;  /* in model_strings, -1: not in the model's vocab */
    uint32_t model_len;
    int32_t added;      /* index into added[], -1: none */
} tok_id_info;

struct dorac_tokenizer {
    tok_bpe bpe;
    tok_norm *norms;       /* flattened Sequence */
    size_t n_norms;
    tok_pretok *pretoks;   /* flattened Sequence */
    size_t n_pretoks;
    bool byte_level_last;  /* the last pre-tokenizer is ByteLevel: its pieces stay raw
                              bytes and BPE maps them through byte_level_id[] */
    tok_decoder *decoders; /* flattened Sequence */
    size_t n_decoders;
    bool has_decoder;
    tok_template_item *tmpl;
    size_t n_tmpl;
    bool has_template;
    tok_added *added;
    size_t n_added;
    tok_strmap added_map;  /* content → id */
    tok_trie trie_raw, trie_norm; /* non-normalised / normalised patterns */
    bool has_raw, has_norm;
    tok_id_info *ids;      /* [n_ids] */
    int32_t n_ids;         /* max id + 1 */
    tok_buf model_strings; /* id → string of the model vocabulary */
    int32_t bos_id, eos_id;
    tok_regex *gpt2_re;    /* shared by ByteLevel pre-tokenizers with use_regex */
    pthread_mutex_t lock;  /* guards shared */
    tok_state *shared;     /* the state with the cache */
};

/* tok_normalize.c */
/* Runs every normaliser over s; *out points at the result, which lives in
** st (or is s itself) until the next call. */
int tok_normalize(const dorac_tokenizer *tok, tok_state *st, const char *s, size_t len,
                  const char **out, size_t *out_len);
/* tok_pretokenize.c: runs every pre-tokenizer over st->a. */
int tok_pretokenize(const dorac_tokenizer *tok, tok_state *st);
/* tok_added.c: cuts the added tokens of trie out of text (tokenizers'
** AddedVocabulary::find_matches) and appends the pieces to out. */
int tok_added_split(const dorac_tokenizer *tok, const tok_trie *trie, const char *text,
                    size_t len, bool at_origin, tok_pieces *out);
/* tok_bpe.c: appends the ids of one pre-token to st->ids. */
int tok_bpe_encode_word(const dorac_tokenizer *tok, tok_state *st, const char *s, size_t len);
/* tok_state */
int tok_state_init(tok_state *st, bool use_cache);
void tok_state_free(tok_state *st);
int tok_ids_push(tok_state *st, int32_t id);
/* tok_encode.c: a state for one call (the shared one when it is free);
** release it with tok_state_release. */
int tok_state_acquire(const dorac_tokenizer *tok, tok_state **st);
void tok_state_release(const dorac_tokenizer *tok, tok_state *st);

#endif
