/*
** test_safetensors.c — the safetensors reader and writers against files the
** reference library (safetensors, transformers) wrote, round trips, and one
** test per kind of bad input.
**
** Expected values come from the JSON files in tests/fixtures/io/, written by
** tools/ref/make_io_fixtures.py from what torch/safetensors read back.
*/
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>

#include "test.h"
#include "core/dtype.h"
#include "io/safetensors.h"
#include "io_test_util.h"

static char *scratch;

/* ---- building small files by hand ------------------------------------------ */

/* Writes <u64 header length><header padded with spaces to pad_to><data> to
** scratch/name and returns the path (malloc'd). pad_to 1 means no padding. */
static char *write_st(const char *name, const char *header, size_t pad_to, const void *data, size_t n_data) {
    size_t hl = strlen(header), padded = (hl + pad_to - 1) / pad_to * pad_to;
    size_t total = 8 + padded + n_data;
    unsigned char *buf = malloc(total);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, header, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    if (n_data) memcpy(buf + 8 + padded, data, n_data);
    char *path = join(scratch, name);
    CHECK(write_bytes(path, buf, total));
    free(buf);
    return path;
}

/* Opens a hand-made file that must fail with status, naming the file and
** each needle. */
#define CHECK_BAD_FILE(fname, header, data, n_data, status, ...)                   \
    do {                                                                             \
        char *path_ = write_st(fname, header, 8, data, n_data);                      \
        dorac_safetensors *st_ = (dorac_safetensors *)1;                             \
        CHECK_STATUS(dorac_safetensors_open(&st_, path_), status);                   \
        CHECK(st_ == NULL);                                                          \
        CHECK_MESSAGE(fname, __VA_ARGS__);                                           \
        free(path_);                                                                 \
    } while (0)

static const float four_floats[4] = {1.0f, 2.0f, 3.0f, 4.0f};

/* ---- the reference file ----------------------------------------------------- */

static void test_reference_file(void) {
    json_t *exp = load_json(IO_FIXTURES "/st_ref.json");
    dorac_safetensors *st;
    CHECK_OK(dorac_safetensors_open(&st, IO_FIXTURES "/st_ref.safetensors"));
    if (!st) return;
    json_t *order = json_object_get(exp, "order"), *tensors = json_object_get(exp, "tensors");
    CHECK(dorac_safetensors_count(st) == json_array_size(order));
    CHECK(dorac_safetensors_metadata(st, "format") != NULL &&
          strcmp(dorac_safetensors_metadata(st, "format"),
                 json_string_value(json_object_get(json_object_get(exp, "metadata"), "format"))) == 0);
    CHECK(dorac_safetensors_metadata(st, "absent") == NULL);
    CHECK(dorac_safetensors_find(st, "absent") == NULL);
    CHECK(dorac_safetensors_at(st, dorac_safetensors_count(st)) == NULL);
    for (size_t i = 0; i < json_array_size(order); i++) {
        const char *name = json_string_value(json_array_get(order, i));
        const json_t *e = json_object_get(tensors, name);
        const dorac_st_tensor *t = dorac_safetensors_at(st, i);
        CHECK(t && strcmp(t->name, name) == 0); /* file (offset) order */
        CHECK(t == dorac_safetensors_find(st, name));
        if (!t) continue;
        CHECK(strcmp(t->dtype_name, json_string_value(json_object_get(e, "dtype"))) == 0);
        CHECK(t->dtype_supported);
        const json_t *shape = json_object_get(e, "shape"), *values = json_object_get(e, "values");
        CHECK(t->n_dims == (int)json_array_size(shape));
        for (int d = 0; d < t->n_dims; d++) CHECK(t->shape[d] == json_integer_value(json_array_get(shape, (size_t)d)));
        size_t n = dorac_st_tensor_numel(t);
        CHECK(n == json_array_size(values));
        CHECK(strcmp(t->file, IO_FIXTURES "/st_ref.safetensors") == 0);
        /* to f64: exact for every source dtype */
        double *v = malloc((n ? n : 1) * sizeof *v);
        float *f = malloc((n ? n : 1) * sizeof *f);
        CHECK_OK(dorac_st_tensor_read(t, v, DORAC_DTYPE_F64));
        CHECK_OK(dorac_st_tensor_read(t, f, DORAC_DTYPE_F32));
        for (size_t k = 0; k < n; k++) {
            double want = json_number_value(json_array_get(values, k));
            CHECK(v[k] == want);
            CHECK(f[k] == (float)want);
        }
        free(v);
        free(f);
    }
    /* f32 -> bf16 / f16 rounding as torch rounds it */
    const dorac_st_tensor *t = dorac_safetensors_find(st, "b.f32");
    json_t *bf = json_object_get(exp, "b.f32_as_bf16_bits"), *hf = json_object_get(exp, "b.f32_as_f16_bits");
    if (t) {
        size_t n = dorac_st_tensor_numel(t);
        uint16_t b16[16], h16[16];
        CHECK(n <= 16 && n == json_array_size(bf));
        CHECK_OK(dorac_st_tensor_read(t, b16, DORAC_DTYPE_BF16));
        CHECK_OK(dorac_st_tensor_read(t, h16, DORAC_DTYPE_F16));
        for (size_t k = 0; k < n && k < 16; k++) {
            CHECK(b16[k] == json_integer_value(json_array_get(bf, k)));
            CHECK(h16[k] == json_integer_value(json_array_get(hf, k)));
        }
    }
    /* bf16 -> f32 and f16 -> f32 are exact: checked above against torch's values */
    CHECK_STATUS(dorac_st_tensor_read(t, NULL, DORAC_DTYPE_F32), DORAC_E_INVALID);
    float sink[16];
    CHECK_STATUS(dorac_st_tensor_read(t, sink, (dorac_dtype)77), DORAC_E_INVALID);

    /* Rewriting every tensor with dorac's writer gives the same bytes. */
    size_t n = dorac_safetensors_count(st);
    dorac_st_write_tensor *w = calloc(n, sizeof *w);
    for (size_t i = 0; i < n; i++) {
        const dorac_st_tensor *x = dorac_safetensors_at(st, n - 1 - i); /* any input order */
        w[i].name = x->name;
        w[i].dtype = x->dtype;
        w[i].n_dims = x->n_dims;
        memcpy(w[i].shape, x->shape, sizeof w[i].shape);
        w[i].data = x->data;
    }
    const char *meta[] = {"format", "pt"};
    char *out = join(scratch, "rewritten.safetensors");
    CHECK_OK(dorac_safetensors_write(out, w, n, meta, 1));
    CHECK(files_equal(out, IO_FIXTURES "/st_ref.safetensors"));
    free(out);
    free(w);
    dorac_safetensors_close(st);
    json_decref(exp);
}

/* ---- dtypes dorac cannot read ------------------------------------------------ */

static void test_unsupported_dtypes(void) {
    dorac_safetensors *st;
    CHECK_OK(dorac_safetensors_open(&st, IO_FIXTURES "/st_mixed.safetensors"));
    if (!st) return;
    const dorac_st_tensor *pos = dorac_safetensors_find(st, "position_ids");
    const dorac_st_tensor *w = dorac_safetensors_find(st, "w");
    CHECK(pos && !pos->dtype_supported && strcmp(pos->dtype_name, "I64") == 0);
    CHECK(dorac_safetensors_find(st, "mask") && !dorac_safetensors_find(st, "mask")->dtype_supported);
    CHECK(dorac_safetensors_find(st, "flag") && strcmp(dorac_safetensors_find(st, "flag")->dtype_name, "BOOL") == 0);
    float buf[8];
    CHECK_STATUS(dorac_st_tensor_read(pos, buf, DORAC_DTYPE_F32), DORAC_E_UNSUPPORTED);
    CHECK_MESSAGE("st_mixed.safetensors", "position_ids", "I64");
    CHECK(w && w->dtype_supported);
    CHECK_OK(dorac_st_tensor_read(w, buf, DORAC_DTYPE_F32));
    CHECK(buf[0] == 0.5f && buf[3] == 4.0f); /* values the script stored in "w" */
    dorac_safetensors_close(st);
}

/* ---- round trip ----------------------------------------------------------- */

static void test_round_trip(void) {
    float a[6];
    double b[3] = {1e300, -0.0, 3.141592653589793};
    uint16_t c[4], d[2];
    for (int i = 0; i < 6; i++) a[i] = (float)i * 0.1f - 0.3f;
    for (int i = 0; i < 4; i++) c[i] = dorac_f32_to_bf16((float)i - 1.5f);
    d[0] = dorac_f32_to_f16(65504.0f);
    d[1] = dorac_f32_to_f16(-6.1e-5f);
    float scalar = 42.0f;
    dorac_st_write_tensor w[] = {
        {.name = "layer.a", .dtype = DORAC_DTYPE_F32, .n_dims = 2, .shape = {2, 3}, .data = a},
        {.name = "layer.b", .dtype = DORAC_DTYPE_F64, .n_dims = 1, .shape = {3}, .data = b},
        {.name = "layer.c", .dtype = DORAC_DTYPE_BF16, .n_dims = 3, .shape = {1, 2, 2}, .data = c},
        {.name = "layer.d", .dtype = DORAC_DTYPE_F16, .n_dims = 1, .shape = {2}, .data = d},
        {.name = "scalar", .dtype = DORAC_DTYPE_F32, .n_dims = 0, .data = &scalar},
        {.name = "empty", .dtype = DORAC_DTYPE_BF16, .n_dims = 2, .shape = {0, 5}, .data = NULL},
        {.name = "weird \"name\"\n\x01\xc3\xa9", .dtype = DORAC_DTYPE_F32, .n_dims = 1, .shape = {1}, .data = a},
    };
    size_t n = sizeof w / sizeof w[0];
    const char *meta[] = {"format", "pt", "note", "line1\nline2 \"q\" \\ \xe2\x82\xac"};
    char *path = join(scratch, "round.safetensors");
    CHECK_OK(dorac_safetensors_write(path, w, n, meta, 2));
    size_t file_n;
    unsigned char *bytes = read_bytes(path, &file_n);
    CHECK(bytes != NULL);
    if (bytes) {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = (hl << 8) | bytes[i];
        CHECK(hl % 8 == 0); /* header padded as HF pads it */
        CHECK(bytes[8] == '{' && bytes[8 + hl - 1] == ' ');
    }
    free(bytes);
    dorac_safetensors *st;
    CHECK_OK(dorac_safetensors_open(&st, path));
    if (st) {
        CHECK(dorac_safetensors_count(st) == n);
        CHECK(strcmp(dorac_safetensors_metadata(st, "note"), meta[3]) == 0);
        CHECK(strcmp(dorac_safetensors_metadata(st, "format"), "pt") == 0);
        for (size_t i = 0; i < n; i++) {
            const dorac_st_tensor *t = dorac_safetensors_find(st, w[i].name);
            CHECK(t != NULL);
            if (!t) continue;
            CHECK(t->dtype == w[i].dtype && t->dtype_supported);
            CHECK(t->n_dims == w[i].n_dims);
            CHECK(memcmp(t->shape, w[i].shape, sizeof t->shape) == 0);
            size_t nbytes = dorac_st_tensor_numel(t) * dorac_dtype_size(w[i].dtype);
            CHECK(t->nbytes == nbytes);
            CHECK(nbytes == 0 || memcmp(t->data, w[i].data, nbytes) == 0); /* bit-identical */
        }
        /* the file order is the reference's: F64, F32, BF16, F16, then name */
        const char *want_order[] = {"layer.b", "layer.a", "scalar", "weird \"name\"\n\x01\xc3\xa9", "empty", "layer.c",
                                    "layer.d"};
        for (size_t i = 0; i < n; i++) CHECK(strcmp(dorac_safetensors_at(st, i)->name, want_order[i]) == 0);
        dorac_safetensors_close(st);
    }
    /* No metadata, no tensors: a valid file too. */
    char *empty = join(scratch, "empty.safetensors");
    CHECK_OK(dorac_safetensors_write(empty, NULL, 0, NULL, 0));
    CHECK_OK(dorac_safetensors_open(&st, empty));
    CHECK(dorac_safetensors_count(st) == 0);
    dorac_safetensors_close(st);
    CHECK(count_entries_containing(scratch, ".tmp-") == 0);
    free(empty);
    free(path);
}

/* ---- unaligned data ----------------------------------------------------------- */

static void test_unaligned(void) {
    /* header length 53 (not a multiple of 4): data starts at an odd address */
    const char *header = "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
    char *path = write_st("unaligned.safetensors", header, 1, four_floats, sizeof four_floats);
    dorac_safetensors *st;
    CHECK_OK(dorac_safetensors_open(&st, path));
    if (st) {
        const dorac_st_tensor *t = dorac_safetensors_find(st, "x");
        CHECK((uintptr_t)t->data % 4 != 0);
        double v[4];
        CHECK_OK(dorac_st_tensor_read(t, v, DORAC_DTYPE_F64));
        for (int i = 0; i < 4; i++) CHECK(v[i] == four_floats[i]);
        dorac_safetensors_close(st);
    }
    free(path);
}

/* ---- sharded sets ------------------------------------------------------------- */

static void check_sharded_contents(dorac_safetensors *st, json_t *exp, bool sharded) {
    json_t *order = json_object_get(exp, "state_dict_order"), *tensors = json_object_get(exp, "tensors");
    CHECK(dorac_safetensors_count(st) == json_array_size(order));
    for (size_t i = 0; i < json_array_size(order); i++) {
        const char *name = json_string_value(json_array_get(order, i));
        const json_t *e = json_object_get(tensors, name);
        const dorac_st_tensor *t = dorac_safetensors_find(st, name);
        CHECK(t != NULL);
        if (!t) continue;
        CHECK(t->dtype == DORAC_DTYPE_BF16 && strcmp(t->dtype_name, "BF16") == 0);
        CHECK((strstr(t->file, "model-0000") != NULL) == sharded);
        const json_t *shape = json_object_get(e, "shape");
        CHECK(t->n_dims == (int)json_array_size(shape));
        for (int d = 0; d < t->n_dims; d++) CHECK(t->shape[d] == json_integer_value(json_array_get(shape, (size_t)d)));
        size_t n = dorac_st_tensor_numel(t);
        double *v = malloc(n * sizeof *v), sum = 0;
        CHECK_OK(dorac_st_tensor_read(t, v, DORAC_DTYPE_F64));
        for (size_t k = 0; k < n; k++) sum += v[k];
        CHECK(sum == json_number_value(json_object_get(e, "sum")));
        const json_t *first = json_object_get(e, "first");
        for (size_t k = 0; k < json_array_size(first); k++) CHECK(v[k] == json_number_value(json_array_get(first, k)));
        free(v);
    }
}

static void test_sharded(void) {
    json_t *exp = load_json(IO_FIXTURES "/tiny_llama_sharded.json");
    const char *dir = IO_FIXTURES "/tiny_llama_sharded";
    dorac_safetensors *st;
    /* the folder, and the index itself */
    CHECK_OK(dorac_safetensors_open(&st, dir));
    if (st) check_sharded_contents(st, exp, true);
    dorac_safetensors *st2;
    CHECK_OK(dorac_safetensors_open(&st2, IO_FIXTURES "/tiny_llama_sharded/model.safetensors.index.json"));
    if (st2) {
        check_sharded_contents(st2, exp, true);
        CHECK(strcmp(dorac_safetensors_metadata(st2, "format"), "pt") == 0);
        dorac_safetensors_close(st2);
    }
    /* Writing the same tensors in the same order with the same limit gives
    ** transformers' files byte for byte: shards and index. */
    json_t *order = json_object_get(exp, "state_dict_order");
    size_t n = json_array_size(order);
    dorac_st_write_tensor *w = calloc(n, sizeof *w);
    for (size_t i = 0; st && i < n; i++) {
        const dorac_st_tensor *t = dorac_safetensors_find(st, json_string_value(json_array_get(order, i)));
        if (!t) continue;
        w[i] = (dorac_st_write_tensor){.name = t->name, .dtype = t->dtype, .n_dims = t->n_dims, .data = t->data};
        memcpy(w[i].shape, t->shape, sizeof w[i].shape);
    }
    const char *meta[] = {"format", "pt"};
    char *out = join(scratch, "sharded");
    mkdir(out, 0777);
    size_t max_shard = (size_t)json_integer_value(json_object_get(exp, "max_shard_size"));
    CHECK_OK(dorac_safetensors_write_sharded(out, "model", w, n, max_shard, meta, 1));
    DIR *d = opendir(dir);
    struct dirent *e;
    int compared = 0;
    while (d && (e = readdir(d)) != NULL) {
        if (!strstr(e->d_name, "model")) continue;
        char *a = join(dir, e->d_name), *b = join(out, e->d_name);
        test_checks++;
        if (!files_equal(a, b)) {
            test_failures++;
            fprintf(stderr, "%s:%d: %s differs from transformers' %s\n", __FILE__, __LINE__, b, a);
        }
        compared++;
        free(a);
        free(b);
    }
    if (d) closedir(d);
    CHECK(compared >= 3);
    CHECK(count_entries_containing(out, "model") == compared);
    /* read back what dorac wrote */
    dorac_safetensors *st3;
    CHECK_OK(dorac_safetensors_open(&st3, out));
    if (st3) check_sharded_contents(st3, exp, true);
    dorac_safetensors_close(st3);

    /* everything fits: one model.safetensors and no index */
    char *single = join(scratch, "single");
    mkdir(single, 0777);
    CHECK_OK(dorac_safetensors_write_sharded(single, "model", w, n, (size_t)1 << 30, meta, 1));
    CHECK(count_entries_containing(single, "safetensors") == 1);
    char *single_file = join(single, "model.safetensors");
    CHECK_OK(dorac_safetensors_open(&st3, single_file));
    if (st3) check_sharded_contents(st3, exp, false);
    dorac_safetensors_close(st3);
    free(single_file);
    free(single);
    free(out);
    free(w);
    dorac_safetensors_close(st);
    json_decref(exp);
}

/* Index files that lie: a shard that is missing, a tensor in the wrong shard,
** a path outside the folder, a tensor in two shards. */
static void test_bad_index(void) {
    char *dir = join(scratch, "badindex");
    mkdir(dir, 0777);
    char *a = join(dir, "a.safetensors"), *b = join(dir, "b.safetensors");
    float x[2] = {1, 2};
    dorac_st_write_tensor wa = {.name = "x", .dtype = DORAC_DTYPE_F32, .n_dims = 1, .shape = {2}, .data = x};
    dorac_st_write_tensor wb = {.name = "y", .dtype = DORAC_DTYPE_F32, .n_dims = 1, .shape = {2}, .data = x};
    CHECK_OK(dorac_safetensors_write(a, &wa, 1, NULL, 0));
    CHECK_OK(dorac_safetensors_write(b, &wb, 1, NULL, 0));
    char *index = join(dir, "model.safetensors.index.json");
    dorac_safetensors *st = NULL;
    struct {
        const char *json;
        const char *needle;
    } cases[] = {
        {"{\"weight_map\": {\"x\": \"a.safetensors\", \"y\": \"missing.safetensors\"}}", "missing.safetensors"},
        {"{\"weight_map\": {\"x\": \"b.safetensors\", \"y\": \"b.safetensors\"}}", "'x'"},
        {"{\"weight_map\": {\"x\": \"../a.safetensors\"}}", "../a.safetensors"},
        {"{\"weight_map\": {\"x\": 3}}", "weight_map"},
        {"{\"metadata\": {}}", "weight_map"},
        {"[]", "object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(write_bytes(index, cases[i].json, strlen(cases[i].json)));
        int rc = dorac_safetensors_open(&st, dir);
        CHECK(rc == DORAC_E_FORMAT || rc == DORAC_E_IO);
        CHECK(st == NULL);
        CHECK_MESSAGE(cases[i].needle);
    }
    /* the same tensor name in two shards */
    CHECK_OK(dorac_safetensors_write(b, &wa, 1, NULL, 0));
    const char *dup = "{\"weight_map\": {\"x\": \"a.safetensors\", \"z\": \"b.safetensors\"}}";
    CHECK(write_bytes(index, dup, strlen(dup)));
    CHECK_STATUS(dorac_safetensors_open(&st, index), DORAC_E_FORMAT);
    CHECK_MESSAGE("'x'", "a.safetensors", "b.safetensors");
    /* a good index works */
    const char *good = "{\"weight_map\": {\"x\": \"a.safetensors\"}}";
    CHECK(write_bytes(index, good, strlen(good)));
    CHECK_OK(dorac_safetensors_open(&st, index));
    CHECK(dorac_safetensors_find(st, "x") != NULL);
    dorac_safetensors_close(st);
    /* a folder with several .safetensors files and no index or model.safetensors */
    unlink(index);
    CHECK_STATUS(dorac_safetensors_open(&st, dir), DORAC_E_IO);
    CHECK_MESSAGE("badindex");
    free(index);
    free(a);
    free(b);
    free(dir);
}

/* ---- one test per bad input ----------------------------------------------- */

static void test_bad_files(void) {
    unsigned char zeros[64] = {0};

    /* a truncated file: the reference file cut short inside its data */
    size_t n;
    unsigned char *ref = read_bytes(IO_FIXTURES "/st_ref.safetensors", &n);
    char *cut = join(scratch, "truncated.safetensors");
    CHECK(ref && write_bytes(cut, ref, n - 9));
    dorac_safetensors *st = NULL;
    CHECK_STATUS(dorac_safetensors_open(&st, cut), DORAC_E_FORMAT);
    CHECK_MESSAGE("truncated.safetensors", "truncated");
    /* cut inside the header: the header length now exceeds the file */
    CHECK(write_bytes(cut, ref, 40));
    CHECK_STATUS(dorac_safetensors_open(&st, cut), DORAC_E_FORMAT);
    CHECK_MESSAGE("truncated.safetensors", "header length");
    /* shorter than the length prefix itself */
    CHECK(write_bytes(cut, ref, 5));
    CHECK_STATUS(dorac_safetensors_open(&st, cut), DORAC_E_FORMAT);
    CHECK_MESSAGE("truncated.safetensors", "8-byte");
    free(ref);
    free(cut);

    /* a header length far larger than the file (checked before any read) */
    unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    char *hp = join(scratch, "huge_header.safetensors");
    CHECK(write_bytes(hp, huge, sizeof huge));
    CHECK_STATUS(dorac_safetensors_open(&st, hp), DORAC_E_FORMAT);
    CHECK_MESSAGE("huge_header.safetensors", "header length");
    free(hp);

    CHECK_BAD_FILE("overlap.safetensors",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                   zeros, 16, DORAC_E_FORMAT, "'a'", "'b'", "overlap");
    CHECK_BAD_FILE("out_of_range.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
                   zeros, 16, DORAC_E_FORMAT, "'a'", "data section");
    CHECK_BAD_FILE("reversed.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", zeros,
                   16, DORAC_E_FORMAT, "'a'");
    CHECK_BAD_FILE("span.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", zeros,
                   16, DORAC_E_FORMAT, "'a'", "24 bytes", "span 16");
    CHECK_BAD_FILE("span_dtype.safetensors", "{\"a\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                   zeros, 16, DORAC_E_FORMAT, "'a'", "BF16");
    CHECK_BAD_FILE("dtype.safetensors", "{\"a\":{\"dtype\":\"F7\",\"shape\":[4],\"data_offsets\":[0,16]}}", zeros,
                   16, DORAC_E_FORMAT, "'a'", "dtype", "F7");
    CHECK_BAD_FILE("dtype_type.safetensors", "{\"a\":{\"dtype\":4,\"shape\":[4],\"data_offsets\":[0,16]}}", zeros, 16,
                   DORAC_E_FORMAT, "'a'", "dtype");
    CHECK_BAD_FILE("utf8.safetensors", "{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", zeros,
                   16, DORAC_E_FORMAT, "UTF-8");
    CHECK_BAD_FILE("overlong.safetensors", "{\"\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                   zeros, 16, DORAC_E_FORMAT, "UTF-8");
    CHECK_BAD_FILE("not_object.safetensors", "[1, 2, 3]", zeros, 0, DORAC_E_FORMAT, "not an object");
    CHECK_BAD_FILE("syntax.safetensors", "{\"a\": {\"dtype\": \"F32\",", zeros, 0, DORAC_E_FORMAT, "invalid JSON");
    CHECK_BAD_FILE("empty_header.safetensors", "", zeros, 0, DORAC_E_FORMAT, "invalid JSON");
    CHECK_BAD_FILE("duplicate.safetensors",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                   zeros, 8, DORAC_E_FORMAT, "duplicate");
    CHECK_BAD_FILE("no_offsets.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", zeros, 4, DORAC_E_FORMAT,
                   "'a'", "data_offsets");
    CHECK_BAD_FILE("no_shape.safetensors", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", zeros, 4,
                   DORAC_E_FORMAT, "'a'", "shape");
    CHECK_BAD_FILE("neg_dim.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", zeros,
                   4, DORAC_E_FORMAT, "'a'", "negative");
    CHECK_BAD_FILE("float_dim.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}",
                   zeros, 4, DORAC_E_FORMAT, "'a'", "integers");
    CHECK_BAD_FILE("overflow.safetensors",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,4]}}", zeros, 4,
                   DORAC_E_FORMAT, "'a'", "overflow");
    CHECK_BAD_FILE("overflow_bits.safetensors",
                   "{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4]}}", zeros, 4,
                   DORAC_E_FORMAT, "'a'", "overflow");
    CHECK_BAD_FILE("big_offset.safetensors",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551612,0]}}", zeros, 4,
                   DORAC_E_FORMAT, "integer");
    CHECK_BAD_FILE("sub_byte.safetensors", "{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", zeros,
                   2, DORAC_E_FORMAT, "'a'", "whole bytes");
    CHECK_BAD_FILE("dims.safetensors",
                   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", zeros, 1,
                   DORAC_E_UNSUPPORTED, "'a'", "9 dimensions");
    CHECK_BAD_FILE("meta.safetensors", "{\"__metadata__\":{\"k\":1}}", zeros, 0, DORAC_E_FORMAT, "__metadata__", "'k'");
    CHECK_BAD_FILE("meta_type.safetensors", "{\"__metadata__\":[]}", zeros, 0, DORAC_E_FORMAT, "__metadata__");
    CHECK_BAD_FILE("entry.safetensors", "{\"a\":[0,4]}", zeros, 0, DORAC_E_FORMAT, "'a'", "not an object");

    /* Valid corner cases: zero-size tensors may share an offset; gaps are allowed. */
    char *ok = write_st("corner.safetensors",
                        "{\"z1\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                        "\"z2\":{\"dtype\":\"F16\",\"shape\":[0,7],\"data_offsets\":[4,4]},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"gap\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,12]}}",
                        8, zeros, 16);
    CHECK_OK(dorac_safetensors_open(&st, ok));
    CHECK(dorac_safetensors_count(st) == 4);
    dorac_safetensors_close(st);
    free(ok);

    /* a path that does not exist */
    CHECK_STATUS(dorac_safetensors_open(&st, "tests/fixtures/io/no-such-model"), DORAC_E_IO);
    CHECK_MESSAGE("no-such-model");
    /* a folder with nothing in it */
    char *empty_dir = join(scratch, "emptydir");
    mkdir(empty_dir, 0777);
    CHECK_STATUS(dorac_safetensors_open(&st, empty_dir), DORAC_E_IO);
    CHECK_MESSAGE("emptydir");
    free(empty_dir);

    /* in-memory images */
    CHECK_STATUS(dorac_safetensors_open_memory(&st, zeros, 3, "mem"), DORAC_E_FORMAT);
    CHECK_MESSAGE("mem");
    CHECK_STATUS(dorac_safetensors_open_memory(&st, NULL, 0, NULL), DORAC_E_FORMAT);
}

static void test_bad_writes(void) {
    float x[2] = {0};
    char *path = join(scratch, "w.safetensors");
    dorac_st_write_tensor dup[2] = {
        {.name = "x", .dtype = DORAC_DTYPE_F32, .n_dims = 1, .shape = {2}, .data = x},
        {.name = "x", .dtype = DORAC_DTYPE_F16, .n_dims = 1, .shape = {1}, .data = x},
    };
    CHECK_STATUS(dorac_safetensors_write(path, dup, 2, NULL, 0), DORAC_E_INVALID);
    CHECK_MESSAGE("'x'", "twice");
    dorac_st_write_tensor bad = {.name = "y", .dtype = (dorac_dtype)9, .n_dims = 1, .shape = {2}, .data = x};
    CHECK_STATUS(dorac_safetensors_write(path, &bad, 1, NULL, 0), DORAC_E_INVALID);
    CHECK_MESSAGE("'y'", "dtype");
    bad = (dorac_st_write_tensor){.name = "y", .dtype = DORAC_DTYPE_F32, .n_dims = 1, .shape = {-2}, .data = x};
    CHECK_STATUS(dorac_safetensors_write(path, &bad, 1, NULL, 0), DORAC_E_INVALID);
    bad = (dorac_st_write_tensor){.name = "__metadata__", .dtype = DORAC_DTYPE_F32, .n_dims = 1, .shape = {2}, .data = x};
    CHECK_STATUS(dorac_safetensors_write(path, &bad, 1, NULL, 0), DORAC_E_INVALID);
    bad = (dorac_st_write_tensor){.name = "bad\xff", .dtype = DORAC_DTYPE_F32, .n_dims = 1, .shape = {2}, .data = x};
    CHECK_STATUS(dorac_safetensors_write(path, &bad, 1, NULL, 0), DORAC_E_INVALID);
    bad = (dorac_st_write_tensor){.name = "n", .dtype = DORAC_DTYPE_F32, .n_dims = 1, .shape = {2}, .data = NULL};
    CHECK_STATUS(dorac_safetensors_write(path, &bad, 1, NULL, 0), DORAC_E_INVALID);
    const char *meta[] = {"k", "v", "k", "w"};
    CHECK_STATUS(dorac_safetensors_write(path, dup, 1, meta, 2), DORAC_E_INVALID);
    CHECK_MESSAGE("'k'");
    char *nodir = join(scratch, "no/such/dir/w.safetensors");
    CHECK_STATUS(dorac_safetensors_write(nodir, dup, 1, NULL, 0), DORAC_E_IO);
    CHECK_MESSAGE("no/such/dir");
    CHECK(access(path, F_OK) != 0); /* nothing written by a failed call */
    CHECK(count_entries_containing(scratch, ".tmp-") == 0);
    free(nodir);
    free(path);
}

int main(void) {
    scratch = scratch_dir("st");
    test_reference_file();
    test_unsupported_dtypes();
    test_round_trip();
    test_unaligned();
    test_sharded();
    test_bad_index();
    test_bad_files();
    test_bad_writes();
    rm_tree(scratch);
    free(scratch);
    return test_report();
}
