/*
** tokenizer.h — Hugging Face tokenizer.json in C, with the ids that the
** `tokenizers` library (0.23) gives.
**
** What it reads: a tokenizer.json whose model is BPE (vocab, merges in either
** the "a b" or the ["a","b"] form, byte_fallback, fuse_unk, unk_token,
** ignore_merges, continuing_subword_prefix, end_of_word_suffix), with these
** components:
**   normalizers      Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD,
**                    Lowercase, Strip, StripAccents, ByteLevel
**   pre-tokenizers   Sequence, ByteLevel, Split, Metaspace, Digits
**   post-processors  TemplateProcessing, ByteLevel, RobertaProcessing,
**                    BertProcessing, Sequence
**   decoders         Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip,
**                    Metaspace, BPEDecoder
** plus added_tokens with their lstrip / rstrip / single_word / normalized /
** special flags. Anything else (a WordPiece or Unigram model, a Precompiled
** normalizer, BPE dropout > 0, ...) fails to load with DORAC_E_UNSUPPORTED
** and a message naming the component. Nothing is silently skipped.
**
** Encoding follows tokenizers step by step: added tokens are cut out of the
** raw text first (normalized ones after normalisation), each remaining piece
** is normalised and pre-tokenised, and each pre-token goes through BPE (the
** lowest-ranked merge first, leftmost on ties, through a priority queue; the
** results are cached per pre-token).
**
** Differences from tokenizers, all deliberate and documented:
**   - Invalid UTF-8 input is not an error. Each maximal invalid subsequence
**     becomes U+FFFD first, exactly what Python's bytes.decode("utf-8",
**     "replace") and Rust's String::from_utf8_lossy do, the two ways such
**     bytes reach tokenizers (which accepts only valid strings).
**   - The "truncation" and "padding" sections are ignored, as transformers
**     ignores them for tokenizer(text): training packs sequences itself.
**   - Regexes run on PCRE2 (UTF, UCP, JIT) instead of Oniguruma. `\s` and
**     `\S` are rewritten to Oniguruma's White_Space set, so the GPT-2, Llama-3
**     and Qwen2 patterns behave identically; `^`/`$` are line anchors as in
**     Oniguruma's Ruby syntax. Other syntax of a user's own pattern follows
**     PCRE2.
**   - Metaspace's prepend_scheme "first" prepends to the first piece of the
**     input (tokenizers asks whether the piece starts at original offset 0;
**     the two agree unless a normaliser inserts text before a split point).
**
** Threads: a loaded tokenizer may be shared. Encode and decode may run on
** several threads at once; one of them at a time uses the pre-token cache.
*/
#ifndef DORAC_TOKENIZER_H
#define DORAC_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dorac_tokenizer dorac_tokenizer;

/* Loads tokenizer_json_path and, when tokenizer_config_path is not NULL,
** reads add_bos_token / add_eos_token / bos_token / eos_token from it.
** A missing tokenizer_config file is not an error (pass NULL to skip it);
** a malformed one is.
**
** add_bos_token / add_eos_token, where present, replace the single-sequence
** template by [bos] $A [eos], as transformers 4.x's Llama tokenizer does;
** a key that is absent keeps what tokenizer.json's post-processor does on
** that side.
**
** On success *out owns the tokenizer (free it with dorac_tokenizer_free).
** On failure *out is NULL and the status is DORAC_E_IO (cannot read),
** DORAC_E_FORMAT (malformed, with the JSON line and column or the field),
** DORAC_E_UNSUPPORTED (a component dorac does not implement, named) or
** DORAC_E_NOMEM. */
int dorac_tokenizer_load(dorac_tokenizer **out, const char *tokenizer_json_path,
                         const char *tokenizer_config_path);

/* The same, from memory. config may be NULL. name is used in messages. */
int dorac_tokenizer_load_buffer(dorac_tokenizer **out, const char *json, size_t json_len,
                                const char *config, size_t config_len, const char *name);

/* Frees a tokenizer; NULL is allowed. */
void dorac_tokenizer_free(dorac_tokenizer *tok);

/* Encodes len bytes of text (any bytes: see invalid UTF-8 above; NUL bytes
** are ordinary characters). add_special applies the post-processor's
** template (BOS/EOS and the like), as tokenizers' add_special_tokens=True.
** On success *ids is a malloc'd array of *n ids (free() it; it may be NULL
** when *n is 0). On failure *ids is NULL, *n is 0. */
int dorac_tokenizer_encode(const dorac_tokenizer *tok, const char *text, size_t len,
                           bool add_special, int32_t **ids, size_t *n);

/* Decodes n ids into text, as tokenizers' decode(ids, skip_special_tokens):
** ids that name no token are skipped, special tokens are skipped when
** skip_special is true, and the decoder chain turns tokens into text
** (without a decoder, tokens are joined by single spaces). On success *text
** is a malloc'd, NUL-terminated string of *len bytes (free() it). */
int dorac_tokenizer_decode(const dorac_tokenizer *tok, const int32_t *ids, size_t n,
                           bool skip_special, char **text, size_t *len);

/* One more than the largest id of any token (model vocabulary and added
** tokens): an embedding needs at least this many rows. */
int32_t dorac_tokenizer_vocab_size(const dorac_tokenizer *tok);

/* The id of a token string (added tokens first, then the model's
** vocabulary), or -1. */
int32_t dorac_tokenizer_token_to_id(const dorac_tokenizer *tok, const char *token, size_t len);

/* The string of an id, or NULL. *len (when len is not NULL) gets its length;
** the string is owned by tok and NUL-terminated. */
const char *dorac_tokenizer_id_to_token(const dorac_tokenizer *tok, int32_t id, size_t *len);

/* Whether id is an added token marked special. */
bool dorac_tokenizer_is_special(const dorac_tokenizer *tok, int32_t id);

/* BOS / EOS ids, or -1. From tokenizer_config.json's bos_token / eos_token
** when given; otherwise the special token that the single template puts
** before (BOS) or after (EOS) the sequence; otherwise the first special
** added token with a well-known name ("<s>", "<|begin_of_text|>", "<bos>",
** "<|endoftext|>" for BOS; "</s>", "<|end_of_text|>", "<eos>",
** "<|endoftext|>" for EOS); otherwise -1. */
int32_t dorac_tokenizer_bos_id(const dorac_tokenizer *tok);
int32_t dorac_tokenizer_eos_id(const dorac_tokenizer *tok);

#endif
