/*
** safetensors.h — reading and writing safetensors files and sharded sets.
**
** Format (shared/REFERENCES.md): 8 bytes little-endian u64 header length N,
** N bytes of JSON, then the data. The JSON maps each tensor name to
** {"dtype", "shape", "data_offsets": [begin, end]}, offsets relative to the
** first byte after the header, plus an optional "__metadata__" string map.
**
** Reading validates everything before any tensor is exposed:
**   - the file has at least 8 bytes; N <= file size - 8 (checked before the
**     header is touched) and N <= 100 MB (the reference library's limit);
**   - the header is valid UTF-8 and a JSON object with no duplicate keys;
**   - each tensor has a string dtype the reference library knows, a shape of
**     at most 8 non-negative integers and two non-negative integer offsets;
**   - begin <= end <= size of the data section, and
**     product(shape) × dtype size == end - begin (overflow-checked);
**   - no two tensors' byte ranges overlap.
** Unlike the reference reader, gaps between tensors and bytes after the last
** one are accepted: they are harmless, and some writers leave them.
**
** Dtypes. Every dtype of the reference library opens (so an unrelated I64 or
** BOOL tensor, such as a position-id buffer, does not stop a model loading),
** but only F32, F16, BF16 and F64 tensors can be read: dorac_st_tensor_read
** on any other dtype fails with DORAC_E_UNSUPPORTED naming the file, the
** tensor and the dtype. An unknown dtype string is DORAC_E_FORMAT at open.
**
** The file is mmapped read-only and stays mapped until close; tensor data
** pointers point into the mapping (so they may be unaligned). A file
** truncated by another process while mapped can raise SIGBUS; that is the
** price of mmap. Only little-endian hosts are supported.
*/
#ifndef DORAC_IO_SAFETENSORS_H
#define DORAC_IO_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"

#define DORAC_ST_MAX_DIMS 8

/* One tensor of an open file. Every pointer stays valid until close. */
typedef struct dorac_st_tensor {
    const char *name;       /* the key in the header */
    const char *dtype_name; /* as the file spells it: "BF16", "I64", ... */
    dorac_dtype dtype;      /* valid only if dtype_supported */
    bool dtype_supported;   /* F32, F16, BF16 or F64: dorac_st_tensor_read works */
    int n_dims;             /* 0..DORAC_ST_MAX_DIMS; 0 is a scalar (one element) */
    int64_t shape[DORAC_ST_MAX_DIMS]; /* entries past n_dims are 0 */
    const void *data;       /* nbytes bytes inside the mapping; may be unaligned */
    size_t nbytes;          /* end - begin */
    const char *file;       /* path of the file holding the tensor, for messages */
} dorac_st_tensor;

/* One file, or a sharded set read through its index. */
typedef struct dorac_safetensors dorac_safetensors;

/* Opens path, which is one of:
**   - a .safetensors file;
**   - an index (model.safetensors.index.json or any *.json): its
**     "weight_map" names the shard files, which are opened from the index's
**     folder; every mapped tensor must be in the file it is mapped to, and a
**     tensor name may appear in only one shard;
**   - a folder holding model.safetensors.index.json, or else
**     model.safetensors, or else exactly one *.safetensors.index.json, or
**     else exactly one *.safetensors file (an adapter folder, say).
** Tensors are ordered by file (shards in the order of their names), then by
** offset. On failure *out is NULL and the message names the file. */
int dorac_safetensors_open(dorac_safetensors **out, const char *path);

/* Parses an in-memory safetensors image (for fuzzing and tests). buf is
** borrowed: it must stay valid and unchanged until close. name is used in
** messages and as each tensor's file. */
int dorac_safetensors_open_memory(dorac_safetensors **out, const void *buf, size_t n, const char *name);

size_t dorac_safetensors_count(const dorac_safetensors *st);

/* The i-th tensor, or NULL when i >= count. */
const dorac_st_tensor *dorac_safetensors_at(const dorac_safetensors *st, size_t i);

/* The tensor called name, or NULL if absent (O(log n)). */
const dorac_st_tensor *dorac_safetensors_find(const dorac_safetensors *st, const char *name);

/* The "__metadata__" value for key, or NULL if absent. For a sharded set the
** first shard holding the key answers. */
const char *dorac_safetensors_metadata(const dorac_safetensors *st, const char *key);

/* Number of elements: the product of the shape (1 for a scalar). */
size_t dorac_st_tensor_numel(const dorac_st_tensor *t);

/* Converts the tensor's data to dst_type into dst, which must hold numel
** elements of dst_type and be aligned for it. DORAC_E_UNSUPPORTED (naming
** file, tensor and dtype) when the dtype cannot be read; DORAC_E_INVALID for
** NULL arguments or a bad dst_type. */
int dorac_st_tensor_read(const dorac_st_tensor *t, void *dst, dorac_dtype dst_type);

/* Unmaps every file and frees st. st may be NULL. */
void dorac_safetensors_close(dorac_safetensors *st);

/* ---- writing ----------------------------------------------------------- */

typedef struct dorac_st_write_tensor {
    const char *name;    /* valid UTF-8, unique, not "__metadata__" */
    dorac_dtype dtype;   /* F32, F64, BF16 or F16: the data's type, written as is */
    int n_dims;          /* 0..DORAC_ST_MAX_DIMS */
    int64_t shape[DORAC_ST_MAX_DIMS];
    const void *data;    /* product(shape) elements, little-endian, C order */
} dorac_st_write_tensor;

/* Writes n tensors to path atomically (temp file, fsync, rename), laid out
** as the reference library lays them out, so the bytes are identical to
** safetensors.torch.save_file's: tensors sorted by descending dtype
** alignment (F64, F32, BF16, F16) then by name, stored contiguously from
** offset 0; compact JSON with "__metadata__" first (when n_metadata_pairs >
** 0) and keys dtype, shape, data_offsets; the header padded with spaces to a
** multiple of 8 bytes. metadata_kv holds n_metadata_pairs (key, value)
** pairs, keys unique. DORAC_E_INVALID names a bad tensor or key. */
int dorac_safetensors_write(const char *path, const dorac_st_write_tensor *t, size_t n,
                            const char *const *metadata_kv, size_t n_metadata_pairs);

/* Writes the tensors under dir the way transformers' save_pretrained shards
** them (huggingface_hub's split_state_dict_into_shards): walking t in order,
** a tensor larger than max_shard_bytes gets a shard of its own, otherwise a
** new shard starts when the current one would exceed max_shard_bytes. One
** shard is written as "<basename>.safetensors" with no index; several as
** "<basename>-0000k-of-0000N.safetensors" plus
** "<basename>.safetensors.index.json" holding
** {"metadata": {"total_parameters", "total_size"}, "weight_map"} (sorted
** keys, 2-space indent, trailing newline, as transformers writes it). Every
** shard gets the same metadata pairs. Each file is written atomically; make
** dir a temp folder (dorac_atomic_dir_begin) to make the whole set atomic.
** Shards left in dir by an earlier save are not removed. */
int dorac_safetensors_write_sharded(const char *dir, const char *basename, const dorac_st_write_tensor *t,
                                    size_t n, size_t max_shard_bytes, const char *const *metadata_kv,
                                    size_t n_metadata_pairs);

#endif
