/* safetensors files: reading with full validation, and atomic writing.
 *
 * Format (huggingface/safetensors): 8 bytes N (u64 little-endian), N bytes of UTF-8 JSON
 * {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [b, e]}, ...}
 * padded with spaces so that 8 + N is a multiple of 8, then the tensor bytes
 * (little-endian, C order), offsets relative to the start of that buffer. The tensors
 * cover the buffer exactly: contiguous, no overlap, no holes.
 *
 * The reader checks everything the reference implementation checks (header length
 * against the file and a 100 MB limit, UTF-8 JSON starting with '{', known dtypes,
 * shape product x element size == offset span without overflow, offsets contiguous
 * from 0 to the end of the file, metadata values strings) and also rejects duplicate
 * names. Every error is one line naming the file and the problem.
 *
 * The writer lays the file out like the reference's serialize(): compact JSON with
 * __metadata__ first, tensors sorted by dtype alignment (descending) then by name. */
#ifndef NF_SAFETENSORS_H
#define NF_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "nf_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* In the reference's declaration order (its writer sorts on it). */
typedef enum {
    NF_DT_BOOL, NF_DT_U8, NF_DT_I8, NF_DT_F8_E5M2, NF_DT_F8_E4M3, NF_DT_I16, NF_DT_U16,
    NF_DT_F16, NF_DT_BF16, NF_DT_I32, NF_DT_U32, NF_DT_F32, NF_DT_F64, NF_DT_I64, NF_DT_U64,
    NF_DT_COUNT
} nf_dtype;

const char *nf_dtype_name(nf_dtype t);
size_t nf_dtype_size(nf_dtype t);
/* -1 for an unknown name. */
int nf_dtype_from_name(const char *name);

/* IEEE half and bfloat16 <-> float, rounding to nearest even; NaN stays NaN. */
uint16_t nf_f32_to_f16(float f);
float nf_f16_to_f32(uint16_t h);
uint16_t nf_f32_to_bf16(float f);
float nf_bf16_to_f32(uint16_t h);

#define NF_ST_MAX_DIMS 8

/* ---- writing ---- */

typedef struct {
    const char *name;
    nf_dtype dtype;       /* stored type */
    int ndim;             /* 0..NF_ST_MAX_DIMS (0 = a scalar) */
    int64_t shape[NF_ST_MAX_DIMS];
    /* Elements in the native C type of `dtype` (int64_t for I64, double for F64, ...),
     * except F16 and BF16, which take float and are rounded when written. */
    const void *data;
} nf_st_tensor;

typedef struct {
    const char *key, *value;
} nf_st_meta;

/* Write `path` atomically. Names must be unique, non-empty and not "__metadata__". */
nf_status nf_st_write(const char *path, const nf_st_tensor *tensors, int n_tensors,
                      const nf_st_meta *meta, int n_meta);

/* ---- reading ---- */

typedef struct {
    const char *name;
    nf_dtype dtype;
    int ndim;
    int64_t shape[NF_ST_MAX_DIMS];
    uint64_t count;          /* elements */
    uint64_t begin, end;     /* byte offsets into the data buffer */
} nf_st_info;

typedef struct nf_st_file nf_st_file;

/* Read and validate a whole file. */
nf_status nf_st_open(const char *path, nf_st_file **out);
/* Validate `n` bytes held in memory (copied); `name` is used in messages. */
nf_status nf_st_open_memory(const void *data, size_t n, const char *name, nf_st_file **out);
void nf_st_close(nf_st_file *f);

const char *nf_st_path(const nf_st_file *f);
int nf_st_count(const nf_st_file *f);
/* Tensors in file (offset) order. */
const nf_st_info *nf_st_at(const nf_st_file *f, int i);
/* NULL if absent (no error recorded). */
const nf_st_info *nf_st_find(const nf_st_file *f, const char *name);
/* Raw little-endian bytes of a tensor (info->end - info->begin of them). */
const void *nf_st_data(const nf_st_file *f, const nf_st_info *info);

int nf_st_meta_count(const nf_st_file *f);
void nf_st_meta_at(const nf_st_file *f, int i, const char **key, const char **value);
/* NULL if absent. */
const char *nf_st_meta_get(const nf_st_file *f, const char *key);

/* Convert tensor `name` (F32, F16, BF16 or F64) to float into out[0..count). With
 * expected_shape != NULL its shape must equal [expected_shape[0..ndim)]; either way
 * its element count must equal `count`. NF_ERR_CORRUPT if absent or mismatched
 * ("FILE: tensor NAME has shape [..], expected [..]"), NF_ERR_FORMAT for another dtype. */
nf_status nf_st_read_f32(const nf_st_file *f, const char *name, float *out, size_t count,
                         int ndim, const int64_t *expected_shape);
/* The same for integer tensors (I64, I32, U8, ... ; U64 must fit in int64) to int64_t. */
nf_status nf_st_read_i64(const nf_st_file *f, const char *name, int64_t *out, size_t count,
                         int ndim, const int64_t *expected_shape);

#ifdef __cplusplus
}
#endif
#endif
