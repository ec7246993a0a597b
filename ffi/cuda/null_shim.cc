/*
 * A stand-in for libduaf_cuda.so with the same symbols (duaf_cuda.h) that does no device work:
 * memory is host memory (so upload and download move real bytes) and every kernel
 * returns at once. It measures the cuda backend's host side -- autograd, batching, sampling, FFI
 * transitions, bounds checks -- on a machine without a GPU, which is what bounds a training step
 * on the GPU when kernels are small. Results of a run on it are meaningless; its time is not.
 *
 *   c++ -std=c++17 -O2 -shared -fPIC -o ffi/cuda/build/libduaf_null.so ffi/cuda/null_shim.cc
 *   DUAF_CUDA_LIB=ffi/cuda/build/libduaf_null.so duaf train ... --backend cuda --profile
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "block_pool.h"
#include "duaf_cuda.h"

static const char *last_error = "";

int duaf_init(void) { return 0; }
const char *duaf_last_error(void) { return last_error; }
const char *duaf_info(void) { return "null shim (no device work; host-side timing only)"; }
int duaf_set_cublas(int on) { return on ? -1 : 0; }
int duaf_using_cublas(void) { return 0; }
int duaf_sync(void) { return 0; }

/* Memory is host memory carved by the shim's own pool (block_pool.h), so allocation costs what
 * it costs there and the pool's behaviour is tested without a GPU. */
static void host_free(void *p) { free(p); }
static duaf::BlockPool pool(malloc, host_free);

void *duaf_alloc(int32_t n) {
  void *p = pool.alloc((size_t)(n < 1 ? 1 : n) * 4);
  if (!p) last_error = "null shim: out of host memory";
  return p;
}
int duaf_free(void *p) {
  if (pool.free(p)) return 0;
  last_error = "free of a pointer the pool did not allocate";
  return -1;
}
int duaf_empty_cache(void) {
  pool.release_cached();
  return 0;
}
void duaf_pool_stats(double *out) { pool.write_stats(out); }
int duaf_upload(void *dst, const void *src, int32_t n) {
  memcpy(dst, src, (size_t)n * 4);
  return 0;
}
int duaf_download(void *dst, const void *src, int32_t n) {
  memcpy(dst, src, (size_t)n * 4);
  return 0;
}
/* Fills are kernels on the device, so they cost the host nothing here either. */
int duaf_fill_f32(float *p, int32_t n, float v) {
  (void)p, (void)n, (void)v;
  return 0;
}
int duaf_fill_i32(int32_t *p, int32_t n, int32_t v) {
  (void)p, (void)n, (void)v;
  return 0;
}
int duaf_copy2d(const void *src, int32_t src_stride, void *dst, int32_t dst_stride, int32_t rows,
                int32_t cols, int32_t accumulate) {
  (void)src, (void)src_stride, (void)dst, (void)dst_stride, (void)rows, (void)cols,
      (void)accumulate;
  return 0;
}
int duaf_gemm(int32_t trans_a, int32_t trans_b, int32_t m, int32_t n, int32_t k, float alpha,
              const float *a, int32_t stride_a, const float *b, int32_t stride_b, float beta,
              float *c, int32_t stride_c, int32_t batch, int32_t lda, int32_t ldb, int32_t ldc,
              int32_t batch2, int32_t stride_a2, int32_t stride_b2, int32_t stride_c2) {
  (void)trans_a, (void)trans_b, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)stride_a,
      (void)b, (void)stride_b, (void)beta, (void)c, (void)stride_c, (void)batch, (void)lda,
      (void)ldb, (void)ldc, (void)batch2, (void)stride_a2, (void)stride_b2, (void)stride_c2;
  return 0;
}
int duaf_unary(int32_t op, const float *x, float *out, int32_t n, float alpha) {
  (void)op, (void)x, (void)out, (void)n, (void)alpha;
  return 0;
}
int duaf_unary_grad(int32_t op, const float *x, const float *y, const float *g, float *out,
                    int32_t n, float alpha) {
  (void)op, (void)x, (void)y, (void)g, (void)out, (void)n, (void)alpha;
  return 0;
}
int duaf_binary(int32_t op, const float *a, const int32_t *a_strides, const float *b,
                const int32_t *b_strides, float *out, const int32_t *shape, int32_t rank) {
  (void)op, (void)a, (void)a_strides, (void)b, (void)b_strides, (void)out, (void)shape,
      (void)rank;
  return 0;
}
int duaf_reduce_sum(const float *x, const int32_t *shape, int32_t rank, float *out,
                    const int32_t *out_strides, int32_t out_size, int32_t accumulate) {
  (void)x, (void)shape, (void)rank, (void)out, (void)out_strides, (void)out_size,
      (void)accumulate;
  return 0;
}
int duaf_axpy(const float *x, float *out, int32_t n, float alpha) {
  (void)x, (void)out, (void)n, (void)alpha;
  return 0;
}
int duaf_sum_squares(const float *x, int32_t n, double *result) {
  (void)x, (void)n;
  *result = 0;
  return 0;
}
int duaf_permute(const void *x, const int32_t *shape, const int32_t *perm, int32_t rank,
                 void *out) {
  (void)x, (void)shape, (void)perm, (void)rank, (void)out;
  return 0;
}
int duaf_softmax(const float *x, float *out, int32_t rows, int32_t cols, int32_t log) {
  (void)x, (void)out, (void)rows, (void)cols, (void)log;
  return 0;
}
int duaf_softmax_grad(const float *y, const float *g, float *out, int32_t rows, int32_t cols,
                      int32_t log, float scale) {
  (void)y, (void)g, (void)out, (void)rows, (void)cols, (void)log, (void)scale;
  return 0;
}
int duaf_masked_softmax(const float *x, const float *mask, float *out, int32_t rows, int32_t cols,
                        float scale, int32_t heads, int32_t q, int32_t sb, int32_t sh, int32_t sq) {
  (void)x, (void)mask, (void)out, (void)rows, (void)cols, (void)scale, (void)heads, (void)q,
      (void)sb, (void)sh, (void)sq;
  return 0;
}
int duaf_layer_norm(const float *x, const float *gamma, const float *beta, float *out, float *mean,
                    float *rstd, int32_t rows, int32_t cols, float eps) {
  (void)x, (void)gamma, (void)beta, (void)out, (void)mean, (void)rstd, (void)rows, (void)cols,
      (void)eps;
  return 0;
}
int duaf_layer_norm_grad(const float *x, const float *gamma, const float *mean, const float *rstd,
                         const float *g, float *dx, float *dgamma, float *dbeta, int32_t rows,
                         int32_t cols) {
  (void)x, (void)gamma, (void)mean, (void)rstd, (void)g, (void)dx, (void)dgamma, (void)dbeta,
      (void)rows, (void)cols;
  return 0;
}
int duaf_add_layer_norm(const float *a, const float *b, float *sum, const float *gamma,
                        const float *beta, float *out, float *mean, float *rstd, int32_t rows,
                        int32_t cols, float eps, int32_t drop, double p, uint32_t seed) {
  (void)a, (void)b, (void)sum, (void)gamma, (void)beta, (void)out, (void)mean, (void)rstd,
      (void)rows, (void)cols, (void)eps, (void)drop, (void)p, (void)seed;
  return 0;
}
int duaf_attention(const float *q, const float *k, const float *v, const float *mask,
                   const int32_t *steps, float *probs, float *out, int32_t batch, int32_t lq,
                   int32_t lk, int32_t d, int32_t heads, float scale, int32_t sb, int32_t sh,
                   int32_t sq, int32_t drop, double p, uint32_t seed) {
  (void)q, (void)k, (void)v, (void)mask, (void)steps, (void)probs, (void)out, (void)batch,
      (void)lq, (void)lk, (void)d, (void)heads, (void)scale, (void)sb, (void)sh, (void)sq,
      (void)drop, (void)p, (void)seed;
  return 0;
}
int duaf_attention_grad(const float *q, const float *k, const float *v, const float *g,
                        const int32_t *steps, const float *probs, float *dq, float *dk, float *dv,
                        int32_t batch, int32_t lq, int32_t lk, int32_t d, int32_t heads,
                        float scale, int32_t drop, double p, uint32_t seed) {
  (void)q, (void)k, (void)v, (void)g, (void)steps, (void)probs, (void)dq, (void)dk, (void)dv,
      (void)batch, (void)lq, (void)lk, (void)d, (void)heads, (void)scale, (void)drop, (void)p,
      (void)seed;
  return 0;
}
int duaf_modality_fusion(const float *e0, const float *e1, const float *e2, const float *e3,
                         int32_t m, const float *t, const float *q, float *h, float *omega,
                         float *keys, int32_t rows, int32_t dim, float scale) {
  (void)e0, (void)e1, (void)e2, (void)e3, (void)m, (void)t, (void)q, (void)h, (void)omega,
      (void)keys, (void)rows, (void)dim, (void)scale;
  return 0;
}
int duaf_modality_fusion_grad(const float *e0, const float *e1, const float *e2, const float *e3,
                              float *ge0, float *ge1, float *ge2, float *ge3, int32_t m,
                              const float *q, const float *omega, const float *keys,
                              const float *gh, const float *gomega, float *gt, float *gq,
                              int32_t rows, int32_t dim, float scale) {
  (void)e0, (void)e1, (void)e2, (void)e3, (void)ge0, (void)ge1, (void)ge2, (void)ge3, (void)m,
      (void)q, (void)omega, (void)keys, (void)gh, (void)gomega, (void)gt, (void)gq, (void)rows, (void)dim,
      (void)scale;
  return 0;
}
int duaf_ce_block(const float *x, const int32_t *targets, float *lse, float *picked, int32_t rows,
                  int32_t cols, int32_t col_offset, int32_t first) {
  (void)x, (void)targets, (void)lse, (void)picked, (void)rows, (void)cols, (void)col_offset,
      (void)first;
  return 0;
}
int duaf_ce_block_grad(float *x, const int32_t *targets, const float *lse, const float *w,
                       int32_t rows, int32_t cols, int32_t col_offset) {
  (void)x, (void)targets, (void)lse, (void)w, (void)rows, (void)cols, (void)col_offset;
  return 0;
}
int duaf_gather(const void *table, int32_t table_rows, const int32_t *idx, void *out, int32_t n,
                int32_t dim) {
  (void)table, (void)table_rows, (void)idx, (void)out, (void)n, (void)dim;
  return 0;
}
int duaf_gather_add(const float *table, int32_t table_rows, const int32_t *idx, const float *b,
                    float *out, int32_t n, int32_t dim) {
  (void)table, (void)table_rows, (void)idx, (void)b, (void)out, (void)n, (void)dim;
  return 0;
}
int duaf_scatter_add(const float *g, const int32_t *idx, float *out, int32_t out_rows, int32_t n,
                     int32_t dim) {
  (void)g, (void)idx, (void)out, (void)out_rows, (void)n, (void)dim;
  return 0;
}
int duaf_pick(const float *x, const int32_t *idx, float *out, int32_t rows, int32_t cols) {
  (void)x, (void)idx, (void)out, (void)rows, (void)cols;
  return 0;
}
int duaf_rank_rows(const float *x, const int32_t *targets, const int32_t *ex_offsets,
                   const int32_t *ex_cols, int32_t *out, int32_t rows, int32_t cols) {
  (void)x, (void)targets, (void)ex_offsets, (void)ex_cols, (void)out, (void)rows, (void)cols;
  return 0;
}
int duaf_pick_grad(const float *g, const int32_t *idx, float *out, int32_t rows, int32_t cols) {
  (void)g, (void)idx, (void)out, (void)rows, (void)cols;
  return 0;
}
int duaf_dropout(const float *x, float *out, int32_t n, double p, uint32_t seed) {
  (void)x, (void)out, (void)n, (void)p, (void)seed;
  return 0;
}
int duaf_dropout_rows(const float *x, float *out, const int32_t *rows, int32_t n, int32_t cols,
                      double p, uint32_t seed) {
  (void)x, (void)out, (void)rows, (void)n, (void)cols, (void)p, (void)seed;
  return 0;
}
int duaf_adam(float *p, const float *g, float *m, float *v, int32_t n, double lr, double beta1,
              double beta2, double eps, double weight_decay, int32_t decoupled, double bc1,
              double bc2) {
  (void)p, (void)g, (void)m, (void)v, (void)n, (void)lr, (void)beta1, (void)beta2, (void)eps,
      (void)weight_decay, (void)decoupled, (void)bc1, (void)bc2;
  return 0;
}
