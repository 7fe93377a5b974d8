/*
** safetensors.c — the safetensors reader: mmap, header validation, sharded
** sets, conversion on read (see safetensors.h for the rules it enforces).
**
** Invariants once dorac_safetensors_open returns DORAC_OK:
**   - every tensor's [data, data + nbytes) lies inside its file's data
**     section, and nbytes == numel × element size with no overflow anywhere;
**   - no two tensors of one file overlap, and names are unique across the set;
**   - by_name is a permutation of the tensor indices sorted by strcmp(name).
*/
#define _POSIX_C_SOURCE 200809L

#include "io/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/size.h"
#include "io/fsutil.h"
#include "io/json_util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "dorac reads safetensors data in place and needs a little-endian host"
#endif

/* The reference library refuses headers above 100 MB; so do we. */
#define ST_MAX_HEADER_BYTES 100000000ull
/* An index.json is a name -> file map; 256 MB allows ~millions of tensors. */
#define ST_MAX_INDEX_BYTES ((size_t)256 << 20)

/* Every dtype the reference library knows, with its size in bits, in the
** reference enum's order (which is also its on-disk sort order). */
typedef struct st_dtype_info {
    const char *name;
    unsigned bits;
    int dorac; /* dorac_dtype, or -1 when dorac cannot read it */
} st_dtype_info;

static const st_dtype_info st_dtypes[] = {
    {"BOOL", 8, -1},         {"F4", 4, -1},
    {"F6_E2M3", 6, -1},      {"F6_E3M2", 6, -1},
    {"U8", 8, -1},           {"I8", 8, -1},
    {"F8_E5M2", 8, -1},      {"F8_E4M3", 8, -1},
    {"F8_E8M0", 8, -1},      {"F8_E4M3FNUZ", 8, -1},
    {"F8_E5M2FNUZ", 8, -1},  {"I16", 16, -1},
    {"U16", 16, -1},         {"F16", 16, DORAC_DTYPE_F16},
    {"BF16", 16, DORAC_DTYPE_BF16}, {"I32", 32, -1},
    {"U32", 32, -1},         {"F32", 32, DORAC_DTYPE_F32},
    {"C64", 64, -1},         {"F64", 64, DORAC_DTYPE_F64},
    {"I64", 64, -1},         {"U64", 64, -1},
};

typedef struct st_file {
    char *path;          /* for messages and dorac_st_tensor.file */
    const uint8_t *base; /* the whole file */
    size_t size;         /* bytes at base */
    bool mapped;         /* munmap(base, size) on close */
    char **meta;         /* __metadata__ as key, value, key, value... */
    size_t n_meta;       /* number of pairs */
} st_file;

struct dorac_safetensors {
    st_file *files;
    size_t n_files;
    dorac_st_tensor *tensors;
    size_t n_tensors, cap_tensors;
    size_t *by_name; /* indices into tensors, sorted by name */
};

/* A tensor while its file is being validated: offsets kept for sorting. */
typedef struct st_pending {
    dorac_st_tensor t;
    uint64_t begin, end;
} st_pending;

static const st_dtype_info *find_dtype(const char *name) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, name) == 0) return &st_dtypes[i];
    return NULL;
}

static uint64_t read_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int add_file(dorac_safetensors *st, const char *path, size_t *index) {
    st_file *grown = realloc(st->files, (st->n_files + 1) * sizeof *grown);
    if (!grown) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", path);
    st->files = grown;
    st_file *f = &st->files[st->n_files];
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", path);
    *index = st->n_files++;
    return DORAC_OK;
}

static int push_tensor(dorac_safetensors *st, const dorac_st_tensor *t, const char *path) {
    if (st->n_tensors == st->cap_tensors) {
        size_t cap = st->cap_tensors ? st->cap_tensors * 2 : 64, bytes;
        if (!dorac_size_mul(cap, sizeof *st->tensors, &bytes))
            return dorac_error(DORAC_E_NOMEM, "%s: too many tensors", path);
        dorac_st_tensor *grown = realloc(st->tensors, bytes);
        if (!grown) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate the tensor table", path);
        st->tensors = grown;
        st->cap_tensors = cap;
    }
    st->tensors[st->n_tensors++] = *t;
    return DORAC_OK;
}

/* Reads one JSON integer >= 0 into *v; the message names file/tensor/field. */
static int get_u64(const json_t *j, uint64_t *v, const char *file, const char *tensor, const char *field) {
    if (!json_is_integer(j))
        return dorac_error(DORAC_E_FORMAT, "%s: tensor '%s': %s must hold integers, found %s", file, tensor, field,
                           dorac_json_type_name(j));
    json_int_t x = json_integer_value(j);
    if (x < 0)
        return dorac_error(DORAC_E_FORMAT, "%s: tensor '%s': %s holds a negative value %lld", file, tensor, field,
                           (long long)x);
    *v = (uint64_t)x;
    return DORAC_OK;
}

/* Validates one header entry and fills p (name still borrowed from JSON). */
static int parse_entry(st_pending *p, const char *name, const json_t *info, const st_file *f, uint64_t data_len) {
    const char *path = f->path;
    memset(p, 0, sizeof *p);
    if (!json_is_object(info))
        return dorac_error(DORAC_E_FORMAT, "%s: tensor '%s': entry is %s, not an object", path, name,
                           dorac_json_type_name(info));
    const json_t *jd = json_object_get(info, "dtype"), *js = json_object_get(info, "shape"),
                 *jo = json_object_get(info, "data_offsets");
    if (!jd) return dorac_error(DORAC_E_FORMAT, "%s: tensor '%s': missing 'dtype'", path, name);
    if (!js) return dorac_error(DORAC_E_FORMAT, "%s: tensor '%s': missing 'shape'", path, name);
    if (!jo) return dorac_error(DORAC_E_FORMAT, "%s: tensor '%s': missing 'data_offsets'", path, name);
    if (!json_is_string(jd))
        return dorac_error(DORAC_E_FORMAT, "%s: tensor '%s': dtype is %s, not a string", path, name,
                           dorac_json_type_name(jd));
    const st_dtype_info *dt = find_dtype(json_string_value(jd));
    if (!dt)
        return dorac_error(DORAC_E_FORMAT, "%s: tensor '%s': unknown dtype '%.40s'", path, name,
                           json_string_value(jd));
    if (!json_is_array(js))
        return dorac_error(DORAC_E_FORMAT, "%s: tensor '%s': shape is %s, not an array", path, name,
                           dorac_json_type_name(js));
    size_t n_dims = json_array_size(js);
    if (n_dims > DORAC_ST_MAX_DIMS)
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: tensor '%s' has %zu dimensions; at most %d are supported",
                           path, name, n_dims, DORAC_ST_MAX_DIMS);
    uint64_t numel = 1;
    for (size_t d = 0; d < n_dims; d++) {
        uint64_t dim = 0;
        DORAC_TRY(get_u64(json_array_get(js, d), &dim, path, name, "shape"));
        p->t.shape[d] = (int64_t)dim;
        if (dim != 0 && numel > UINT64_MAX / dim)
            return dorac_error(DORAC_E_FORMAT, "%s: tensor '%s': shape's element count overflows", path, name);
        numel *= dim;
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return dorac_error(DORAC_E_FORMAT, "%s: tensor '%s': data_offsets must be an array [begin, end]", path,
                           name);
    uint64_t begin = 0, end = 0;
    DORAC_TRY(get_u64(json_array_get(jo, 0), &begin, path, name, "data_offsets"));
    DORAC_TRY(get_u64(json_array_get(jo, 1), &end, path, name, "data_offsets"));
    if (begin > end)
        return dorac_error(DORAC_E_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", path,
                           name, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_len)
        return dorac_error(DORAC_E_FORMAT,
                           "%s: tensor '%s': data_offsets [%llu, %llu] run past the %llu-byte data section "
                           "(truncated file?)",
                           path, name, (unsigned long long)begin, (unsigned long long)end,
                           (unsigned long long)data_len);
    if (numel > UINT64_MAX / dt->bits)
        return dorac_error(DORAC_E_FORMAT, "%s: tensor '%s': byte size overflows", path, name);
    uint64_t bits = numel * dt->bits;
    if (bits % 8 != 0)
        return dorac_error(DORAC_E_FORMAT, "%s: tensor '%s': %llu elements of %s do not fill whole bytes", path,
                           name, (unsigned long long)numel, dt->name);
    if (bits / 8 != end - begin)
        return dorac_error(DORAC_E_FORMAT,
                           "%s: tensor '%s': %llu elements of %s are %llu bytes but data_offsets [%llu, %llu] "
                           "span %llu",
                           path, name, (unsigned long long)numel, dt->name, (unsigned long long)(bits / 8),
                           (unsigned long long)begin, (unsigned long long)end,
                           (unsigned long long)(end - begin));
    p->t.name = name;
    p->t.dtype_name = dt->name;
    p->t.dtype_supported = dt->dorac >= 0;
    p->t.dtype = dt->dorac >= 0 ? (dorac_dtype)dt->dorac : DORAC_DTYPE_F32;
    p->t.n_dims = (int)n_dims;
    p->t.nbytes = (size_t)(end - begin);
    p->t.file = f->path;
    p->begin = begin;
    p->end = end;
    return DORAC_OK;
}

static int cmp_pending_offsets(const void *a, const void *b) {
    const st_pending *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int parse_metadata(st_file *f, const json_t *meta) {
    if (json_is_null(meta)) return DORAC_OK;
    if (!json_is_object(meta))
        return dorac_error(DORAC_E_FORMAT, "%s: __metadata__ is %s, not an object", f->path,
                           dorac_json_type_name(meta));
    size_t n = json_object_size(meta), bytes;
    if (!dorac_size_mul(n, 2 * sizeof(char *), &bytes))
        return dorac_error(DORAC_E_NOMEM, "%s: __metadata__ too large", f->path);
    f->meta = calloc(n ? n * 2 : 1, sizeof(char *));
    if (!f->meta) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate __metadata__", f->path);
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)meta, key, value) {
        if (!json_is_string(value))
            return dorac_error(DORAC_E_FORMAT, "%s: __metadata__ '%s' is %s, not a string", f->path, key,
                               dorac_json_type_name(value));
        char *k = strdup(key), *v = strdup(json_string_value(value));
        if (!k || !v) {
            free(k);
            free(v);
            return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate __metadata__", f->path);
        }
        f->meta[2 * f->n_meta] = k;
        f->meta[2 * f->n_meta + 1] = v;
        f->n_meta++;
    }
    return DORAC_OK;
}

/* Validates file fi (already mapped) and appends its tensors, in offset order. */
static int parse_file(dorac_safetensors *st, size_t fi) {
    st_file *f = &st->files[fi];
    if (f->size < 8)
        return dorac_error(DORAC_E_FORMAT, "%s: truncated: %zu bytes, shorter than the 8-byte header length", f->path,
                           f->size);
    uint64_t header_len = read_le64(f->base);
    if (header_len > (uint64_t)(f->size - 8))
        return dorac_error(DORAC_E_FORMAT, "%s: header length %llu exceeds the %zu bytes after it (truncated file?)",
                           f->path, (unsigned long long)header_len, f->size - 8);
    if (header_len > ST_MAX_HEADER_BYTES)
        return dorac_error(DORAC_E_FORMAT, "%s: header length %llu exceeds the 100 MB limit", f->path,
                           (unsigned long long)header_len);
    const char *header = (const char *)f->base + 8;
    uint64_t data_len = (uint64_t)(f->size - 8) - header_len;
    const uint8_t *data = f->base + 8 + header_len;

    json_t *root;
    DORAC_TRY(dorac_json_parse(&root, header, (size_t)header_len, f->path, JSON_REJECT_DUPLICATES));
    int rc = DORAC_OK;
    st_pending *pend = NULL;
    size_t n_pend = 0;
    if (!json_is_object(root)) {
        rc = dorac_error(DORAC_E_FORMAT, "%s: header is a JSON %s, not an object", f->path,
                         dorac_json_type_name(root));
        goto done;
    }
    size_t n_entries = json_object_size(root);
    pend = calloc(n_entries ? n_entries : 1, sizeof *pend);
    if (!pend) {
        rc = dorac_error(DORAC_E_NOMEM, "%s: cannot allocate %zu tensor entries", f->path, n_entries);
        goto done;
    }
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        if (strcmp(key, "__metadata__") == 0) {
            rc = parse_metadata(f, value);
        } else {
            rc = parse_entry(&pend[n_pend], key, value, f, data_len);
            if (rc == DORAC_OK) n_pend++;
        }
        if (rc != DORAC_OK) goto done;
    }
    qsort(pend, n_pend, sizeof *pend, cmp_pending_offsets);
    for (size_t i = 1; i < n_pend; i++) {
        if (pend[i].begin < pend[i - 1].end) {
            rc = dorac_error(DORAC_E_FORMAT, "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap", f->path,
                             pend[i - 1].t.name, (unsigned long long)pend[i - 1].begin,
                             (unsigned long long)pend[i - 1].end, pend[i].t.name,
                             (unsigned long long)pend[i].begin, (unsigned long long)pend[i].end);
            goto done;
        }
    }
    for (size_t i = 0; i < n_pend; i++) {
        dorac_st_tensor t = pend[i].t;
        t.data = data + pend[i].begin;
        t.name = strdup(pend[i].t.name);
        if (!t.name) {
            rc = dorac_error(DORAC_E_NOMEM, "%s: cannot allocate a tensor name", f->path);
            goto done;
        }
        rc = push_tensor(st, &t, f->path);
        if (rc != DORAC_OK) {
            free((char *)t.name);
            goto done;
        }
    }
done:
    free(pend);
    json_decref(root);
    return rc;
}

static int map_file(st_file *f) {
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dorac_error(DORAC_E_IO, "%s: %s", f->path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return dorac_error(DORAC_E_IO, "%s: %s", f->path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return dorac_error(DORAC_E_IO, "%s: not a regular file", f->path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return dorac_error(DORAC_E_FORMAT, "%s: truncated: %lld bytes, shorter than the 8-byte header length",
                           f->path, (long long)sb.st_size);
    }
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return dorac_error(DORAC_E_NOMEM, "%s: too large to map", f->path);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return dorac_error(DORAC_E_IO, "%s: mmap failed: %s", f->path, strerror(e));
    f->base = p;
    f->size = (size_t)sb.st_size;
    f->mapped = true;
    return DORAC_OK;
}

/* qsort has no context argument in C11, so the tensor table reaches the
** comparator through this pointer, set only for the duration of one sort;
** it is thread-local so that opens on different threads do not collide. */
static _Thread_local const dorac_st_tensor *sort_tensors;

static int cmp_name_qsort(const void *a, const void *b) {
    return strcmp(sort_tensors[*(const size_t *)a].name, sort_tensors[*(const size_t *)b].name);
}

/* Builds by_name and rejects a name present twice (across shards). */
static int build_name_index(dorac_safetensors *st) {
    size_t bytes;
    if (!dorac_size_mul(st->n_tensors ? st->n_tensors : 1, sizeof(size_t), &bytes))
        return dorac_error(DORAC_E_NOMEM, "too many tensors");
    st->by_name = malloc(bytes);
    if (!st->by_name) return dorac_error(DORAC_E_NOMEM, "cannot allocate the name index");
    for (size_t i = 0; i < st->n_tensors; i++) st->by_name[i] = i;
    sort_tensors = st->tensors;
    qsort(st->by_name, st->n_tensors, sizeof(size_t), cmp_name_qsort);
    sort_tensors = NULL;
    for (size_t i = 1; i < st->n_tensors; i++) {
        const dorac_st_tensor *a = &st->tensors[st->by_name[i - 1]], *b = &st->tensors[st->by_name[i]];
        if (strcmp(a->name, b->name) == 0)
            return dorac_error(DORAC_E_FORMAT, "tensor '%s' appears in both %s and %s", a->name, a->file, b->file);
    }
    return DORAC_OK;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A shard name from an index must be a plain file name in the index's
** folder: no separators, not "." or "..", so an index cannot point outside. */
static bool safe_shard_name(const char *s) {
    return s[0] != '\0' && strchr(s, '/') == NULL && strchr(s, '\\') == NULL && strcmp(s, ".") != 0 &&
           strcmp(s, "..") != 0;
}

static int open_index(dorac_safetensors *st, const char *index_path) {
    char *text = NULL;
    size_t n;
    DORAC_TRY(dorac_read_file(index_path, ST_MAX_INDEX_BYTES, &text, &n));
    json_t *root = NULL;
    int rc = dorac_json_parse(&root, text, n, index_path, 0);
    free(text);
    if (rc != DORAC_OK) return rc;
    char **names = NULL, *dir = NULL;
    size_t n_names = 0;
    const json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(root)) {
        rc = dorac_error(DORAC_E_FORMAT, "%s: not a JSON object", index_path);
        goto done;
    }
    if (!json_is_object(wm)) {
        rc = dorac_error(DORAC_E_FORMAT, "%s: missing object 'weight_map'", index_path);
        goto done;
    }
    names = calloc(json_object_size(wm) + 1, sizeof *names);
    if (!names) {
        rc = dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", index_path);
        goto done;
    }
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)wm, key, value) {
        if (!json_is_string(value)) {
            rc = dorac_error(DORAC_E_FORMAT, "%s: weight_map['%s'] is %s, not a file name", index_path, key,
                             dorac_json_type_name(value));
            goto done;
        }
        const char *file = json_string_value(value);
        if (!safe_shard_name(file)) {
            rc = dorac_error(DORAC_E_FORMAT, "%s: weight_map['%s'] = '%s' is not a plain file name", index_path, key,
                             file);
            goto done;
        }
        names[n_names++] = (char *)file;
    }
    /* distinct file names, sorted */
    qsort(names, n_names, sizeof *names, cmp_cstr);
    size_t n_distinct = 0;
    for (size_t i = 0; i < n_names; i++)
        if (n_distinct == 0 || strcmp(names[n_distinct - 1], names[i]) != 0) names[n_distinct++] = names[i];
    const char *slash = strrchr(index_path, '/');
    size_t dir_len = slash ? (size_t)(slash - index_path) + 1 : 0;
    dir = malloc(dir_len + 1);
    if (!dir) {
        rc = dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", index_path);
        goto done;
    }
    memcpy(dir, index_path, dir_len);
    dir[dir_len] = '\0';
    for (size_t i = 0; i < n_distinct && rc == DORAC_OK; i++) {
        char *shard_path;
        size_t fi = 0;
        rc = dorac_path_join(&shard_path, dir, names[i]);
        if (rc != DORAC_OK) break;
        rc = add_file(st, shard_path, &fi);
        free(shard_path);
        if (rc == DORAC_OK) rc = map_file(&st->files[fi]);
        if (rc == DORAC_OK) rc = parse_file(st, fi);
    }
    if (rc == DORAC_OK) rc = build_name_index(st);
    /* every mapped tensor must be where the index says */
    json_object_foreach((json_t *)wm, key, value) {
        if (rc != DORAC_OK) break;
        const dorac_st_tensor *t = dorac_safetensors_find(st, key);
        const char *file = json_string_value(value);
        if (!t)
            rc = dorac_error(DORAC_E_FORMAT, "%s: tensor '%s' is mapped to %s but no shard holds it", index_path, key,
                             file);
        else if (strcmp(strrchr(t->file, '/') ? strrchr(t->file, '/') + 1 : t->file, file) != 0)
            rc = dorac_error(DORAC_E_FORMAT, "%s: tensor '%s' is mapped to %s but found in %s", index_path, key, file,
                             t->file);
    }
done:
    free(dir);
    free(names);
    json_decref(root);
    return rc;
}

/* The sole entry of folder dir whose name ends in suffix: DORAC_OK and a
** malloc'd path, or DORAC_E_IO when there is none or several (*found 0/2). */
static int find_sole(const char *dir, const char *suffix, char **out, int *found) {
    *out = NULL;
    *found = 0;
    DIR *d = opendir(dir);
    if (!d) return dorac_error(DORAC_E_IO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    char *match = NULL;
    int rc = DORAC_OK;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || !ends_with(e->d_name, suffix)) continue;
        if (++*found > 1) break;
        rc = dorac_path_join(&match, dir, e->d_name);
        if (rc != DORAC_OK) break;
    }
    closedir(d);
    if (rc == DORAC_OK && *found == 1) {
        *out = match;
        return DORAC_OK;
    }
    free(match);
    return rc;
}

static int open_path(dorac_safetensors *st, const char *path) {
    if (dorac_is_dir(path)) {
        static const char *const preferred[] = {"model.safetensors.index.json", "model.safetensors"};
        for (int i = 0; i < 2; i++) {
            char *p;
            DORAC_TRY(dorac_path_join(&p, path, preferred[i]));
            if (dorac_is_file(p)) {
                int rc = open_path(st, p);
                free(p);
                return rc;
            }
            free(p);
        }
        static const char *const suffixes[] = {".safetensors.index.json", ".safetensors"};
        for (int i = 0; i < 2; i++) {
            char *p;
            int found;
            DORAC_TRY(find_sole(path, suffixes[i], &p, &found));
            if (found == 1) {
                int rc = open_path(st, p);
                free(p);
                return rc;
            }
            if (found > 1)
                return dorac_error(DORAC_E_IO, "%s: several *%s files and no model.safetensors(.index.json)", path,
                                   suffixes[i]);
        }
        return dorac_error(DORAC_E_IO, "%s: no model.safetensors, model.safetensors.index.json or *.safetensors",
                           path);
    }
    if (ends_with(path, ".json")) return open_index(st, path);
    size_t fi = 0;
    DORAC_TRY(add_file(st, path, &fi));
    DORAC_TRY(map_file(&st->files[fi]));
    DORAC_TRY(parse_file(st, fi));
    return build_name_index(st);
}

int dorac_safetensors_open(dorac_safetensors **out, const char *path) {
    if (!out) return dorac_error(DORAC_E_INVALID, "dorac_safetensors_open: out is NULL");
    *out = NULL;
    if (!path || !path[0]) return dorac_error(DORAC_E_INVALID, "dorac_safetensors_open: empty path");
    dorac_safetensors *st = calloc(1, sizeof *st);
    if (!st) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", path);
    int rc = open_path(st, path);
    if (rc != DORAC_OK) {
        dorac_safetensors_close(st);
        return rc;
    }
    *out = st;
    return DORAC_OK;
}

int dorac_safetensors_open_memory(dorac_safetensors **out, const void *buf, size_t n, const char *name) {
    if (!out) return dorac_error(DORAC_E_INVALID, "dorac_safetensors_open_memory: out is NULL");
    *out = NULL;
    if (!buf && n) return dorac_error(DORAC_E_INVALID, "dorac_safetensors_open_memory: buffer is NULL");
    if (!name) name = "<memory>";
    dorac_safetensors *st = calloc(1, sizeof *st);
    if (!st) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", name);
    size_t fi = 0;
    int rc = add_file(st, name, &fi);
    if (rc == DORAC_OK) {
        st->files[fi].base = buf;
        st->files[fi].size = n;
        rc = parse_file(st, fi);
    }
    if (rc == DORAC_OK) rc = build_name_index(st);
    if (rc != DORAC_OK) {
        dorac_safetensors_close(st);
        return rc;
    }
    *out = st;
    return DORAC_OK;
}

size_t dorac_safetensors_count(const dorac_safetensors *st) { return st ? st->n_tensors : 0; }

const dorac_st_tensor *dorac_safetensors_at(const dorac_safetensors *st, size_t i) {
    return st && i < st->n_tensors ? &st->tensors[i] : NULL;
}

const dorac_st_tensor *dorac_safetensors_find(const dorac_safetensors *st, const char *name) {
    if (!st || !name || !st->by_name) return NULL;
    size_t lo = 0, hi = st->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const dorac_st_tensor *t = &st->tensors[st->by_name[mid]];
        int c = strcmp(t->name, name);
        if (c == 0) return t;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *dorac_safetensors_metadata(const dorac_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    for (size_t f = 0; f < st->n_files; f++)
        for (size_t i = 0; i < st->files[f].n_meta; i++)
            if (strcmp(st->files[f].meta[2 * i], key) == 0) return st->files[f].meta[2 * i + 1];
    return NULL;
}

size_t dorac_st_tensor_numel(const dorac_st_tensor *t) {
    size_t n = 1;
    /* Cannot overflow: open checked numel × element bits against a byte span
    ** that fits in the file. */
    for (int d = 0; d < t->n_dims; d++) n *= (size_t)t->shape[d];
    return n;
}

int dorac_st_tensor_read(const dorac_st_tensor *t, void *dst, dorac_dtype dst_type) {
    if (!t || !dst) return dorac_error(DORAC_E_INVALID, "dorac_st_tensor_read: NULL argument");
    if (!t->dtype_supported)
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: tensor '%s' has dtype %s; only F32, F16, BF16 and F64 can be read",
                           t->file, t->name, t->dtype_name);
    size_t dst_size = dorac_dtype_size(dst_type), src_size = dorac_dtype_size(t->dtype);
    if (dst_size == 0)
        return dorac_error(DORAC_E_INVALID, "%s: tensor '%s': destination dtype %d is not valid", t->file, t->name,
                           (int)dst_type);
    size_t n = t->nbytes / src_size;
    if ((uintptr_t)t->data % src_size == 0) {
        dorac_convert(dst, dst_type, t->data, t->dtype, n);
        return DORAC_OK;
    }
    /* Unaligned source (a header whose length is not a multiple of 8):
    ** bounce through an aligned buffer. */
    uint64_t bounce[512];
    size_t per_chunk = sizeof bounce / src_size;
    const unsigned char *src = t->data;
    unsigned char *out = dst;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < per_chunk ? n - done : per_chunk;
        memcpy(bounce, src + done * src_size, k * src_size);
        dorac_convert(out + done * dst_size, dst_type, bounce, t->dtype, k);
        done += k;
    }
    return DORAC_OK;
}

void dorac_safetensors_close(dorac_safetensors *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n_tensors; i++) free((char *)st->tensors[i].name);
    for (size_t f = 0; f < st->n_files; f++) {
        st_file *file = &st->files[f];
        if (file->mapped) munmap((void *)file->base, file->size);
        for (size_t i = 0; i < 2 * file->n_meta; i++) free(file->meta[i]);
        free(file->meta);
        free(file->path);
    }
    free(st->files);
    free(st->tensors);
    free(st->by_name);
    free(st);
}
