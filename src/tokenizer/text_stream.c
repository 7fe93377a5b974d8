/*
** text_stream.c — incremental detokenization (see text_stream.h).
*/
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/size.h"
#include "tokenizer/text_stream.h"

/* held tokens after which an incomplete character is given up on */
#define MAX_HELD 16

int dorac_text_stream_init(dorac_text_stream *s, const dorac_tokenizer *tok, const int32_t *context,
                           size_t n_context, bool skip_special) {
    memset(s, 0, sizeof *s);
    s->tok = tok;
    s->skip_special = skip_special;
    s->cap = n_context + MAX_HELD + 8;
    s->ids = malloc(s->cap * sizeof *s->ids);
    if (!s->ids) return dorac_error(DORAC_E_NOMEM, "text stream: out of memory");
    if (n_context) memcpy(s->ids, context, n_context * sizeof *s->ids);
    s->n = s->read = n_context;
    return DORAC_OK;
}

void dorac_text_stream_free(dorac_text_stream *s) {
    free(s->ids);
    memset(s, 0, sizeof *s);
}

static bool ends_with_replacement(const char *t, size_t len) {
    return len >= 3 && (unsigned char)t[len - 3] == 0xEF && (unsigned char)t[len - 2] == 0xBF &&
           (unsigned char)t[len - 1] == 0xBD;
}

/* new text of the window beyond ids[0:read); hold: keep it back if it ends
** in an incomplete character. */
static int emit(dorac_text_stream *s, bool hold, char **piece, size_t *len) {
    *piece = NULL;
    *len = 0;
    char *printed = NULL, *full = NULL;
    size_t printed_len = 0, full_len = 0;
    int rc = dorac_tokenizer_decode(s->tok, s->ids, s->read, s->skip_special, &printed, &printed_len);
    if (!rc) rc = dorac_tokenizer_decode(s->tok, s->ids, s->n, s->skip_special, &full, &full_len);
    if (rc) {
        free(printed), free(full);
        return rc;
    }
    /* hand out the difference (maybe empty: tokens with no text) unless the
    ** text ends in an incomplete character or is shorter than before */
    bool give = !hold || (full_len >= printed_len && !ends_with_replacement(full, full_len));
    size_t out_len = give && full_len > printed_len ? full_len - printed_len : 0;
    if (give) {
        /* the window restarts at the tokens just printed */
        size_t keep = s->n - s->read;
        memmove(s->ids, s->ids + s->read, keep * sizeof *s->ids);
        s->n = keep;
        s->read = keep;
        if (out_len) memmove(full, full + printed_len, out_len);
    }
    full[out_len] = '\0';
    free(printed);
    *piece = full;
    *len = out_len;
    return DORAC_OK;
}

int dorac_text_stream_push(dorac_text_stream *s, int32_t id, char **piece, size_t *len) {
    *piece = NULL;
    *len = 0;
    if (s->n == s->cap) {
        size_t cap;
        if (!dorac_size_mul(s->cap, 2, &cap)) return dorac_error(DORAC_E_NOMEM, "text stream: too many ids");
        int32_t *ids = realloc(s->ids, cap * sizeof *ids);
        if (!ids) return dorac_error(DORAC_E_NOMEM, "text stream: out of memory");
        s->ids = ids;
        s->cap = cap;
    }
    s->ids[s->n++] = id;
    return emit(s, s->n - s->read < MAX_HELD, piece, len);
}

int dorac_text_stream_finish(dorac_text_stream *s, char **piece, size_t *len) {
    return emit(s, false, piece, len);
}
