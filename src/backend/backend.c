/*
** backend.c — small helpers shared by every user of the backend interface.
*/
#include "backend/backend.h"

#include <stdio.h>

#include "core/error.h"
#include "core/size.h"

dorac_tensor dorac_tensor_rows(const dorac_tensor *t, int64_t row0, int64_t n) {
    dorac_tensor v = *t;
    if (t->data) v.data = (char *)t->data + (size_t)(row0 * t->ld) * dorac_dtype_size(t->type);
    v.rows = n;
    return v;
}

size_t dorac_tensor_nbytes(dorac_dtype type, int64_t rows, int64_t cols) {
    size_t n;
    if (rows < 0 || cols < 0 || !dorac_size_mul3((size_t)rows, (size_t)cols, dorac_dtype_size(type), &n))
        return 0;
    return n;
}

int dorac_tensor_alloc(dorac_backend *be, dorac_tensor *t, dorac_dtype type, int64_t rows,
                       int64_t cols, const char *what) {
    *t = dorac_tensor_none(type);
    if (rows < 0 || cols < 0)
        return dorac_error(DORAC_E_INVALID, "%s: negative shape (%lld, %lld)", what,
                           (long long)rows, (long long)cols);
    size_t nbytes = dorac_tensor_nbytes(type, rows, cols);
    if (nbytes == 0 && rows != 0 && cols != 0)
        return dorac_error(DORAC_E_NOMEM, "%s: size (%lld, %lld) overflows", what,
                           (long long)rows, (long long)cols);
    void *p = be->alloc(be, nbytes ? nbytes : 1);
    if (!p) return dorac_error_prefix(DORAC_E_NOMEM, "%s (%lld x %lld)", what, (long long)rows, (long long)cols);
    *t = dorac_tensor_view(p, type, rows, cols);
    return DORAC_OK;
}

void dorac_tensor_free(dorac_backend *be, dorac_tensor *t) {
    if (t->data) be->free(be, t->data);
    *t = dorac_tensor_none(t->type);
}

const char *dorac_shape_str(const dorac_tensor *t, char *buf, size_t size) {
    snprintf(buf, size, "(%lld, %lld)", (long long)t->rows, (long long)t->cols);
    return buf;
}
