/*
** text_stream.h — incremental detokenization: the text of each new token
** as soon as it is complete, for printing generated tokens one by one.
**
** Decoding tokens one at a time is wrong in two ways. A byte-level BPE
** token can end in the middle of a UTF-8 sequence (one emoji is often two
** or three tokens), which decode() turns into U+FFFD; and decoders such as
** Metaspace treat the first token of a decode() call specially (they drop
** its leading space). So each step decodes a short window of ids twice,
** with and without the unprinted tokens, and hands out the difference (the
** method of vLLM's detokenize_incrementally):
**
**     printed = decode(ids[0:read])      new = decode(ids[0:n])
**     piece   = new[len(printed):]       unless new ends in U+FFFD
**
** A piece that ends in U+FFFD is held back until a later token completes
** the character, or until 16 tokens have been held (then it is invalid
** for good and comes out as decode() gives it); dorac_text_stream_finish
** hands out whatever is held. After a piece is handed out, the window
** restarts at the tokens just printed, which remain as context, so the
** work per token stays O(1).
**
** Invariant: the concatenation of all pieces equals decode() of every
** pushed id (after the context) whenever the decoder's output for a window
** starts with its output for the window's first tokens, which holds for
** the ByteLevel, ByteFallback, Fuse, Replace and Metaspace decoders on
** text that decodes to valid UTF-8.
*/
#ifndef DORAC_TEXT_STREAM_H
#define DORAC_TEXT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

typedef struct dorac_text_stream {
    const dorac_tokenizer *tok; /* not owned */
    bool skip_special;          /* as dorac_tokenizer_decode's skip_special */
    int32_t *ids;               /* (cap) the window: context, printed, then unprinted ids */
    size_t n, cap;              /* ids in the window, capacity */
    size_t read;                /* ids[0:read) are context or already printed */
} dorac_text_stream;

/* Starts a stream. context (n_context ids, may be 0) precedes the first
** pushed id and is never printed: pass the prompt's last few ids so that
** the first piece has the spacing it has in the whole text. */
int dorac_text_stream_init(dorac_text_stream *s, const dorac_tokenizer *tok, const int32_t *context,
                           size_t n_context, bool skip_special);
void dorac_text_stream_free(dorac_text_stream *s);

/* Appends id. *piece (malloc'd, NUL-terminated, free() it) receives the
** new text, *len its length; it is empty (len 0) when the text is held
** back. On failure *piece is NULL. */
int dorac_text_stream_push(dorac_text_stream *s, int32_t id, char **piece, size_t *len);

/* Hands out whatever text is held back (as decode() gives it). */
int dorac_text_stream_finish(dorac_text_stream *s, char **piece, size_t *len);

#endif
