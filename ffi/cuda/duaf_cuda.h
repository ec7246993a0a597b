/*
 * C ABI of libduaf_cuda.so, the CUDA side of duaf's `cuda` backend (core/backends/cuda.ts).
 *
 * Conventions, chosen so the Deno FFI calls stay on V8's fast path:
 *  - every count is an int32 element count (storages are limited to 2^31-1 elements);
 *  - pointers are device addresses already advanced to the caller's element offset;
 *  - shape/stride arrays are small host int32 arrays (rank <= DUAF_MAX_RANK), copied into kernel
 *    parameters, so no metadata lives on the device;
 *  - every function returns 0 on success or a nonzero code, with duaf_last_error() saying why.
 * All work is queued on the legacy default stream, so kernels, cuBLAS calls and the memory pool's
 * reuse of freed blocks are ordered without explicit synchronization.
 */
#ifndef DUAF_CUDA_H
#define DUAF_CUDA_H

#include <stdint.h>

#define DUAF_MAX_RANK 6
/* Returned by an optional fused call that does not take these shapes: nothing was queued, and
 * the caller makes the separate calls. */
#define DUAF_DECLINED (-1)

#ifdef __cplusplus
extern "C" {
#endif

/* Unary op codes: the order of UnaryOp in core/backend.ts. */
enum {
  DUAF_NEG = 0,
  DUAF_EXP,
  DUAF_LOG,
  DUAF_SQRT,
  DUAF_TANH,
  DUAF_SIGMOID,
  DUAF_GELU,
  DUAF_RELU,
  DUAF_LEAKY_RELU,
  DUAF_SOFTPLUS,
  DUAF_SIN,
  DUAF_COS,
  DUAF_ABS,
  DUAF_SQUARE,
  DUAF_SCALE,
  DUAF_ADD_SCALAR,
  DUAF_POW_SCALAR,
  DUAF_UNARY_COUNT
};

/* Binary op codes: the order of BinaryOp in core/backend.ts. */
enum { DUAF_ADD = 0, DUAF_SUB, DUAF_MUL, DUAF_DIV };

/* ---- lifecycle ---------------------------------------------------------------------------- */
/* Selects the device (DUAF_CUDA_DEVICE, default 0), creates the context and loads cuBLAS. */
int duaf_init(void);
const char *duaf_last_error(void);
/* One line: device, compute capability, memory, GEMM engine. Valid after duaf_init. */
const char *duaf_info(void);
/* 1: GEMM runs on cuBLAS, 0: on the built-in kernel. Asking for cuBLAS fails if none loaded. */
int duaf_set_cublas(int on);
int duaf_using_cublas(void);
/* Waits for queued work; reports asynchronous kernel faults and out-of-range indices. */
int duaf_sync(void);

/* ---- memory ------------------------------------------------------------------------------- */
/* n elements of 4 bytes from the pool; NULL on failure (see duaf_last_error). */
void *duaf_alloc(int32_t n);
int duaf_free(void *p);
/* Returns entirely free cached segments to the driver. */
int duaf_empty_cache(void);
/* out[0] bytes in use, out[1] bytes cached, out[2] segments allocated (cudaMalloc calls),
 * out[3] live blocks, out[4] peak bytes in use. */
void duaf_pool_stats(double *out);
int duaf_upload(void *dst, const void *src, int32_t n);
int duaf_download(void *dst, const void *src, int32_t n);
int duaf_fill_f32(float *p, int32_t n, float v);
int duaf_fill_i32(int32_t *p, int32_t n, int32_t v);
/* accumulate: 0 copy (bitwise, any 4-byte dtype), 1 float +=, 2 int32 +=. */
int duaf_copy2d(const void *src, int32_t src_stride, void *dst, int32_t dst_stride, int32_t rows,
                int32_t cols, int32_t accumulate);

/* ---- dense -------------------------------------------------------------------------------- */
/* Row-major batched strided GEMM with the semantics of GemmArgs (core/backend.ts), row strides
   lda / ldb / ldc and an inner batch of batch2 items stride_*2 apart. */
int duaf_gemm(int32_t trans_a, int32_t trans_b, int32_t m, int32_t n, int32_t k, float alpha,
              const float *a, int32_t stride_a, const float *b, int32_t stride_b, float beta,
              float *c, int32_t stride_c, int32_t batch, int32_t lda, int32_t ldb, int32_t ldc,
              int32_t batch2, int32_t stride_a2, int32_t stride_b2, int32_t stride_c2);

/* ---- elementwise -------------------------------------------------------------------------- */
int duaf_unary(int32_t op, const float *x, float *out, int32_t n, float alpha);
int duaf_unary_grad(int32_t op, const float *x, const float *y, const float *g, float *out,
                    int32_t n, float alpha);
int duaf_binary(int32_t op, const float *a, const int32_t *a_strides, const float *b,
                const int32_t *b_strides, float *out, const int32_t *shape, int32_t rank);
int duaf_reduce_sum(const float *x, const int32_t *shape, int32_t rank, float *out,
                    const int32_t *out_strides, int32_t out_size, int32_t accumulate);
int duaf_axpy(const float *x, float *out, int32_t n, float alpha);
/* Writes the sum of squares (accumulated in double, fixed order) to *result on the host. */
int duaf_sum_squares(const float *x, int32_t n, double *result);
int duaf_permute(const void *x, const int32_t *shape, const int32_t *perm, int32_t rank,
                 void *out);

/* ---- row-wise ------------------------------------------------------------------------------ */
int duaf_softmax(const float *x, float *out, int32_t rows, int32_t cols, int32_t log);
int duaf_softmax_grad(const float *y, const float *g, float *out, int32_t rows, int32_t cols,
                      int32_t log, float scale);
/* softmax(x * scale + mask) with the semantics of Backend.maskedSoftmax (mask may be NULL). */
int duaf_masked_softmax(const float *x, const float *mask, float *out, int32_t rows, int32_t cols,
                        float scale, int32_t heads, int32_t q, int32_t sb, int32_t sh, int32_t sq);
int duaf_layer_norm(const float *x, const float *gamma, const float *beta, float *out, float *mean,
                    float *rstd, int32_t rows, int32_t cols, float eps);
int duaf_layer_norm_grad(const float *x, const float *gamma, const float *mean, const float *rstd,
                         const float *g, float *dx, float *dgamma, float *dbeta, int32_t rows,
                         int32_t cols);
/* layerNorm(a + b), or of dropout(a, p, seed) + b when drop != 0, with the separate calls' bits;
 * the sum is written to `sum` unless it is NULL. */
int duaf_add_layer_norm(const float *a, const float *b, float *sum, const float *gamma,
                        const float *beta, float *out, float *mean, float *rstd, int32_t rows,
                        int32_t cols, float eps, int32_t drop, double p, uint32_t seed);

/* ---- attention's core (Backend.attention) --------------------------------------------------- */
/* q [batch, lq, d], k and v [batch, lk, d], heads in column slices of d / heads; mask additive
 * with duaf_masked_softmax's row strides (NULL: none); probs [batch, heads, lq, lk] gets the
 * softmax, out [batch, lq, d] the mix of the values by its dropout (drop != 0) with the mask
 * duaf_dropout draws for probs, or with steps (int32 [batch], lq = 1) for row steps[b] of a
 * [batch, heads, lk, lk] pass. DUAF_DECLINED when a head's keys and values do not fit in a
 * block's shared memory. */
int duaf_attention(const float *q, const float *k, const float *v, const float *mask,
                   const int32_t *steps, float *probs, float *out, int32_t batch, int32_t lq,
                   int32_t lk, int32_t d, int32_t heads, float scale, int32_t sb, int32_t sh,
                   int32_t sq, int32_t drop, double p, uint32_t seed);
/* Its gradient from g [batch, lq, d] and the kept probs: dq, dk and dv written whole. */
int duaf_attention_grad(const float *q, const float *k, const float *v, const float *g,
                        const int32_t *steps, const float *probs, float *dq, float *dk, float *dv,
                        int32_t batch, int32_t lq, int32_t lk, int32_t d, int32_t heads,
                        float scale, int32_t drop, double p, uint32_t seed);

/* ---- DuAF fusion (core/ops/nn.ts modalityFusion) ------------------------------------------ */
/* e0..e3: the m (1..4) modality rows [rows, dim] (unused ones NULL); keys [rows, m, dim] =
 * tanh(e_j + t), omega [rows, m] = softmax_j(scale <keys_j, q>), h = sum_j omega_j e_j. */
int duaf_modality_fusion(const float *e0, const float *e1, const float *e2, const float *e3,
                         int32_t m, const float *t, const float *q, float *h, float *omega,
                         float *keys, int32_t rows, int32_t dim, float scale);
/* Its gradient given gh and gomega [rows, m] (NULL: none): ge0..ge3, gt and gq overwritten. */
int duaf_modality_fusion_grad(const float *e0, const float *e1, const float *e2, const float *e3,
                              float *ge0, float *ge1, float *ge2, float *ge3, int32_t m,
                              const float *q, const float *omega, const float *keys,
                              const float *gh, const float *gomega, float *gt, float *gq,
                              int32_t rows, int32_t dim, float scale);

/* ---- chunked cross-entropy (core/ops/linear_ce.ts) ----------------------------------------- */
/* x [rows, cols]: logits of columns col_offset.. of each row. lse[r] = log-sum-exp of the block's
 * row (first) or log(e^lse + e^block); picked[r] = the target's logit when it falls in the block
 * (the first block writes 0 for the others). */
int duaf_ce_block(const float *x, const int32_t *targets, float *lse, float *picked, int32_t rows,
                  int32_t cols, int32_t col_offset, int32_t first);
/* In place: x[r, c] = w[r] * (exp(x[r, c] - lse[r]) - (targets[r] == col_offset + c)). */
int duaf_ce_block_grad(float *x, const int32_t *targets, const float *lse, const float *w,
                       int32_t rows, int32_t cols, int32_t col_offset);

/* ---- indexing ------------------------------------------------------------------------------ */
/* Out-of-range indices write nothing and make the next duaf_sync/duaf_download fail. */
int duaf_gather(const void *table, int32_t table_rows, const int32_t *idx, void *out, int32_t n,
                int32_t dim);
/* out[i] = table[idx[i]] + b[i] (rows of dim floats), the bits of gather then binary add. */
int duaf_gather_add(const float *table, int32_t table_rows, const int32_t *idx, const float *b,
                    float *out, int32_t n, int32_t dim);
/* Deterministic: rows are summed in index order (stable sort) over fixed chunks, no float
 * atomics. */
int duaf_scatter_add(const float *g, const int32_t *idx, float *out, int32_t out_rows, int32_t n,
                     int32_t dim);
int duaf_pick(const float *x, const int32_t *idx, float *out, int32_t rows, int32_t cols);
/* out[r] = how many columns of x [rows, cols] score at least x[r, targets[r]], the target and
 * the excluded columns ex_cols[ex_offsets[r] .. ex_offsets[r + 1]) other than it not counted
 * (Backend.rankRows). Bad targets or columns make the next duaf_sync/duaf_download fail. */
int duaf_rank_rows(const float *x, const int32_t *targets, const int32_t *ex_offsets,
                   const int32_t *ex_cols, int32_t *out, int32_t rows, int32_t cols);
int duaf_pick_grad(const float *g, const int32_t *idx, float *out, int32_t rows, int32_t cols);

/* ---- randomness, optimizer ---------------------------------------------------------------- */
int duaf_dropout(const float *x, float *out, int32_t n, double p, uint32_t seed);
/* Row r of x [n, cols] takes duaf_dropout's mask of row rows[r] of a larger [of, cols] tensor. */
int duaf_dropout_rows(const float *x, float *out, const int32_t *rows, int32_t n, int32_t cols,
                      double p, uint32_t seed);
int duaf_adam(float *p, const float *g, float *m, float *v, int32_t n, double lr, double beta1,
              double beta2, double eps, double weight_decay, int32_t decoupled, double bc1,
              double bc2);

#ifdef __cplusplus
}
#endif

#endif
