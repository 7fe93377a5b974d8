/*
** safetensors_write.c — writing safetensors files byte-for-byte as the
** reference library does, and sharded sets as transformers does (see
** safetensors.h for the layout rules).
**
** Invariants of a written file: header length is a multiple of 8; tensors
** are stored back to back from offset 0 in header order; the header is
** compact JSON that dorac's own reader and the reference reader accept.
*/
#include "io/safetensors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/size.h"
#include "io/atomic_file.h"
#include "io/fsutil.h"
#include "io/json_util.h"

#define ST_MAX_HEADER_BYTES 100000000u

/* Position of each dtype in the reference library's Dtype enum, which is
** ordered by alignment; files list tensors by descending position. */
static int dtype_rank(dorac_dtype t) {
    switch (t) {
    case DORAC_DTYPE_F16: return 13;
    case DORAC_DTYPE_BF16: return 14;
    case DORAC_DTYPE_F32: return 17;
    case DORAC_DTYPE_F64: return 19;
    default: return -1;
    }
}

/* A growable byte buffer for the header. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    int status; /* first failure, sticky */
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->status != DORAC_OK) return;
    size_t need;
    if (!dorac_size_add(b->n, n, &need) || need > ST_MAX_HEADER_BYTES + 8) {
        b->status = dorac_error(DORAC_E_INVALID, "safetensors header would exceed the 100 MB limit");
        return;
    }
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need) cap *= 2;
        char *grown = realloc(b->p, cap);
        if (!grown) {
            b->status = dorac_error(DORAC_E_NOMEM, "cannot allocate a %zu-byte header", cap);
            return;
        }
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n = need;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_u64(sbuf *b, uint64_t v) {
    char tmp[24];
    int len = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    sb_put(b, tmp, (size_t)len);
}

/* A JSON string escaped as serde_json escapes it: '"', '\\', and control
** characters (short forms for \b \t \n \f \r, else \u00xx in lower case);
** everything else, including non-ASCII UTF-8, as is. */
static void sb_json_string(sbuf *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[7];
        switch (*p) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\b': sb_put(b, "\\b", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\f': sb_put(b, "\\f", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        default:
            if (*p < 0x20) {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[*p >> 4];
                esc[5] = hex[*p & 15];
                sb_put(b, esc, 6);
            } else {
                sb_put(b, (const char *)p, 1);
            }
        }
    }
    sb_put(b, "\"", 1);
}

/* qsort has no context argument; thread-local so concurrent writers do not collide. */
static _Thread_local const dorac_st_write_tensor *sort_base;

static int cmp_write_order(const void *a, const void *b) {
    const dorac_st_write_tensor *x = &sort_base[*(const size_t *)a], *y = &sort_base[*(const size_t *)b];
    int rx = dtype_rank(x->dtype), ry = dtype_rank(y->dtype);
    if (rx != ry) return rx > ry ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(sort_base[*(const size_t *)a].name, sort_base[*(const size_t *)b].name);
}

/* Checks one tensor and stores its byte size. */
static int check_tensor(const dorac_st_write_tensor *t, size_t i, const char *path, size_t *nbytes) {
    if (!t->name)
        return dorac_error(DORAC_E_INVALID, "%s: tensor %zu has no name", path, i);
    if (!dorac_utf8_valid(t->name, strlen(t->name), NULL))
        return dorac_error(DORAC_E_INVALID, "%s: tensor %zu: name is not valid UTF-8", path, i);
    if (strcmp(t->name, "__metadata__") == 0)
        return dorac_error(DORAC_E_INVALID, "%s: '__metadata__' cannot name a tensor", path);
    if (dtype_rank(t->dtype) < 0)
        return dorac_error(DORAC_E_INVALID, "%s: tensor '%s': dtype %d cannot be written", path, t->name,
                           (int)t->dtype);
    if (t->n_dims < 0 || t->n_dims > DORAC_ST_MAX_DIMS)
        return dorac_error(DORAC_E_INVALID, "%s: tensor '%s': %d dimensions (0..%d allowed)", path, t->name,
                           t->n_dims, DORAC_ST_MAX_DIMS);
    size_t numel = 1;
    for (int d = 0; d < t->n_dims; d++) {
        if (t->shape[d] < 0)
            return dorac_error(DORAC_E_INVALID, "%s: tensor '%s': negative dimension %lld", path, t->name,
                               (long long)t->shape[d]);
        if ((uint64_t)t->shape[d] > SIZE_MAX || !dorac_size_mul(numel, (size_t)t->shape[d], &numel))
            return dorac_error(DORAC_E_INVALID, "%s: tensor '%s': element count overflows", path, t->name);
    }
    if (!dorac_size_mul(numel, dorac_dtype_size(t->dtype), nbytes))
        return dorac_error(DORAC_E_INVALID, "%s: tensor '%s': byte size overflows", path, t->name);
    if (*nbytes > 0 && !t->data)
        return dorac_error(DORAC_E_INVALID, "%s: tensor '%s': data is NULL", path, t->name);
    return DORAC_OK;
}

static int check_metadata(const char *const *kv, size_t n_pairs, const char *path) {
    if (n_pairs && !kv) return dorac_error(DORAC_E_INVALID, "%s: metadata pairs given but the array is NULL", path);
    for (size_t i = 0; i < 2 * n_pairs; i++) {
        if (!kv[i]) return dorac_error(DORAC_E_INVALID, "%s: metadata entry %zu is NULL", path, i);
        if (!dorac_utf8_valid(kv[i], strlen(kv[i]), NULL))
            return dorac_error(DORAC_E_INVALID, "%s: metadata entry %zu is not valid UTF-8", path, i);
    }
    for (size_t i = 0; i < n_pairs; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(kv[2 * i], kv[2 * j]) == 0)
                return dorac_error(DORAC_E_INVALID, "%s: metadata key '%s' given twice", path, kv[2 * i]);
    return DORAC_OK;
}

int dorac_safetensors_write(const char *path, const dorac_st_write_tensor *t, size_t n,
                            const char *const *metadata_kv, size_t n_metadata_pairs) {
    if (!path) return dorac_error(DORAC_E_INVALID, "dorac_safetensors_write: path is NULL");
    if (n && !t) return dorac_error(DORAC_E_INVALID, "%s: %zu tensors but the array is NULL", path, n);
    DORAC_TRY(check_metadata(metadata_kv, n_metadata_pairs, path));
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    size_t *nbytes = malloc((n ? n : 1) * sizeof *nbytes);
    sbuf h = {0};
    int rc = order && nbytes ? DORAC_OK : dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", path);
    for (size_t i = 0; i < n && rc == DORAC_OK; i++) {
        rc = check_tensor(&t[i], i, path, &nbytes[i]);
        order[i] = i;
    }
    if (rc == DORAC_OK) {
        sort_base = t;
        qsort(order, n, sizeof *order, cmp_name);
        for (size_t i = 1; i < n && rc == DORAC_OK; i++)
            if (strcmp(t[order[i]].name, t[order[i - 1]].name) == 0)
                rc = dorac_error(DORAC_E_INVALID, "%s: tensor '%s' given twice", path, t[order[i]].name);
        qsort(order, n, sizeof *order, cmp_write_order);
        sort_base = NULL;
    }
    if (rc != DORAC_OK) goto done;

    sb_put(&h, "{", 1);
    if (n_metadata_pairs > 0) {
        sb_str(&h, "\"__metadata__\":{");
        for (size_t i = 0; i < n_metadata_pairs; i++) {
            if (i) sb_put(&h, ",", 1);
            sb_json_string(&h, metadata_kv[2 * i]);
            sb_put(&h, ":", 1);
            sb_json_string(&h, metadata_kv[2 * i + 1]);
        }
        sb_str(&h, n ? "}," : "}");
    }
    uint64_t offset = 0;
    for (size_t k = 0; k < n; k++) {
        const dorac_st_write_tensor *x = &t[order[k]];
        if (k) sb_put(&h, ",", 1);
        sb_json_string(&h, x->name);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, dorac_dtype_name(x->dtype));
        sb_str(&h, "\",\"shape\":[");
        for (int d = 0; d < x->n_dims; d++) {
            if (d) sb_put(&h, ",", 1);
            sb_u64(&h, (uint64_t)x->shape[d]);
        }
        sb_str(&h, "],\"data_offsets\":[");
        sb_u64(&h, offset);
        sb_put(&h, ",", 1);
        if ((uint64_t)nbytes[order[k]] > UINT64_MAX - offset) {
            rc = dorac_error(DORAC_E_INVALID, "%s: total data size overflows", path);
            goto done;
        }
        offset += nbytes[order[k]];
        sb_u64(&h, offset);
        sb_str(&h, "]}");
    }
    sb_put(&h, "}", 1);
    while (h.n % 8 != 0) sb_put(&h, " ", 1);
    if ((rc = h.status) != DORAC_OK) goto done;

    uint8_t len_le[8];
    for (int i = 0; i < 8; i++) len_le[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    dorac_atomic_file *f;
    rc = dorac_atomic_file_open(&f, path);
    if (rc != DORAC_OK) goto done;
    dorac_atomic_file_write(f, len_le, 8);
    dorac_atomic_file_write(f, h.p, h.n);
    for (size_t k = 0; k < n; k++) dorac_atomic_file_write(f, t[order[k]].data, nbytes[order[k]]);
    rc = dorac_atomic_file_commit(f);
done:
    free(h.p);
    free(order);
    free(nbytes);
    return rc;
}

int dorac_safetensors_write_sharded(const char *dir, const char *basename, const dorac_st_write_tensor *t,
                                    size_t n, size_t max_shard_bytes, const char *const *metadata_kv,
                                    size_t n_metadata_pairs) {
    if (!dir || !basename || !basename[0] || strchr(basename, '/'))
        return dorac_error(DORAC_E_INVALID, "dorac_safetensors_write_sharded: bad folder or base name");
    if (n && !t) return dorac_error(DORAC_E_INVALID, "%s: %zu tensors but the array is NULL", dir, n);
    /* Replays huggingface_hub's split: tensors go into buckets; a bucket
    ** gets its shard number when it is appended to the shard list. An
    ** oversized tensor's bucket is appended at once, before the bucket still
    ** being filled, which is appended when it is full or at the end. */
    size_t *bucket_of = malloc((n ? n : 1) * sizeof *bucket_of);
    size_t *shard_num = malloc((n ? n : 1) * sizeof *shard_num); /* per bucket */
    dorac_st_write_tensor *group = malloc((n ? n : 1) * sizeof *group);
    json_t *index = NULL;
    char *text = NULL, *path = NULL;
    int rc = bucket_of && shard_num && group ? DORAC_OK : dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", dir);
    size_t n_buckets = 0, n_shards = 0, current = SIZE_MAX, current_bytes = 0;
    uint64_t total_size = 0, total_params = 0;
    for (size_t i = 0; i < n && rc == DORAC_OK; i++) {
        size_t nbytes;
        rc = check_tensor(&t[i], i, dir, &nbytes);
        if (rc != DORAC_OK) break;
        if ((uint64_t)nbytes > (uint64_t)INT64_MAX - total_size) {
            rc = dorac_error(DORAC_E_INVALID, "%s: total size overflows", dir);
            break;
        }
        total_size += nbytes;
        total_params += nbytes / dorac_dtype_size(t[i].dtype);
        if (nbytes > max_shard_bytes) {
            bucket_of[i] = n_buckets;
            shard_num[n_buckets++] = n_shards++;
            continue;
        }
        if (current != SIZE_MAX && current_bytes + nbytes > max_shard_bytes) {
            shard_num[current] = n_shards++;
            current = SIZE_MAX;
        }
        if (current == SIZE_MAX) {
            current = n_buckets++;
            current_bytes = 0;
        }
        bucket_of[i] = current;
        current_bytes += nbytes;
    }
    if (rc != DORAC_OK) goto done;
    if (current != SIZE_MAX) shard_num[current] = n_shards++;
    if (n_shards <= 1) {
        char *name = NULL;
        size_t len = strlen(basename) + sizeof ".safetensors";
        name = malloc(len);
        if (!name) {
            rc = dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", dir);
            goto done;
        }
        snprintf(name, len, "%s.safetensors", basename);
        rc = dorac_path_join(&path, dir, name);
        free(name);
        if (rc == DORAC_OK) rc = dorac_safetensors_write(path, t, n, metadata_kv, n_metadata_pairs);
        goto done;
    }
    index = json_object();
    json_t *meta = json_object(), *wm = json_object();
    if (!index || !meta || !wm || json_object_set_new(index, "metadata", meta) ||
        json_object_set_new(index, "weight_map", wm) ||
        json_object_set_new(meta, "total_parameters", json_integer((json_int_t)total_params)) ||
        json_object_set_new(meta, "total_size", json_integer((json_int_t)total_size))) {
        rc = dorac_error(DORAC_E_NOMEM, "%s: cannot build the index", dir);
        goto done;
    }
    for (size_t s = 0; s < n_shards && rc == DORAC_OK; s++) {
        char name[1024];
        int len = snprintf(name, sizeof name, "%s-%05zu-of-%05zu.safetensors", basename, s + 1, n_shards);
        if (len < 0 || (size_t)len >= sizeof name) {
            rc = dorac_error(DORAC_E_INVALID, "%s: base name too long", dir);
            break;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (shard_num[bucket_of[i]] != s) continue;
            group[k++] = t[i];
            if (json_object_set_new(wm, t[i].name, json_string(name))) {
                rc = dorac_error(DORAC_E_NOMEM, "%s: cannot build the index", dir);
                break;
            }
        }
        if (rc != DORAC_OK) break;
        free(path);
        path = NULL;
        rc = dorac_path_join(&path, dir, name);
        if (rc == DORAC_OK) rc = dorac_safetensors_write(path, group, k, metadata_kv, n_metadata_pairs);
    }
    if (rc != DORAC_OK) goto done;
    text = json_dumps(index, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    if (!text) {
        rc = dorac_error(DORAC_E_NOMEM, "%s: cannot serialise the index", dir);
        goto done;
    }
    {
        size_t tl = strlen(text);
        char *with_nl = realloc(text, tl + 2);
        if (!with_nl) {
            rc = dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", dir);
            goto done;
        }
        text = with_nl;
        text[tl] = '\n';
        text[tl + 1] = '\0';
        char iname[1024];
        int len = snprintf(iname, sizeof iname, "%s.safetensors.index.json", basename);
        if (len < 0 || (size_t)len >= sizeof iname) {
            rc = dorac_error(DORAC_E_INVALID, "%s: base name too long", dir);
            goto done;
        }
        free(path);
        path = NULL;
        rc = dorac_path_join(&path, dir, iname);
        if (rc == DORAC_OK) rc = dorac_atomic_write(path, text, tl + 1);
    }
done:
    json_decref(index);
    free(text);
    free(path);
    free(group);
    free(shard_num);
    free(bucket_of);
    return rc;
}
