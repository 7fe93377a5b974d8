/*
** save.c — a model as a Hugging Face folder that transformers loads as it
** is: the source folder's config.json and tokenizer/generation files copied
** verbatim, and the weights as safetensors in the state-dict names and
** layouts transformers expects (GPT-2's Conv1D weights transposed back to
** (in, out); a tied lm_head not written, as transformers does), sharded
** with an index when larger than the shard size.
**
** The folder is built under a temporary name and renamed into place only
** when complete, so a failure or a kill leaves no partial folder.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/fsutil.h"
#include "io/safetensors.h"
#include "model/model_internal.h"

/* Files copied from the source folder when present. */
static const char *const COPIED_FILES[] = {
    "config.json",           "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "tokenizer.model",      "vocab.json",     "merges.txt",
};

/* config.json must exist in src_dir; the others are copied when present. */
static int copy_files(const char *src_dir, const char *tmp) {
    char src[4352], dst[4352];
    for (size_t i = 0; i < sizeof COPIED_FILES / sizeof COPIED_FILES[0]; i++) {
        snprintf(src, sizeof src, "%s/%s", src_dir, COPIED_FILES[i]);
        if (!dorac_is_file(src)) {
            if (i == 0) return dorac_error(DORAC_E_IO, "%s: missing, cannot write a loadable model folder", src);
            continue;
        }
        snprintf(dst, sizeof dst, "%s/%s", tmp, COPIED_FILES[i]);
        DORAC_TRY(dorac_atomic_copy_file(src, dst));
    }
    return DORAC_OK;
}

/* Host copies of every parameter in dtype and the file layout. */
static int gather(dorac_model *m, dorac_dtype dtype, dorac_st_write_tensor *t, void **bufs) {
    size_t es = dorac_dtype_size(dtype);
    for (size_t i = 0; i < m->n_params; i++) {
        dorac_model_param *p = &m->params[i];
        int64_t rows = p->w.rows, cols = p->w.cols;
        size_t n = (size_t)(rows * cols);
        float *f = malloc(n * sizeof *f);
        bufs[i] = malloc(n * es);
        if (!f || !bufs[i]) {
            free(f);
            return dorac_error(DORAC_E_NOMEM, "save: out of memory for '%s'", p->name);
        }
        int rc = m->be->download(m->be, f, DORAC_DTYPE_F32, &p->w);
        if (!rc && p->transposed_at_load) { /* (out, in) -> the file's (in, out) */
            float *tr = malloc(n * sizeof *tr);
            if (!tr) rc = dorac_error(DORAC_E_NOMEM, "save: out of memory");
            for (int64_t o = 0; !rc && o < rows; o++)
                for (int64_t k = 0; k < cols; k++) tr[k * rows + o] = f[o * cols + k];
            if (!rc) memcpy(f, tr, n * sizeof *f);
            free(tr);
        }
        if (!rc) dorac_convert(bufs[i], dtype, f, DORAC_DTYPE_F32, n);
        free(f);
        DORAC_TRY(rc);
        t[i].name = p->name;
        t[i].dtype = dtype;
        t[i].data = bufs[i];
        if (rows == 1) {
            t[i].n_dims = 1;
            t[i].shape[0] = cols;
        } else {
            t[i].n_dims = 2;
            t[i].shape[0] = p->transposed_at_load ? cols : rows;
            t[i].shape[1] = p->transposed_at_load ? rows : cols;
        }
    }
    return DORAC_OK;
}

int dorac_model_write(dorac_model *m, const char *dir, dorac_dtype dtype, const char *src_dir,
                      size_t max_shard_bytes) {
    if (dtype != DORAC_DTYPE_F32 && dtype != DORAC_DTYPE_BF16 && dtype != DORAC_DTYPE_F16)
        return dorac_error(DORAC_E_INVALID, "save: dtype %s is not one of F32, BF16, F16", dorac_dtype_name(dtype));
    dorac_st_write_tensor *t = calloc(m->n_params, sizeof *t);
    void **bufs = calloc(m->n_params, sizeof *bufs);
    int rc = (!t || !bufs) ? dorac_error(DORAC_E_NOMEM, "save: out of memory") : DORAC_OK;
    if (!rc) rc = gather(m, dtype, t, bufs);
    if (!rc && src_dir) rc = copy_files(src_dir, dir);
    if (!rc) {
        const char *meta[] = {"format", "pt"};
        rc = dorac_safetensors_write_sharded(dir, "model", t, m->n_params, max_shard_bytes, meta, 1);
    }
    for (size_t i = 0; bufs && i < m->n_params; i++) free(bufs[i]);
    free(bufs);
    free(t);
    return rc;
}

int dorac_model_save(dorac_model *m, const char *dir, dorac_dtype dtype, const char *src_dir,
                     size_t max_shard_bytes) {
    char tmp[4096];
    DORAC_TRY(dorac_atomic_dir_begin(tmp, sizeof tmp, dir));
    int rc = dorac_model_write(m, tmp, dtype, src_dir, max_shard_bytes);
    if (!rc) rc = dorac_atomic_dir_commit(tmp, dir);
    else dorac_atomic_dir_abort(tmp);
    return rc;
}
