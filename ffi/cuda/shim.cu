// libduaf_cuda.so: the CUDA side of duaf's `cuda` backend. See duaf_cuda.h for the ABI.
//
// cuBLAS is loaded at run time with dlopen so this file builds with nothing but nvcc and cudart
// (no cuBLAS headers or import library): the few entry points used are declared below with their
// documented C prototypes. Without cuBLAS the GEMM falls back to a tiled kernel in this file.
//
// Determinism: no float atomics anywhere. Reductions use a fixed decomposition (fixed grid,
// fixed tree, double accumulators for long sums) and scatterAdd sorts indices stably and sums
// each destination row in index order over fixed chunks, so two runs give identical bits.

#include "block_pool.h"
#include "duaf_cuda.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cub/device/device_radix_sort.cuh>
#include <deque>
#include <vector>

// ---------------------------------------------------------------------------------------------
// errors

static char g_err[1024] = "";
static char g_info[1024] = "";

static int fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_err, sizeof g_err, fmt, ap);
  va_end(ap);
  return 1;
}

#define CK(call)                                                                                   \
  do {                                                                                             \
    cudaError_t e_ = (call);                                                                       \
    if (e_ != cudaSuccess) return fail("%s: %s", #call, cudaGetErrorString(e_));                   \
  } while (0)

// Launch-time errors (bad configuration) surface here; faults inside kernels surface at the
// next synchronizing call (duaf_sync, duaf_download, duaf_sum_squares).
#define LAUNCHED(name)                                                                             \
  do {                                                                                             \
    cudaError_t e_ = cudaGetLastError();                                                           \
    if (e_ != cudaSuccess) return fail("%s launch: %s", name, cudaGetErrorString(e_));             \
  } while (0)

extern "C" const char *duaf_last_error(void) { return g_err; }
extern "C" const char *duaf_info(void) { return g_info; }

// Set by indexing kernels when an index is out of range; bit per kernel (see flag_names).
__device__ int d_bad_index = 0;
enum { BAD_GATHER = 1, BAD_SCATTER = 2, BAD_PICK = 4, BAD_PICK_GRAD = 8, BAD_RANK = 16 };

static int check_index_flag(void) {
  int h = 0;
  CK(cudaMemcpyFromSymbol(&h, d_bad_index, sizeof h));
  if (h == 0) return 0;
  const int zero = 0;
  CK(cudaMemcpyToSymbol(d_bad_index, &zero, sizeof zero));
  return fail("index out of range in%s%s%s%s%s", (h & BAD_GATHER) ? " gather" : "",
              (h & BAD_SCATTER) ? " scatterAdd" : "", (h & BAD_PICK) ? " pick" : "",
              (h & BAD_PICK_GRAD) ? " pickGrad" : "", (h & BAD_RANK) ? " rankRows" : "");
}

// ---------------------------------------------------------------------------------------------
// cuBLAS, resolved by dlsym

typedef struct cublasContext *cublasHandle_t;
enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_TF32_TENSOR_OP_MATH = 3 };
typedef int (*cublasCreate_fn)(cublasHandle_t *);
typedef int (*cublasGetVersion_fn)(cublasHandle_t, int *);
typedef int (*cublasSetMathMode_fn)(cublasHandle_t, int);
typedef int (*cublasSgemm_fn)(cublasHandle_t, int, int, int, int, int, const float *,
                              const float *, int, const float *, int, const float *, float *, int);
typedef int (*cublasSgemmStridedBatched_fn)(cublasHandle_t, int, int, int, int, int, const float *,
                                            const float *, int, long long, const float *, int,
                                            long long, const float *, float *, int, long long,
                                            int);

static struct {
  void *lib;
  cublasHandle_t handle;
  cublasSgemm_fn sgemm;
  cublasSgemmStridedBatched_fn sgemm_strided_batched;
  char name[256];
  int version;
} g_cublas;
static int g_use_cublas = 0;
static int g_initialized = 0;

static const char *cublas_status_name(int s) {
  switch (s) {
  case 1: return "CUBLAS_STATUS_NOT_INITIALIZED";
  case 3: return "CUBLAS_STATUS_ALLOC_FAILED";
  case 7: return "CUBLAS_STATUS_INVALID_VALUE";
  case 8: return "CUBLAS_STATUS_ARCH_MISMATCH";
  case 11: return "CUBLAS_STATUS_MAPPING_ERROR";
  case 13: return "CUBLAS_STATUS_EXECUTION_FAILED";
  case 14: return "CUBLAS_STATUS_INTERNAL_ERROR";
  case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
  default: return "cuBLAS error";
  }
}

// Loads cuBLAS from $DUAF_CUBLAS (a path, or "none" to force the built-in GEMM) or the usual
// sonames, newest first. Failure is not an error: the built-in GEMM takes over.
static void load_cublas(char *note, size_t note_len) {
  const char *env = getenv("DUAF_CUBLAS");
  if (env && strcmp(env, "none") == 0) {
    snprintf(note, note_len, "built-in GEMM (DUAF_CUBLAS=none)");
    return;
  }
  const char *names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"};
  const char *tried = NULL;
  if (env && *env) {
    g_cublas.lib = dlopen(env, RTLD_NOW | RTLD_LOCAL);
    tried = env;
  } else {
    for (size_t i = 0; i < sizeof names / sizeof *names && !g_cublas.lib; i++) {
      g_cublas.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
      tried = names[i];
    }
  }
  if (!g_cublas.lib) {
    snprintf(note, note_len, "built-in GEMM (no cuBLAS: %s)", env ? dlerror() : "libcublas.so.*");
    return;
  }
  cublasCreate_fn create = (cublasCreate_fn)dlsym(g_cublas.lib, "cublasCreate_v2");
  g_cublas.sgemm = (cublasSgemm_fn)dlsym(g_cublas.lib, "cublasSgemm_v2");
  g_cublas.sgemm_strided_batched =
      (cublasSgemmStridedBatched_fn)dlsym(g_cublas.lib, "cublasSgemmStridedBatched");
  if (!create || !g_cublas.sgemm || !g_cublas.sgemm_strided_batched) {
    snprintf(note, note_len, "built-in GEMM (%s lacks cublasSgemmStridedBatched)", tried);
    dlclose(g_cublas.lib);
    g_cublas.lib = NULL;
    return;
  }
  int st = create(&g_cublas.handle);
  if (st != 0) {
    snprintf(note, note_len, "built-in GEMM (cublasCreate: %s)", cublas_status_name(st));
    dlclose(g_cublas.lib);
    g_cublas.lib = NULL;
    return;
  }
  cublasGetVersion_fn ver = (cublasGetVersion_fn)dlsym(g_cublas.lib, "cublasGetVersion_v2");
  if (ver) ver(g_cublas.handle, &g_cublas.version);
  // FP32 by default, as PyTorch since 1.12; TF32 tensor cores only when asked for.
  const char *tf32 = getenv("DUAF_CUDA_TF32");
  cublasSetMathMode_fn mode = (cublasSetMathMode_fn)dlsym(g_cublas.lib, "cublasSetMathMode");
  int use_tf32 = tf32 && strcmp(tf32, "1") == 0 && mode;
  if (use_tf32) mode(g_cublas.handle, CUBLAS_TF32_TENSOR_OP_MATH);
  snprintf(g_cublas.name, sizeof g_cublas.name, "%s", tried);
  snprintf(note, note_len, "cuBLAS %d (%s%s)", g_cublas.version, tried, use_tf32 ? ", TF32" : "");
  g_use_cublas = 1;
}

extern "C" int duaf_init(void) {
  if (g_initialized) return 0;
  // cudart's own message for a missing driver is "insufficient driver version"; say it plainly.
  void *driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
  if (!driver) return fail("CUDA driver library libcuda.so.1 not found");
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return fail("cudaGetDeviceCount: %s", cudaGetErrorString(e));
  if (count == 0) return fail("cudaGetDeviceCount: 0 devices");
  const char *dev_env = getenv("DUAF_CUDA_DEVICE");
  int dev = dev_env ? atoi(dev_env) : 0;
  if (dev < 0 || dev >= count) return fail("DUAF_CUDA_DEVICE=%d but %d device(s)", dev, count);
  CK(cudaSetDevice(dev));
  CK(cudaFree(0)); // creates the context now, so its cost is not charged to the first kernel
  int major = 0, minor = 0;
  CK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  CK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, dev));
  int drv = 0, rt = 0;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  char note[320];
  load_cublas(note, sizeof note);
  snprintf(g_info, sizeof g_info, "%s (sm_%d%d, %.0f GiB, driver %d, runtime %d), %s", prop.name,
           major, minor, prop.totalGlobalMem / 1073741824.0, drv, rt, note);
  g_initialized = 1;
  return 0;
}

extern "C" int duaf_set_cublas(int on) {
  if (on && !g_cublas.lib) return fail("cuBLAS is not loaded");
  g_use_cublas = on ? 1 : 0;
  return 0;
}

extern "C" int duaf_using_cublas(void) { return g_use_cublas; }

extern "C" int duaf_sync(void) {
  CK(cudaDeviceSynchronize());
  return check_index_flag();
}

// ---------------------------------------------------------------------------------------------
// memory pool: cudaMalloc'd segments carved into blocks (block_pool.h)

static void *device_malloc(size_t bytes) {
  void *p = NULL;
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    cudaGetLastError(); // clear the non-sticky OOM so later calls do not report it
    return NULL;
  }
  return p;
}

// cudaFree waits for the device, so the pool only calls it when memory runs out or on request.
static void device_free(void *p) { cudaFree(p); }

static duaf::BlockPool g_pool(device_malloc, device_free);

extern "C" int duaf_empty_cache(void) {
  g_pool.release_cached();
  return 0;
}

static void *pool_alloc(size_t bytes) {
  void *p = g_pool.alloc(bytes);
  if (!p) {
    const duaf::BlockPool::Stats &s = g_pool.stats();
    fail("cudaMalloc for %.1f MiB failed: out of device memory (%.1f MiB in use, %.1f MiB cached)",
         bytes / 1048576.0, s.in_use / 1048576.0, s.cached / 1048576.0);
  }
  return p;
}

static int pool_free(void *p) {
  return g_pool.free(p) ? 0 : fail("free of a pointer the pool did not allocate");
}

extern "C" void *duaf_alloc(int32_t n) {
  if (n < 0) {
    fail("duaf_alloc: negative size %d", n);
    return NULL;
  }
  return pool_alloc((size_t)n * 4);
}

extern "C" int duaf_free(void *p) { return pool_free(p); }

extern "C" void duaf_pool_stats(double *out) { g_pool.write_stats(out); }

// A pool block released when it goes out of scope (scratch space inside one call).
struct Scratch {
  void *p = NULL;
  explicit Scratch(size_t bytes) { p = pool_alloc(bytes); }
  ~Scratch() {
    if (p) pool_free(p);
  }
  template <typename T> T *as() const { return (T *)p; }
};

// Uploads go through a pinned staging ring so they queue on the stream like kernels do:
// cudaMemcpy from pageable memory first waits for all queued work, which drained the GPU at
// every batch, sample and index upload of a training step. A region of the ring is rewritten
// only after the copies that last used it have completed (one event per copy, waited in order).
// Uploads larger than a quarter of the ring (parameter and feature tables at setup) stay
// synchronous.
static const size_t kStageBytes = 32u << 20;
static const size_t kMaxPending = 4096;

struct StagedCopy {
  unsigned long long start; // linear position in the ring's byte stream
  cudaEvent_t done;
};

static struct {
  char *buf = NULL;
  bool unavailable = false; // cudaHostAlloc failed once: every upload is synchronous
  unsigned long long pos = 0;
  std::deque<StagedCopy> pending;
  std::vector<cudaEvent_t> spare;
} g_stage;

// Waits for every staged copy that started before `limit` (and so for all earlier ones: one
// stream runs them in order) and recycles their events.
static int stage_wait_before(unsigned long long limit) {
  cudaEvent_t last = NULL;
  while (!g_stage.pending.empty() && g_stage.pending.front().start < limit) {
    if (last) g_stage.spare.push_back(last);
    last = g_stage.pending.front().done;
    g_stage.pending.pop_front();
  }
  if (!last) return 0;
  cudaError_t e = cudaEventSynchronize(last);
  g_stage.spare.push_back(last);
  if (e != cudaSuccess) return fail("upload staging: %s", cudaGetErrorString(e));
  return 0;
}

extern "C" int duaf_upload(void *dst, const void *src, int32_t n) {
  if (n <= 0) return 0;
  const size_t bytes = (size_t)n * 4;
  if (!g_stage.buf && !g_stage.unavailable) {
    if (cudaHostAlloc((void **)&g_stage.buf, kStageBytes, cudaHostAllocDefault) != cudaSuccess) {
      cudaGetLastError();
      g_stage.buf = NULL;
      g_stage.unavailable = true;
    }
  }
  if (!g_stage.buf || bytes > kStageBytes / 4) {
    CK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
    return 0;
  }
  // Place the copy in the ring, starting a new lap where it would not fit before the end.
  unsigned long long p = g_stage.pos;
  const size_t off = (size_t)(p % kStageBytes);
  if (off + bytes > kStageBytes) p += kStageBytes - off;
  // The bytes [p, p + bytes) were last written one lap earlier, by copies starting before
  // p + bytes - kStageBytes; those must have finished reading them.
  if (p + bytes > kStageBytes && stage_wait_before(p + bytes - kStageBytes) != 0) return 1;
  if (g_stage.pending.size() >= kMaxPending && stage_wait_before(p) != 0) return 1;
  char *slot = g_stage.buf + (p % kStageBytes);
  memcpy(slot, src, bytes);
  CK(cudaMemcpyAsync(dst, slot, bytes, cudaMemcpyHostToDevice, 0));
  cudaEvent_t done;
  if (!g_stage.spare.empty()) {
    done = g_stage.spare.back();
    g_stage.spare.pop_back();
  } else {
    CK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  }
  CK(cudaEventRecord(done, 0));
  g_stage.pending.push_back({p, done});
  g_stage.pos = p + bytes;
  return 0;
}

extern "C" int duaf_download(void *dst, const void *src, int32_t n) {
  if (n > 0) CK(cudaMemcpy(dst, src, (size_t)n * 4, cudaMemcpyDeviceToHost));
  return check_index_flag();
}

// ---------------------------------------------------------------------------------------------
// launch helpers

static const int kThreads = 256;
static inline unsigned blocks_for(long long n, int per_block = kThreads) {
  return (unsigned)((n + per_block - 1) / per_block);
}

__device__ __forceinline__ unsigned global_id() { return blockIdx.x * blockDim.x + threadIdx.x; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// The hashUniform of core/random.ts, bit for bit (dropout masks).
__host__ __device__ __forceinline__ unsigned hash32(unsigned x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

// u = (hash32(i ^ hash32(seed)) >>> 8) / 2^24 is exact in double, so the comparison with p is
// the same one JavaScript makes.
__host__ __device__ __forceinline__ float dropout_value(unsigned i, unsigned hseed, double p,
                                                        float keep) {
  double u = (double)(hash32(i ^ hseed) >> 8) * (1.0 / 16777216.0);
  return u >= p ? keep : 0.f;
}

// Sum over a 256-thread block in a fixed order; the result is valid in every thread.
__device__ double block_sum_d(double v) {
  __shared__ double part[kThreads / 32];
  v = warp_sum_d(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads(); // part[] may still be read from a previous call
  if (lane == 0) part[warp] = v;
  __syncthreads();
  double t = 0;
#pragma unroll
  for (int w = 0; w < kThreads / 32; w++) t += part[w];
  return t;
}

// ---------------------------------------------------------------------------------------------
// fill, copy2d

__global__ void k_fill_u32(unsigned *p, unsigned n, unsigned v) {
  unsigned i = global_id();
  if (i < n) p[i] = v;
}

extern "C" int duaf_fill_f32(float *p, int32_t n, float v) {
  if (n <= 0) return 0;
  unsigned bits;
  memcpy(&bits, &v, 4);
  k_fill_u32<<<blocks_for(n), kThreads>>>((unsigned *)p, n, bits);
  LAUNCHED("fill");
  return 0;
}

extern "C" int duaf_fill_i32(int32_t *p, int32_t n, int32_t v) {
  if (n <= 0) return 0;
  k_fill_u32<<<blocks_for(n), kThreads>>>((unsigned *)p, n, (unsigned)v);
  LAUNCHED("fill");
  return 0;
}

__global__ void k_copy2d(const void *src, int ss, void *dst, int ds, int rows, int cols, int mode) {
  unsigned t = global_id();
  if (t >= (unsigned)rows * (unsigned)cols) return;
  unsigned r = t / cols, c = t - r * cols;
  size_t si = (size_t)r * ss + c, di = (size_t)r * ds + c;
  if (mode == 0) ((unsigned *)dst)[di] = ((const unsigned *)src)[si];
  else if (mode == 1) ((float *)dst)[di] += ((const float *)src)[si];
  else ((int *)dst)[di] += ((const int *)src)[si];
}

extern "C" int duaf_copy2d(const void *src, int32_t src_stride, void *dst, int32_t dst_stride,
                           int32_t rows, int32_t cols, int32_t accumulate) {
  if (rows <= 0 || cols <= 0) return 0;
  if (accumulate == 0 && src_stride == cols && dst_stride == cols) {
    CK(cudaMemcpyAsync(dst, src, (size_t)rows * cols * 4, cudaMemcpyDeviceToDevice, 0));
    return 0;
  }
  k_copy2d<<<blocks_for((long long)rows * cols), kThreads>>>(src, src_stride, dst, dst_stride, rows,
                                                             cols, accumulate);
  LAUNCHED("copy2d");
  return 0;
}

// ---------------------------------------------------------------------------------------------
// GEMM

// Built-in tiled GEMM for machines without cuBLAS: 64x64 tile per 256-thread block, 4x4 outputs
// per thread. Row-major operands; TA/TB select how A and B are stored.
template <bool TA, bool TB>
__global__ void k_gemm(int M, int N, int K, float alpha, const float *A, long long sA, int lda,
                       const float *B, long long sB, int ldb, float beta, float *C, long long sC,
                       int ldc) {
  const int BM = 64, BN = 64, BK = 16;
  __shared__ float As[BK][BM + 4];
  __shared__ float Bs[BK][BN + 4];
  A += blockIdx.z * sA;
  B += blockIdx.z * sB;
  C += blockIdx.z * sC;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < K; k0 += BK) {
    for (int t = threadIdx.x; t < BM * BK; t += kThreads) {
      // Consecutive threads read consecutive addresses in either storage order.
      int i = TA ? t % BM : t / BK, kk = TA ? t / BM : t % BK;
      int gi = row0 + i, gk = k0 + kk;
      float v = 0.f;
      if (gi < M && gk < K) v = TA ? A[(long long)gk * lda + gi] : A[(long long)gi * lda + gk];
      As[kk][i] = v;
    }
    for (int t = threadIdx.x; t < BK * BN; t += kThreads) {
      int j = TB ? t / BK : t % BN, kk = TB ? t % BK : t / BN;
      int gj = col0 + j, gk = k0 + kk;
      float v = 0.f;
      if (gj < N && gk < K) v = TB ? B[(long long)gj * ldb + gk] : B[(long long)gk * ldb + gj];
      Bs[kk][j] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; kk++) {
      float a[4], b[4];
#pragma unroll
      for (int r = 0; r < 4; r++) a[r] = As[kk][ty + 16 * r];
#pragma unroll
      for (int c = 0; c < 4; c++) b[c] = Bs[kk][tx + 16 * c];
#pragma unroll
      for (int r = 0; r < 4; r++)
#pragma unroll
        for (int c = 0; c < 4; c++) acc[r][c] = fmaf(a[r], b[c], acc[r][c]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < 4; r++) {
    int gi = row0 + ty + 16 * r;
    if (gi >= M) continue;
#pragma unroll
    for (int c = 0; c < 4; c++) {
      int gj = col0 + tx + 16 * c;
      if (gj >= N) continue;
      float *o = C + (long long)gi * ldc + gj;
      // beta == 0 must not read C (it may hold NaN), as BLAS specifies.
      *o = beta == 0.f ? alpha * acc[r][c] : alpha * acc[r][c] + beta * *o;
    }
  }
}

__global__ void k_zero_batched(float *c, unsigned m, unsigned n, int ldc, long long stride,
                               unsigned batch) {
  unsigned t = global_id();
  const unsigned mn = m * n;
  if (t >= mn * batch) return;
  unsigned b = t / mn, r = (t - b * mn) / n;
  c[b * stride + (long long)r * ldc + (t - b * mn - r * n)] = 0.f;
}

// One strided batch of products (the outer batch of duaf_gemm).
static int gemm_batch(int32_t trans_a, int32_t trans_b, int32_t m, int32_t n, int32_t k,
                      float alpha, const float *a, int32_t stride_a, const float *b,
                      int32_t stride_b, float beta, float *c, int32_t stride_c, int32_t batch,
                      int32_t lda, int32_t ldb, int32_t ldc) {
  if (k <= 0) { // C = beta * C, with beta 0 or 1
    if (beta != 0.f) return 0;
    k_zero_batched<<<blocks_for((long long)m * n * batch), kThreads>>>(c, m, n, ldc, stride_c,
                                                                       batch);
    LAUNCHED("gemm(k=0)");
    return 0;
  }
  if (g_use_cublas) {
    // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
    const int opa = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, opb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    int st = batch == 1
                 ? g_cublas.sgemm(g_cublas.handle, opb, opa, n, m, k, &alpha, b, ldb, a, lda, &beta,
                                  c, ldc)
                 : g_cublas.sgemm_strided_batched(g_cublas.handle, opb, opa, n, m, k, &alpha, b,
                                                  ldb, stride_b, a, lda, stride_a, &beta, c, ldc,
                                                  stride_c, batch);
    if (st != 0) return fail("cublasSgemm: %s", cublas_status_name(st));
    return 0;
  }
  for (int b0 = 0; b0 < batch; b0 += 65535) { // grid.z is limited to 65535
    const int nb = batch - b0 < 65535 ? batch - b0 : 65535;
    dim3 grid((n + 63) / 64, (m + 63) / 64, nb);
    const float *ab = a + (long long)b0 * stride_a, *bb = b + (long long)b0 * stride_b;
    float *cb = c + (long long)b0 * stride_c;
    if (!trans_a && !trans_b)
      k_gemm<false, false><<<grid, kThreads>>>(m, n, k, alpha, ab, stride_a, lda, bb, stride_b,
                                               ldb, beta, cb, stride_c, ldc);
    else if (!trans_a && trans_b)
      k_gemm<false, true><<<grid, kThreads>>>(m, n, k, alpha, ab, stride_a, lda, bb, stride_b, ldb,
                                              beta, cb, stride_c, ldc);
    else if (trans_a && !trans_b)
      k_gemm<true, false><<<grid, kThreads>>>(m, n, k, alpha, ab, stride_a, lda, bb, stride_b, ldb,
                                              beta, cb, stride_c, ldc);
    else
      k_gemm<true, true><<<grid, kThreads>>>(m, n, k, alpha, ab, stride_a, lda, bb, stride_b, ldb,
                                             beta, cb, stride_c, ldc);
    LAUNCHED("gemm");
  }
  return 0;
}

extern "C" int duaf_gemm(int32_t trans_a, int32_t trans_b, int32_t m, int32_t n, int32_t k,
                         float alpha, const float *a, int32_t stride_a, const float *b,
                         int32_t stride_b, float beta, float *c, int32_t stride_c, int32_t batch,
                         int32_t lda, int32_t ldb, int32_t ldc, int32_t batch2,
                         int32_t stride_a2, int32_t stride_b2, int32_t stride_c2) {
  if (m <= 0 || n <= 0 || batch <= 0) return 0;
  // The inner batch (attention heads) as one strided batch per inner item: on the device the
  // order of the items does not matter.
  for (int32_t j = 0; j < batch2; j++) {
    int st = gemm_batch(trans_a, trans_b, m, n, k, alpha, a + (long long)j * stride_a2, stride_a,
                        b + (long long)j * stride_b2, stride_b, beta, c + (long long)j * stride_c2,
                        stride_c, batch, lda, ldb, ldc);
    if (st != 0) return st;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// unary

#define INV_SQRT_2PI_F 0.3989422804014327f
#define SQRT1_2_F 0.7071067811865476f

__host__ __device__ __forceinline__ float sigmoid_f(float x) {
  if (x >= 0.f) return 1.f / (1.f + expf(-x));
  float e = expf(x);
  return e / (1.f + e);
}

__host__ __device__ float unary_forward(int op, float x, float a) {
  switch (op) {
  case DUAF_NEG: return -x;
  case DUAF_EXP: return expf(x);
  case DUAF_LOG: return logf(x);
  case DUAF_SQRT: return sqrtf(x);
  case DUAF_TANH: return tanhf(x);
  case DUAF_SIGMOID: return sigmoid_f(x);
  case DUAF_GELU: return 0.5f * x * (1.f + erff(x * SQRT1_2_F));
  case DUAF_RELU: return x > 0.f ? x : 0.f;
  case DUAF_LEAKY_RELU: return x > 0.f ? x : a * x;
  case DUAF_SOFTPLUS: return fmaxf(x, 0.f) + log1pf(expf(-fabsf(x)));
  case DUAF_SIN: return sinf(x);
  case DUAF_COS: return cosf(x);
  case DUAF_ABS: return fabsf(x);
  case DUAF_SQUARE: return x * x;
  case DUAF_SCALE: return a * x;
  case DUAF_ADD_SCALAR: return x + a;
  case DUAF_POW_SCALAR: return powf(x, a);
  }
  return NAN; // unreachable: op codes are checked before launch
}

__host__ __device__ float unary_derivative(int op, float x, float y, float a) {
  switch (op) {
  case DUAF_NEG: return -1.f;
  case DUAF_EXP: return y;
  case DUAF_LOG: return 1.f / x;
  case DUAF_SQRT: return 0.5f / y;
  case DUAF_TANH: return 1.f - y * y;
  case DUAF_SIGMOID: return y * (1.f - y);
  case DUAF_GELU:
    return 0.5f * (1.f + erff(x * SQRT1_2_F)) + x * INV_SQRT_2PI_F * expf(-0.5f * x * x);
  case DUAF_RELU: return x > 0.f ? 1.f : 0.f;
  case DUAF_LEAKY_RELU: return x > 0.f ? 1.f : a;
  case DUAF_SOFTPLUS: return sigmoid_f(x);
  case DUAF_SIN: return cosf(x);
  case DUAF_COS: return -sinf(x);
  case DUAF_ABS: return x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f);
  case DUAF_SQUARE: return 2.f * x;
  case DUAF_SCALE: return a;
  case DUAF_ADD_SCALAR: return 1.f;
  case DUAF_POW_SCALAR: return a * powf(x, a - 1.f);
  }
  return NAN; // unreachable: op codes are checked before launch
}

__global__ void k_unary(int op, const float *x, float *out, unsigned n, float a) {
  unsigned i = global_id();
  if (i < n) out[i] = unary_forward(op, x[i], a);
}

__global__ void k_unary_grad(int op, const float *x, const float *y, const float *g, float *out,
                             unsigned n, float a) {
  unsigned i = global_id();
  if (i < n) out[i] = g[i] * unary_derivative(op, x[i], y[i], a);
}

extern "C" int duaf_unary(int32_t op, const float *x, float *out, int32_t n, float alpha) {
  if (op < 0 || op >= DUAF_UNARY_COUNT) return fail("unary: bad op %d", op);
  if (n <= 0) return 0;
  k_unary<<<blocks_for(n), kThreads>>>(op, x, out, n, alpha);
  LAUNCHED("unary");
  return 0;
}

extern "C" int duaf_unary_grad(int32_t op, const float *x, const float *y, const float *g,
                               float *out, int32_t n, float alpha) {
  if (op < 0 || op >= DUAF_UNARY_COUNT) return fail("unaryGrad: bad op %d", op);
  if (n <= 0) return 0;
  k_unary_grad<<<blocks_for(n), kThreads>>>(op, x, y, g, out, n, alpha);
  LAUNCHED("unaryGrad");
  return 0;
}

// ---------------------------------------------------------------------------------------------
// strided index spaces (binary, reduceSum, permute)

// Up to two stride sets laid over one shape; passed to kernels by value.
struct Layout {
  int rank;
  int shape[DUAF_MAX_RANK];
  int s0[DUAF_MAX_RANK];
  int s1[DUAF_MAX_RANK];
};

// Drops size-1 dims and merges neighbours that are contiguous in both stride sets, so the common
// cases (same-shape operands, a broadcast row vector) run with rank 1 or 2.
static void collapse(Layout &L) {
  Layout o{};
  for (int d = 0; d < L.rank; d++) {
    if (L.shape[d] == 1) continue;
    if (o.rank > 0) {
      int p = o.rank - 1;
      if (o.s0[p] == L.s0[d] * L.shape[d] && o.s1[p] == L.s1[d] * L.shape[d]) {
        o.shape[p] *= L.shape[d];
        o.s0[p] = L.s0[d];
        o.s1[p] = L.s1[d];
        continue;
      }
    }
    o.shape[o.rank] = L.shape[d];
    o.s0[o.rank] = L.s0[d];
    o.s1[o.rank] = L.s1[d];
    o.rank++;
  }
  L = o;
}

__host__ __device__ __forceinline__ void offsets(const Layout &L, unsigned i, int &o0, int &o1) {
  o0 = 0;
  o1 = 0;
  for (int d = L.rank - 1; d >= 0; d--) {
    unsigned q = i / (unsigned)L.shape[d];
    int c = (int)(i - q * (unsigned)L.shape[d]);
    o0 += c * L.s0[d];
    o1 += c * L.s1[d];
    i = q;
  }
}

__global__ void k_binary(int op, const float *a, const float *b, float *out, Layout L,
                         unsigned n) {
  unsigned i = global_id();
  if (i >= n) return;
  int oa, ob;
  offsets(L, i, oa, ob);
  float x = a[oa], y = b[ob];
  out[i] = op == DUAF_ADD ? x + y : op == DUAF_SUB ? x - y : op == DUAF_MUL ? x * y : x / y;
}

extern "C" int duaf_binary(int32_t op, const float *a, const int32_t *a_strides, const float *b,
                           const int32_t *b_strides, float *out, const int32_t *shape,
                           int32_t rank) {
  if (rank < 0 || rank > DUAF_MAX_RANK) return fail("binary: rank %d > %d", rank, DUAF_MAX_RANK);
  if (op < 0 || op > DUAF_DIV) return fail("binary: bad op %d", op);
  Layout L{};
  L.rank = rank;
  long long n = 1;
  for (int d = 0; d < rank; d++) {
    L.shape[d] = shape[d];
    L.s0[d] = a_strides[d];
    L.s1[d] = b_strides[d];
    n *= shape[d];
  }
  if (n <= 0) return 0;
  collapse(L);
  k_binary<<<blocks_for(n), kThreads>>>(op, a, b, out, L, (unsigned)n);
  LAUNCHED("binary");
  return 0;
}

// reduceSum splits the collapsed dims into kept (out stride != 0) and reduced ones.
struct ReduceLayout {
  Layout kept; // s0: x stride, s1: out stride
  Layout red;  // s0: x stride
  unsigned keptCount, redCount;
};

// One group of G threads per kept element, summing the reduced space lane-strided; used when the
// innermost x dim is reduced, so the lanes read consecutive addresses.
template <int G>
__global__ void k_reduce_rows(const float *x, float *out, ReduceLayout R, int accumulate) {
  const unsigned item = blockIdx.x * (kThreads / G) + threadIdx.x / G;
  const int lane = threadIdx.x % G;
  int xo = 0, oo = 0;
  if (item < R.keptCount) offsets(R.kept, item, xo, oo);
  double acc = 0;
  if (item < R.keptCount) {
    for (unsigned r = lane; r < R.redCount; r += G) {
      int ro, unused;
      offsets(R.red, r, ro, unused);
      acc += x[xo + ro];
    }
  }
  if (G == 32) acc = warp_sum_d(acc);
  else acc = block_sum_d(acc);
  if (item < R.keptCount && lane == 0) out[oo] = (float)((accumulate ? out[oo] : 0.f) + acc);
}

// One thread per (kept element, chunk of the reduced space); chunks > 1 write double partials
// that k_reduce_finish adds in chunk order. Used when the innermost x dim is kept, so neighbouring
// threads read neighbouring addresses.
__global__ void k_reduce_cols(const float *x, float *out, double *partial, ReduceLayout R,
                              unsigned chunk, int accumulate) {
  const unsigned k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= R.keptCount) return;
  int xo, oo;
  offsets(R.kept, k, xo, oo);
  const unsigned r0 = blockIdx.y * chunk;
  const unsigned r1 = r0 + chunk < R.redCount ? r0 + chunk : R.redCount;
  double acc = 0;
  for (unsigned r = r0; r < r1; r++) {
    int ro, unused;
    offsets(R.red, r, ro, unused);
    acc += x[xo + ro];
  }
  if (partial) partial[(size_t)blockIdx.y * R.keptCount + k] = acc;
  else out[oo] = (float)((accumulate ? out[oo] : 0.f) + acc);
}

// One block per kept element: its threads add the chunk partials lane-strided and a fixed tree
// adds the lanes, so the order is fixed and no single thread walks a long list of partials.
__global__ void k_reduce_finish(const double *partial, float *out, ReduceLayout R,
                                unsigned chunks, int accumulate) {
  const unsigned k = blockIdx.x;
  double acc = 0;
  for (unsigned c = threadIdx.x; c < chunks; c += blockDim.x) {
    acc += partial[(size_t)c * R.keptCount + k];
  }
  acc = block_sum_d(acc);
  if (threadIdx.x != 0) return;
  int xo, oo;
  offsets(R.kept, k, xo, oo);
  out[oo] = (float)((accumulate ? out[oo] : 0.f) + acc);
}

// Splits x's collapsed dims into kept and reduced; returns false for a bad rank. `inner_reduced`:
// the innermost (stride-1) dim of x is summed over.
static bool reduce_layout(const int32_t *shape, int rank, const int32_t *out_strides,
                          ReduceLayout &R, bool &inner_reduced, long long &n) {
  if (rank < 0 || rank > DUAF_MAX_RANK) return false;
  Layout L{};
  L.rank = rank;
  n = 1;
  for (int d = rank - 1; d >= 0; d--) {
    L.shape[d] = shape[d];
    L.s0[d] = (int)n;
    L.s1[d] = out_strides[d];
    n *= shape[d];
  }
  collapse(L);
  R = ReduceLayout{};
  for (int d = 0; d < L.rank; d++) {
    Layout &T = L.s1[d] != 0 ? R.kept : R.red;
    T.shape[T.rank] = L.shape[d];
    T.s0[T.rank] = L.s0[d];
    T.s1[T.rank] = L.s1[d];
    T.rank++;
  }
  R.keptCount = 1;
  R.redCount = 1;
  for (int d = 0; d < R.kept.rank; d++) R.keptCount *= R.kept.shape[d];
  for (int d = 0; d < R.red.rank; d++) R.redCount *= R.red.shape[d];
  inner_reduced = L.rank > 0 && L.s1[L.rank - 1] == 0;
  return true;
}

extern "C" int duaf_reduce_sum(const float *x, const int32_t *shape, int32_t rank, float *out,
                               const int32_t *out_strides, int32_t out_size, int32_t accumulate) {
  ReduceLayout R;
  bool innerReduced;
  long long n;
  if (!reduce_layout(shape, rank, out_strides, R, innerReduced, n)) {
    return fail("reduceSum: rank %d > %d", rank, DUAF_MAX_RANK);
  }
  if (!accumulate && out_size > 0) CK(cudaMemsetAsync(out, 0, (size_t)out_size * 4, 0));
  if (n <= 0) return 0;
  // out was zeroed above, so every path below accumulates.
  if (innerReduced && R.redCount > 1) {
    if (R.redCount <= 1024) {
      k_reduce_rows<32><<<blocks_for(R.keptCount, kThreads / 32), kThreads>>>(x, out, R, 1);
    } else {
      k_reduce_rows<kThreads><<<R.keptCount, kThreads>>>(x, out, R, 1);
    }
    LAUNCHED("reduceSum");
    return 0;
  }
  // Enough chunks for ~64k threads, each summing at least 64 values.
  unsigned chunks = 1;
  if (R.keptCount < 65536 && R.redCount > 64) {
    unsigned want = (65536 + R.keptCount - 1) / R.keptCount;
    unsigned most = (R.redCount + 63) / 64;
    chunks = want < most ? want : most;
    if (chunks > 65535) chunks = 65535;
  }
  const unsigned chunk = (R.redCount + chunks - 1) / chunks;
  chunks = (R.redCount + chunk - 1) / chunk;
  dim3 grid(blocks_for(R.keptCount), chunks);
  if (chunks == 1) {
    k_reduce_cols<<<grid, kThreads>>>(x, out, NULL, R, chunk, 1);
    LAUNCHED("reduceSum");
    return 0;
  }
  Scratch partial((size_t)chunks * R.keptCount * sizeof(double));
  if (!partial.p) return 1;
  k_reduce_cols<<<grid, kThreads>>>(x, out, partial.as<double>(), R, chunk, 1);
  LAUNCHED("reduceSum");
  k_reduce_finish<<<R.keptCount, kThreads>>>(partial.as<double>(), out, R, chunks, 1);
  LAUNCHED("reduceSum");
  return 0;
}

__global__ void k_permute(const unsigned *x, unsigned *out, Layout L, unsigned n) {
  unsigned i = global_id();
  if (i >= n) return;
  int src, dst;
  offsets(L, i, src, dst);
  out[dst] = x[src];
}

// Walks the output in order: dim d of the output is dim perm[d] of the input. s0: input stride,
// s1: output stride. Returns false for a bad rank or permutation.
static bool permute_layout(const int32_t *shape, const int32_t *perm, int rank, Layout &L,
                           long long &n) {
  if (rank < 0 || rank > DUAF_MAX_RANK) return false;
  int in_strides[DUAF_MAX_RANK];
  n = 1;
  for (int d = rank - 1; d >= 0; d--) {
    in_strides[d] = (int)n;
    n *= shape[d];
  }
  L = Layout{};
  L.rank = rank;
  long long s = 1;
  for (int d = rank - 1; d >= 0; d--) {
    if (perm[d] < 0 || perm[d] >= rank) return false;
    L.shape[d] = shape[perm[d]];
    L.s0[d] = in_strides[perm[d]];
    L.s1[d] = (int)s;
    s *= L.shape[d];
  }
  collapse(L);
  return true;
}

extern "C" int duaf_permute(const void *x, const int32_t *shape, const int32_t *perm,
                            int32_t rank, void *out) {
  Layout L;
  long long n;
  if (!permute_layout(shape, perm, rank, L, n)) return fail("permute: bad rank or perm");
  if (n <= 0) return 0;
  if (L.rank <= 1) {
    CK(cudaMemcpyAsync(out, x, (size_t)n * 4, cudaMemcpyDeviceToDevice, 0));
    return 0;
  }
  k_permute<<<blocks_for(n), kThreads>>>((const unsigned *)x, (unsigned *)out, L, (unsigned)n);
  LAUNCHED("permute");
  return 0;
}

__global__ void k_axpy(const float *x, float *out, unsigned n, float alpha) {
  unsigned i = global_id();
  if (i < n) out[i] += alpha * x[i];
}

extern "C" int duaf_axpy(const float *x, float *out, int32_t n, float alpha) {
  if (n <= 0) return 0;
  k_axpy<<<blocks_for(n), kThreads>>>(x, out, n, alpha);
  LAUNCHED("axpy");
  return 0;
}

// Fixed grid so the summation order depends only on n.
static const int kSumBlocks = 512;

__global__ void k_sum_squares(const float *x, unsigned n, double *partial) {
  double acc = 0;
  for (unsigned i = blockIdx.x * kThreads + threadIdx.x; i < n; i += gridDim.x * kThreads) {
    double v = x[i];
    acc += v * v;
  }
  acc = block_sum_d(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void k_sum_partials(const double *partial, int count, double *result) {
  double acc = 0;
  for (int i = threadIdx.x; i < count; i += kThreads) acc += partial[i];
  acc = block_sum_d(acc);
  if (threadIdx.x == 0) *result = acc;
}

extern "C" int duaf_sum_squares(const float *x, int32_t n, double *result) {
  *result = 0;
  if (n <= 0) return 0;
  Scratch partial((kSumBlocks + 1) * sizeof(double));
  if (!partial.p) return 1;
  unsigned blocks = blocks_for(n);
  if (blocks > (unsigned)kSumBlocks) blocks = kSumBlocks;
  double *p = partial.as<double>();
  k_sum_squares<<<blocks, kThreads>>>(x, n, p);
  LAUNCHED("sumSquares");
  k_sum_partials<<<1, kThreads>>>(p, blocks, p + kSumBlocks);
  LAUNCHED("sumSquares");
  CK(cudaMemcpy(result, p + kSumBlocks, sizeof(double), cudaMemcpyDeviceToHost));
  return 0;
}

// ---------------------------------------------------------------------------------------------
// row-wise: one warp per row, eight rows per block

static const int kRowsPerBlock = kThreads / 32;

__global__ void k_softmax(const float *x, float *out, int rows, int cols, int log_) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (row >= rows) return;
  const float *xr = x + (size_t)row * cols;
  float *o = out + (size_t)row * cols;
  float mx = -INFINITY;
  for (int c = lane; c < cols; c += 32) mx = fmaxf(mx, xr[c]);
  mx = warp_max(mx);
  float s = 0.f;
  for (int c = lane; c < cols; c += 32) s += expf(xr[c] - mx);
  const float lse = mx + logf(warp_sum(s));
  for (int c = lane; c < cols; c += 32) o[c] = log_ ? xr[c] - lse : expf(xr[c] - lse);
}

// softmax(x * scale + mask): the logits are rounded as the separate scale and add passes round
// them (no fused multiply-add), written to out, then out's softmax in place, row by row.
__global__ void k_masked_softmax(const float *x, const float *mask, float *out, int rows, int cols,
                                 float scale, int heads, int q, int sb, int sh, int sq) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (row >= rows) return;
  const float *xr = x + (size_t)row * cols;
  float *o = out + (size_t)row * cols;
  const int k = row % q, j = (row / q) % heads, i = row / (q * heads);
  const float *mr = mask ? mask + ((size_t)i * sb + (size_t)j * sh + (size_t)k * sq) * cols : nullptr;
  float mx = -INFINITY;
  for (int c = lane; c < cols; c += 32) {
    const float z = mr ? __fadd_rn(__fmul_rn(xr[c], scale), mr[c]) : __fmul_rn(xr[c], scale);
    o[c] = z;
    mx = fmaxf(mx, z);
  }
  mx = warp_max(mx);
  float s = 0.f;
  for (int c = lane; c < cols; c += 32) s += expf(o[c] - mx);
  const float lse = mx + logf(warp_sum(s));
  for (int c = lane; c < cols; c += 32) o[c] = expf(o[c] - lse);
}

__global__ void k_softmax_grad(const float *y, const float *g, float *out, int rows, int cols,
                               int log_, float scale) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (row >= rows) return;
  const size_t o = (size_t)row * cols;
  // softmax: dx = y * (g - sum(g*y)); log-softmax: dx = g - exp(y) * sum(g).
  float dot = 0.f;
  for (int c = lane; c < cols; c += 32) dot += log_ ? g[o + c] : g[o + c] * y[o + c];
  dot = warp_sum(dot);
  for (int c = lane; c < cols; c += 32) {
    const float d = log_ ? g[o + c] - expf(y[o + c]) * dot : y[o + c] * (g[o + c] - dot);
    out[o + c] = scale == 1.f ? d : __fmul_rn(d, scale);
  }
}

extern "C" int duaf_softmax(const float *x, float *out, int32_t rows, int32_t cols, int32_t log) {
  if (rows <= 0 || cols <= 0) return 0;
  k_softmax<<<blocks_for(rows, kRowsPerBlock), kThreads>>>(x, out, rows, cols, log);
  LAUNCHED("softmax");
  return 0;
}

extern "C" int duaf_softmax_grad(const float *y, const float *g, float *out, int32_t rows,
                                 int32_t cols, int32_t log, float scale) {
  if (rows <= 0 || cols <= 0) return 0;
  k_softmax_grad<<<blocks_for(rows, kRowsPerBlock), kThreads>>>(y, g, out, rows, cols, log, scale);
  LAUNCHED("softmaxGrad");
  return 0;
}

extern "C" int duaf_masked_softmax(const float *x, const float *mask, float *out, int32_t rows,
                                   int32_t cols, float scale, int32_t heads, int32_t q, int32_t sb,
                                   int32_t sh, int32_t sq) {
  if (rows <= 0 || cols <= 0) return 0;
  k_masked_softmax<<<blocks_for(rows, kRowsPerBlock), kThreads>>>(x, mask, out, rows, cols, scale,
                                                                  heads, q, sb, sh, sq);
  LAUNCHED("maskedSoftmax");
  return 0;
}

// ---------------------------------------------------------------------------------------------
// attention's core (Backend.attention): per sequence and head, softmax(q k^T * scale + mask),
// its dropout and the mix of the values in one kernel, and the gradient in one kernel back.
// One block per (sequence, head): the head's keys and values sit in shared memory, each warp
// takes query rows, and a row's scores never leave its warp's buffer. The softmax rounds as
// k_masked_softmax does; the products sum in their own order (not cuBLAS's), so results agree
// with the separate calls to float32 tolerance and repeat bit for bit.

struct AttentionShape {
  int lq, lk, d, heads, dh;
  float scale;
  int sb, sh, sq;     // the mask's row strides over [batch, heads, lq] (k_masked_softmax's)
  double p;           // dropout rate; keep = 0 means no dropout
  unsigned hseed;
  float keep;
};

static const int kAttentionWarps = 8;
static int g_attention_smem_limit = -1; // bytes of shared memory a block may opt in to

// Floats of shared memory: keys and values (rows padded by one float against bank conflicts),
// then a row of lk scores and a row of dh floats per warp.
static inline long long attention_floats(int lk, int dh) {
  return 2LL * lk * (dh + 1) + (long long)kAttentionWarps * (lk + dh);
}

// Index of (b, head, query row i, key j) in dropout's [batch, heads, lq, lk] mask; with steps,
// the query of sequence b is row steps[b] of a [batch, heads, lk, lk] pass.
__device__ __forceinline__ unsigned attention_mask_index(const AttentionShape &s, int bh, int i,
                                                         const int *steps, int b) {
  return steps ? ((unsigned)bh * s.lk + (unsigned)steps[b]) * s.lk
               : ((unsigned)bh * s.lq + (unsigned)i) * s.lk;
}

// Loads the head's rows of x [batch, lk, d] into shared rows of dh + 1 floats.
__device__ __forceinline__ void attention_load(const float *x, float *sx, int b, int head,
                                               const AttentionShape &s) {
  for (int t = threadIdx.x; t < s.lk * s.dh; t += blockDim.x) {
    const int j = t / s.dh, c = t - j * s.dh;
    sx[j * (s.dh + 1) + c] = x[((size_t)b * s.lk + j) * s.d + head * s.dh + c];
  }
}

__global__ void k_attention(const float *q, const float *k, const float *v, const float *mask,
                            const int *steps, float *probs, float *out, AttentionShape s) {
  extern __shared__ float sm[];
  const int bh = blockIdx.x, b = bh / s.heads, head = bh - b * s.heads;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  float *sk = sm, *sv = sk + s.lk * (s.dh + 1);
  float *row = sv + s.lk * (s.dh + 1) + warp * s.lk;
  float *qrow = sv + s.lk * (s.dh + 1) + kAttentionWarps * s.lk + warp * s.dh;
  attention_load(k, sk, b, head, s);
  attention_load(v, sv, b, head, s);
  __syncthreads();
  for (int i = warp; i < s.lq; i += warps) {
    const float *qi = q + ((size_t)b * s.lq + i) * s.d + head * s.dh;
    for (int c = lane; c < s.dh; c += 32) qrow[c] = qi[c];
    __syncwarp();
    const float *mr =
        mask ? mask + ((size_t)b * s.sb + (size_t)head * s.sh + (size_t)i * s.sq) * s.lk : nullptr;
    float mx = -INFINITY;
    for (int j = lane; j < s.lk; j += 32) {
      const float *kj = sk + j * (s.dh + 1);
      float dot = 0.f;
      for (int c = 0; c < s.dh; c++) dot = fmaf(qrow[c], kj[c], dot);
      const float z = mr ? __fadd_rn(__fmul_rn(dot, s.scale), mr[j]) : __fmul_rn(dot, s.scale);
      row[j] = z;
      mx = fmaxf(mx, z);
    }
    mx = warp_max(mx);
    float sum = 0.f;
    for (int j = lane; j < s.lk; j += 32) sum += expf(row[j] - mx);
    const float lse = mx + logf(warp_sum(sum));
    float *pr = probs + ((size_t)bh * s.lq + i) * s.lk;
    const unsigned base = s.keep > 0.f ? attention_mask_index(s, bh, i, steps, b) : 0u;
    for (int j = lane; j < s.lk; j += 32) {
      const float pj = expf(row[j] - lse);
      pr[j] = pj;
      row[j] = s.keep > 0.f ? __fmul_rn(pj, dropout_value(base + j, s.hseed, s.p, s.keep)) : pj;
    }
    __syncwarp();
    float *oi = out + ((size_t)b * s.lq + i) * s.d + head * s.dh;
    for (int c = lane; c < s.dh; c += 32) {
      float acc = 0.f;
      for (int j = 0; j < s.lk; j++) acc = fmaf(row[j], sv[j * (s.dh + 1) + c], acc);
      oi[c] = acc;
    }
    __syncwarp(); // row and qrow are rewritten by the next query
  }
}

// The gradient from the kept softmax `probs`: per query row, the dropped probabilities pd and the
// scores' gradient ds = p (dp - sum(p dp)) * scale (k_softmax_grad's rounding) go to `scratch`
// [2, lq, lk] of the block and dq is formed from ds and the keys; after the block's barrier each
// warp takes key rows for dk = ds^T q and dv = pd^T g. Fixed summation orders, no atomics.
__global__ void k_attention_grad(const float *q, const float *k, const float *v, const float *g,
                                 const int *steps, const float *probs, float *dq, float *dk,
                                 float *dv, float *scratch, AttentionShape s) {
  extern __shared__ float sm[];
  const int bh = blockIdx.x, b = bh / s.heads, head = bh - b * s.heads;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  float *sk = sm, *sv = sk + s.lk * (s.dh + 1);
  float *row = sv + s.lk * (s.dh + 1) + warp * s.lk;
  float *grow = sv + s.lk * (s.dh + 1) + kAttentionWarps * s.lk + warp * s.dh;
  float *pd = scratch + (size_t)bh * 2 * s.lq * s.lk, *ds = pd + (size_t)s.lq * s.lk;
  attention_load(k, sk, b, head, s);
  attention_load(v, sv, b, head, s);
  __syncthreads();
  for (int i = warp; i < s.lq; i += warps) {
    const size_t oi = ((size_t)b * s.lq + i) * s.d + head * s.dh;
    for (int c = lane; c < s.dh; c += 32) grow[c] = g[oi + c];
    __syncwarp();
    const float *pr = probs + ((size_t)bh * s.lq + i) * s.lk;
    const unsigned base = s.keep > 0.f ? attention_mask_index(s, bh, i, steps, b) : 0u;
    float dot = 0.f;
    for (int j = lane; j < s.lk; j += 32) {
      const float *vj = sv + j * (s.dh + 1);
      float dpd = 0.f;
      for (int c = 0; c < s.dh; c++) dpd = fmaf(grow[c], vj[c], dpd);
      const float m = s.keep > 0.f ? dropout_value(base + j, s.hseed, s.p, s.keep) : 1.f;
      const float pj = pr[j], dp = __fmul_rn(dpd, m);
      pd[(size_t)i * s.lk + j] = __fmul_rn(pj, m);
      row[j] = dp;
      dot += pj * dp;
    }
    dot = warp_sum(dot);
    for (int j = lane; j < s.lk; j += 32) {
      const float d = pr[j] * (row[j] - dot);
      const float dsj = s.scale == 1.f ? d : __fmul_rn(d, s.scale);
      row[j] = dsj;
      ds[(size_t)i * s.lk + j] = dsj;
    }
    __syncwarp();
    for (int c = lane; c < s.dh; c += 32) {
      float acc = 0.f;
      for (int j = 0; j < s.lk; j++) acc = fmaf(row[j], sk[j * (s.dh + 1) + c], acc);
      dq[oi + c] = acc;
    }
    __syncwarp();
  }
  __syncthreads(); // pd and ds of every query row are written
  for (int j = warp; j < s.lk; j += warps) {
    const size_t oj = ((size_t)b * s.lk + j) * s.d + head * s.dh;
    for (int c = lane; c < s.dh; c += 32) {
      float ak = 0.f, av = 0.f;
      for (int i = 0; i < s.lq; i++) {
        const size_t oi = ((size_t)b * s.lq + i) * s.d + head * s.dh + c;
        ak = fmaf(ds[(size_t)i * s.lk + j], q[oi], ak);
        av = fmaf(pd[(size_t)i * s.lk + j], g[oi], av);
      }
      dk[oj + c] = ak;
      dv[oj + c] = av;
    }
  }
}

// Shared bytes for (lk, dh), or 0 when a block cannot have them (the caller takes the separate
// calls). The opt-in limit is the device's, read once.
static size_t attention_smem(int lk, int dh) {
  if (g_attention_smem_limit < 0) {
    int dev = 0, optin = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
      optin = 48 << 10;
    g_attention_smem_limit = optin;
  }
  const long long bytes = attention_floats(lk, dh) * 4;
  return bytes <= g_attention_smem_limit ? (size_t)bytes : 0;
}

// The shared bytes a block of `kernel` needs (*smem), with the opt-in past 48 KB set: 0, or
// DUAF_DECLINED when a block cannot have them, or 1 with the error set.
template <class Kernel>
static int attention_prepare(Kernel kernel, const char *what, int32_t d, int32_t heads,
                             int32_t lk, size_t *smem) {
  if (heads <= 0 || d % heads != 0) return fail("%s: %d columns in %d heads", what, d, heads);
  *smem = attention_smem(lk, d / heads);
  if (*smem == 0) return DUAF_DECLINED;
  if (*smem > (48u << 10))
    CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)*smem));
  return 0;
}

static AttentionShape attention_shape(int32_t lq, int32_t lk, int32_t d, int32_t heads,
                                      float scale, int32_t sb, int32_t sh, int32_t sq,
                                      int32_t drop, double p, uint32_t seed) {
  AttentionShape s;
  s.lq = lq, s.lk = lk, s.d = d, s.heads = heads, s.dh = d / heads, s.scale = scale;
  s.sb = sb, s.sh = sh, s.sq = sq;
  s.p = p, s.hseed = hash32(seed), s.keep = drop ? (float)(1.0 / (1.0 - p)) : 0.f;
  return s;
}

// Returns DUAF_DECLINED, having queued nothing, when the head's keys and values do not fit in a
// block's shared memory.
extern "C" int duaf_attention(const float *q, const float *k, const float *v, const float *mask,
                              const int32_t *steps, float *probs, float *out, int32_t batch,
                              int32_t lq, int32_t lk, int32_t d, int32_t heads, float scale,
                              int32_t sb, int32_t sh, int32_t sq, int32_t drop, double p,
                              uint32_t seed) {
  size_t smem = 0;
  const int status = attention_prepare(k_attention, "attention", d, heads, lk, &smem);
  if (status != 0 || batch <= 0 || lq <= 0 || lk <= 0) return status;
  const AttentionShape s = attention_shape(lq, lk, d, heads, scale, sb, sh, sq, drop, p, seed);
  const int warps = lq < kAttentionWarps ? lq : kAttentionWarps;
  k_attention<<<batch * heads, 32 * warps, smem>>>(q, k, v, mask, steps, probs, out, s);
  LAUNCHED("attention");
  return 0;
}

extern "C" int duaf_attention_grad(const float *q, const float *k, const float *v, const float *g,
                                   const int32_t *steps, const float *probs, float *dq, float *dk,
                                   float *dv, int32_t batch, int32_t lq, int32_t lk, int32_t d,
                                   int32_t heads, float scale, int32_t drop, double p,
                                   uint32_t seed) {
  size_t smem = 0;
  const int status = attention_prepare(k_attention_grad, "attentionGrad", d, heads, lk, &smem);
  if (status != 0 || batch <= 0 || lq <= 0 || lk <= 0) return status;
  Scratch scratch((size_t)batch * heads * 2 * lq * lk * sizeof(float));
  if (!scratch.p) return 1;
  const AttentionShape s = attention_shape(lq, lk, d, heads, scale, 0, 0, 0, drop, p, seed);
  k_attention_grad<<<batch * heads, 32 * kAttentionWarps, smem>>>(
      q, k, v, g, steps, probs, dq, dk, dv, scratch.as<float>(), s);
  LAUNCHED("attentionGrad");
  return 0;
}

// full-ranking evaluation (Backend.rankRows): one warp per row counts the columns scoring at
// least the target's (metrics.ts rankOf), so only the ranks leave the device.

__device__ __forceinline__ int warp_sum_int(int v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__global__ void k_rank_rows(const float *x, const int *targets, const int *ex_offsets,
                            const int *ex_cols, int *out, int rows, int cols) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (row >= rows) return;
  const int t = targets[row];
  if ((unsigned)t >= (unsigned)cols) {
    if (lane == 0) atomicOr(&d_bad_index, BAD_RANK);
    return;
  }
  const float *xr = x + (size_t)row * cols;
  const float s = xr[t];
  int n = 0;
  for (int c = lane; c < cols; c += 32) n += xr[c] >= s;
  // The target itself and the excluded columns other than it do not count.
  for (int e = ex_offsets[row] + lane; e < ex_offsets[row + 1]; e += 32) {
    const int c = ex_cols[e];
    if ((unsigned)c >= (unsigned)cols) {
      atomicOr(&d_bad_index, BAD_RANK);
      continue;
    }
    n -= c != t && xr[c] >= s;
  }
  n = warp_sum_int(n);
  if (lane == 0) out[row] = n - 1;
}

extern "C" int duaf_rank_rows(const float *x, const int32_t *targets, const int32_t *ex_offsets,
                              const int32_t *ex_cols, int32_t *out, int32_t rows, int32_t cols) {
  if (rows <= 0 || cols <= 0) return 0;
  k_rank_rows<<<blocks_for(rows, kRowsPerBlock), kThreads>>>(x, targets, ex_offsets, ex_cols,
                                                             out, rows, cols);
  LAUNCHED("rankRows");
  return 0;
}

// chunked cross-entropy (core/ops/linear_ce.ts): one warp per row, as softmax

__global__ void k_ce_block(const float *x, const int *targets, float *lse, float *picked, int rows,
                           int cols, int col_offset, int first) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (row >= rows) return;
  const float *xr = x + (size_t)row * cols;
  float mx = -INFINITY;
  for (int c = lane; c < cols; c += 32) mx = fmaxf(mx, xr[c]);
  mx = warp_max(mx);
  float s = 0.f;
  for (int c = lane; c < cols; c += 32) s += expf(xr[c] - mx);
  const float block = mx + logf(warp_sum(s));
  if (lane != 0) return;
  if (first) {
    lse[row] = block;
  } else {
    const float prev = lse[row], hi = fmaxf(prev, block), lo = fminf(prev, block);
    lse[row] = hi + log1pf(expf(lo - hi));
  }
  const int t = targets[row] - col_offset;
  if ((unsigned)t < (unsigned)cols) picked[row] = xr[t];
  else if (first) picked[row] = 0.f;
}

__global__ void k_ce_block_grad(float *x, const int *targets, const float *lse, const float *w,
                                int rows, int cols, int col_offset) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (row >= rows) return;
  float *xr = x + (size_t)row * cols;
  const float l = lse[row], wr = w[row];
  const int t = targets[row] - col_offset;
  for (int c = lane; c < cols; c += 32) xr[c] = wr * (expf(xr[c] - l) - (c == t ? 1.f : 0.f));
}

extern "C" int duaf_ce_block(const float *x, const int32_t *targets, float *lse, float *picked,
                             int32_t rows, int32_t cols, int32_t col_offset, int32_t first) {
  if (rows <= 0 || cols <= 0) return 0;
  k_ce_block<<<blocks_for(rows, kRowsPerBlock), kThreads>>>(x, targets, lse, picked, rows, cols,
                                                           col_offset, first);
  LAUNCHED("crossEntropyBlock");
  return 0;
}

extern "C" int duaf_ce_block_grad(float *x, const int32_t *targets, const float *lse,
                                  const float *w, int32_t rows, int32_t cols,
                                  int32_t col_offset) {
  if (rows <= 0 || cols <= 0) return 0;
  k_ce_block_grad<<<blocks_for(rows, kRowsPerBlock), kThreads>>>(x, targets, lse, w, rows, cols,
                                                                col_offset);
  LAUNCHED("crossEntropyBlockGrad");
  return 0;
}

// DuAF fusion: one warp per row; the m <= 4 scores and weights of a row in registers.
__global__ void k_modality_fusion(const float *e0, const float *e1, const float *e2,
                                  const float *e3, int m, const float *t, const float *q, float *h,
                                  float *omega, float *keys, int rows, int dim, float scale) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (row >= rows) return;
  const float *e[4] = {e0, e1, e2, e3};
  const size_t off = (size_t)row * dim;
  float s[4] = {0.f, 0.f, 0.f, 0.f};
  float mx = -INFINITY;
  for (int j = 0; j < m; j++) {
    float *k = keys + ((size_t)row * m + j) * dim;
    float acc = 0.f;
    for (int c = lane; c < dim; c += 32) {
      const float kc = tanhf(e[j][off + c] + t[off + c]);
      k[c] = kc;
      acc += kc * q[off + c];
    }
    s[j] = warp_sum(acc) * scale;
    mx = fmaxf(mx, s[j]);
  }
  float sum = 0.f;
  for (int j = 0; j < m; j++) sum += s[j] = expf(s[j] - mx);
  for (int j = 0; j < m; j++) s[j] /= sum;
  if (lane < m) omega[(size_t)row * m + lane] = s[lane];
  for (int c = lane; c < dim; c += 32) {
    float acc = 0.f;
    for (int j = 0; j < m; j++) acc += s[j] * e[j][off + c];
    h[off + c] = acc;
  }
}

__global__ void k_modality_fusion_grad(const float *e0, const float *e1, const float *e2,
                                       const float *e3, float *ge0, float *ge1, float *ge2,
                                       float *ge3, int m, const float *q, const float *omega,
                                       const float *keys, const float *gh,
                                       const float *gomega, float *gt, float *gq, int rows,
                                       int dim, float scale) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (row >= rows) return;
  const float *e[4] = {e0, e1, e2, e3};
  float *ge[4] = {ge0, ge1, ge2, ge3};
  const size_t off = (size_t)row * dim;
  float w[4] = {0.f, 0.f, 0.f, 0.f}, gs[4] = {0.f, 0.f, 0.f, 0.f};
  float mean = 0.f;
  for (int j = 0; j < m; j++) {
    float acc = 0.f;
    for (int c = lane; c < dim; c += 32) acc += gh[off + c] * e[j][off + c];
    w[j] = omega[(size_t)row * m + j];
    gs[j] = warp_sum(acc) + (gomega ? gomega[(size_t)row * m + j] : 0.f);
    mean += w[j] * gs[j];
  }
  for (int j = 0; j < m; j++) gs[j] = scale * w[j] * (gs[j] - mean);
  for (int c = lane; c < dim; c += 32) {
    float ta = 0.f, qa = 0.f;
    for (int j = 0; j < m; j++) {
      const float k = keys[((size_t)row * m + j) * dim + c];
      const float u = gs[j] * (1.f - k) * (1.f + k) * q[off + c];
      ge[j][off + c] = w[j] * gh[off + c] + u;
      ta += u;
      qa += gs[j] * k;
    }
    gt[off + c] = ta;
    gq[off + c] = qa;
  }
}

extern "C" int duaf_modality_fusion(const float *e0, const float *e1, const float *e2,
                                    const float *e3, int32_t m, const float *t, const float *q,
                                    float *h, float *omega, float *keys, int32_t rows,
                                    int32_t dim, float scale) {
  if (rows <= 0 || dim <= 0) return 0;
  k_modality_fusion<<<blocks_for(rows, kRowsPerBlock), kThreads>>>(e0, e1, e2, e3, m, t, q, h,
                                                                   omega, keys, rows, dim, scale);
  LAUNCHED("modalityFusion");
  return 0;
}

extern "C" int duaf_modality_fusion_grad(const float *e0, const float *e1, const float *e2,
                                         const float *e3, float *ge0, float *ge1, float *ge2,
                                         float *ge3, int32_t m, const float *q,
                                         const float *omega, const float *keys, const float *gh,
                                         const float *gomega, float *gt, float *gq, int32_t rows, int32_t dim,
                                         float scale) {
  if (rows <= 0 || dim <= 0) return 0;
  k_modality_fusion_grad<<<blocks_for(rows, kRowsPerBlock), kThreads>>>(
      e0, e1, e2, e3, ge0, ge1, ge2, ge3, m, q, omega, keys, gh, gomega, gt, gq, rows, dim, scale);
  LAUNCHED("modalityFusionGrad");
  return 0;
}

// One row of layerNorm with x's elements read through xat(c): the row's own values, or their sum
// with a residual formed where it is read (k_add_layer_norm), which leaves the same bits.
template <class X>
__device__ __forceinline__ void layer_norm_row(X xat, const float *gamma, const float *beta,
                                               float *o, float *mean, float *rstd, int row,
                                               int lane, int cols, float eps) {
  float s = 0.f;
  for (int c = lane; c < cols; c += 32) s += xat(c);
  const float mu = warp_sum(s) / cols;
  float v = 0.f;
  for (int c = lane; c < cols; c += 32) {
    float d = xat(c) - mu;
    v += d * d;
  }
  const float rs = 1.f / sqrtf(warp_sum(v) / cols + eps);
  if (lane == 0) {
    mean[row] = mu;
    rstd[row] = rs;
  }
  for (int c = lane; c < cols; c += 32) o[c] = (xat(c) - mu) * rs * gamma[c] + beta[c];
}

__global__ void k_layer_norm(const float *x, const float *gamma, const float *beta, float *out,
                             float *mean, float *rstd, int rows, int cols, float eps) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (row >= rows) return;
  const float *xr = x + (size_t)row * cols;
  layer_norm_row([=](int c) { return xr[c]; }, gamma, beta, out + (size_t)row * cols, mean, rstd,
                 row, lane, cols, eps);
}

// layerNorm(a + b), or of dropout(a) + b with keep > 0: each element of the sum rounded as the
// separate dropout and add round it (no fused multiply-add), and written to sum when it is kept.
__global__ void k_add_layer_norm(const float *a, const float *b, float *sum, const float *gamma,
                                 const float *beta, float *out, float *mean, float *rstd, int rows,
                                 int cols, float eps, double p, unsigned hseed, float keep) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (row >= rows) return;
  const size_t o = (size_t)row * cols;
  auto xat = [=](int c) {
    const float av = keep > 0.f ? __fmul_rn(a[o + c], dropout_value((unsigned)(o + c), hseed, p, keep))
                                : a[o + c];
    return __fadd_rn(av, b[o + c]);
  };
  if (sum) {
    for (int c = lane; c < cols; c += 32) sum[o + c] = xat(c);
  }
  layer_norm_row(xat, gamma, beta, out + o, mean, rstd, row, lane, cols, eps);
}

__global__ void k_layer_norm_dx(const float *x, const float *gamma, const float *mean,
                                const float *rstd, const float *g, float *dx, int rows, int cols) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (row >= rows) return;
  const size_t o = (size_t)row * cols;
  const float mu = mean[row], rs = rstd[row];
  // With xhat = (x-mu)*rs and gh = g*gamma: dx = rs * (gh - mean(gh) - xhat * mean(gh*xhat)).
  float sg = 0.f, sgx = 0.f;
  for (int c = lane; c < cols; c += 32) {
    float gh = g[o + c] * gamma[c];
    sg += gh;
    sgx += gh * (x[o + c] - mu) * rs;
  }
  sg = warp_sum(sg) / cols;
  sgx = warp_sum(sgx) / cols;
  for (int c = lane; c < cols; c += 32) {
    float xh = (x[o + c] - mu) * rs;
    dx[o + c] = rs * (g[o + c] * gamma[c] - sg - xh * sgx);
  }
}

// dgamma/dbeta: one thread per (column, chunk of rows); partials summed in chunk order.
__global__ void k_layer_norm_cols(const float *x, const float *mean, const float *rstd,
                                  const float *g, double *partial, float *dgamma, float *dbeta,
                                  int rows, int cols, int chunk) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const int r0 = blockIdx.y * chunk, r1 = min(rows, r0 + chunk);
  double sg = 0, sb = 0;
  for (int r = r0; r < r1; r++) {
    const size_t o = (size_t)r * cols + c;
    const float gv = g[o];
    sg += gv * ((x[o] - mean[r]) * rstd[r]);
    sb += gv;
  }
  if (partial) {
    partial[(size_t)blockIdx.y * cols + c] = sg;
    partial[(size_t)(gridDim.y + blockIdx.y) * cols + c] = sb;
  } else {
    dgamma[c] += (float)sg;
    dbeta[c] += (float)sb;
  }
}

__global__ void k_layer_norm_finish(const double *partial, float *dgamma, float *dbeta, int cols,
                                    int chunks) {
  const int c = global_id();
  if (c >= cols) return;
  double sg = 0, sb = 0;
  for (int k = 0; k < chunks; k++) {
    sg += partial[(size_t)k * cols + c];
    sb += partial[(size_t)(chunks + k) * cols + c];
  }
  dgamma[c] += (float)sg;
  dbeta[c] += (float)sb;
}

extern "C" int duaf_layer_norm(const float *x, const float *gamma, const float *beta, float *out,
                               float *mean, float *rstd, int32_t rows, int32_t cols, float eps) {
  if (rows <= 0 || cols <= 0) return 0;
  k_layer_norm<<<blocks_for(rows, kRowsPerBlock), kThreads>>>(x, gamma, beta, out, mean, rstd,
                                                              rows, cols, eps);
  LAUNCHED("layerNorm");
  return 0;
}

extern "C" int duaf_add_layer_norm(const float *a, const float *b, float *sum, const float *gamma,
                                   const float *beta, float *out, float *mean, float *rstd,
                                   int32_t rows, int32_t cols, float eps, int32_t drop, double p,
                                   uint32_t seed) {
  if (rows <= 0 || cols <= 0) return 0;
  const float keep = drop ? (float)(1.0 / (1.0 - p)) : 0.f;
  k_add_layer_norm<<<blocks_for(rows, kRowsPerBlock), kThreads>>>(
      a, b, sum, gamma, beta, out, mean, rstd, rows, cols, eps, p, hash32(seed), keep);
  LAUNCHED("addLayerNorm");
  return 0;
}

extern "C" int duaf_layer_norm_grad(const float *x, const float *gamma, const float *mean,
                                    const float *rstd, const float *g, float *dx, float *dgamma,
                                    float *dbeta, int32_t rows, int32_t cols) {
  if (rows <= 0 || cols <= 0) return 0;
  k_layer_norm_dx<<<blocks_for(rows, kRowsPerBlock), kThreads>>>(x, gamma, mean, rstd, g, dx, rows,
                                                                 cols);
  LAUNCHED("layerNormGrad");
  // ~32k threads in all, each summing at least 32 rows.
  int chunks = 32768 / cols;
  if (chunks < 1) chunks = 1;
  if (chunks > (rows + 31) / 32) chunks = (rows + 31) / 32;
  if (chunks > 65535) chunks = 65535;
  const int chunk = (rows + chunks - 1) / chunks;
  chunks = (rows + chunk - 1) / chunk;
  const int bx = cols < 128 ? 64 : 128;
  dim3 grid((cols + bx - 1) / bx, chunks);
  if (chunks == 1) {
    k_layer_norm_cols<<<grid, bx>>>(x, mean, rstd, g, NULL, dgamma, dbeta, rows, cols, chunk);
    LAUNCHED("layerNormGrad");
    return 0;
  }
  Scratch partial((size_t)2 * chunks * cols * sizeof(double));
  if (!partial.p) return 1;
  k_layer_norm_cols<<<grid, bx>>>(x, mean, rstd, g, partial.as<double>(), dgamma, dbeta, rows, cols,
                                  chunk);
  LAUNCHED("layerNormGrad");
  k_layer_norm_finish<<<blocks_for(cols), kThreads>>>(partial.as<double>(), dgamma, dbeta, cols,
                                                      chunks);
  LAUNCHED("layerNormGrad");
  return 0;
}

// ---------------------------------------------------------------------------------------------
// indexing

// Element t of an [n, dim] lookup: its offset in the table, or -1 (flagged) for a row index out
// of range.
__device__ __forceinline__ long long lookup_offset(const int *idx, unsigned t, unsigned rows,
                                                   unsigned dim) {
  unsigned i = t / dim, c = t - i * dim;
  unsigned r = (unsigned)idx[i];
  if (r >= rows) {
    atomicOr(&d_bad_index, BAD_GATHER);
    return -1;
  }
  return (long long)r * dim + c;
}

__global__ void k_gather(const unsigned *table, unsigned rows, const int *idx, unsigned *out,
                         unsigned n, unsigned dim) {
  unsigned t = global_id();
  if (t >= n * dim) return;
  const long long at = lookup_offset(idx, t, rows, dim);
  if (at >= 0) out[t] = table[at];
}

extern "C" int duaf_gather(const void *table, int32_t table_rows, const int32_t *idx, void *out,
                           int32_t n, int32_t dim) {
  if (n <= 0 || dim <= 0) return 0;
  k_gather<<<blocks_for((long long)n * dim), kThreads>>>((const unsigned *)table, table_rows, idx,
                                                         (unsigned *)out, n, dim);
  LAUNCHED("gather");
  return 0;
}

// gather, then the add of b's row: out = table[idx[i]] + b[i], one rounding as binary add's.
__global__ void k_gather_add(const float *table, unsigned rows, const int *idx, const float *b,
                             float *out, unsigned n, unsigned dim) {
  unsigned t = global_id();
  if (t >= n * dim) return;
  const long long at = lookup_offset(idx, t, rows, dim);
  if (at >= 0) out[t] = __fadd_rn(table[at], b[t]);
}

extern "C" int duaf_gather_add(const float *table, int32_t table_rows, const int32_t *idx,
                               const float *b, float *out, int32_t n, int32_t dim) {
  if (n <= 0 || dim <= 0) return 0;
  k_gather_add<<<blocks_for((long long)n * dim), kThreads>>>(table, table_rows, idx, b, out, n,
                                                             dim);
  LAUNCHED("gatherAdd");
  return 0;
}

// Out-of-range indices get the key `rows`, which sorts last and is skipped.
__global__ void k_scatter_keys(const int *idx, unsigned n, unsigned rows, unsigned *keys,
                               unsigned *vals) {
  unsigned i = global_id();
  if (i >= n) return;
  unsigned r = (unsigned)idx[i];
  if (r >= rows) {
    atomicOr(&d_bad_index, BAD_SCATTER);
    r = rows;
  }
  keys[i] = r;
  vals[i] = i;
}

// After a stable sort by destination row, each row's contributions form one run of equal keys.
// Runs are summed over fixed chunks of the sorted order: one block per chunk, threads over the
// columns, each summing its chunk in order. A run inside one chunk is added to `out` here. A run
// that crosses chunk boundaries leaves partial sums instead: `tail` for its part in the chunk
// where it starts, `head` for its part at the start of each later chunk; k_scatter_chain adds
// those in chunk order. The decomposition depends only on n, so results repeat bit for bit, and
// a long run (padding, positions) is summed by many blocks instead of one thread.
static const unsigned kScatterChunk = 256;

__global__ void k_scatter_chunks(const float *g, const unsigned *keys, const unsigned *vals,
                                 float *out, float *head, float *tail, unsigned n, unsigned rows,
                                 unsigned dim) {
  const unsigned chunk = blockIdx.x;
  const unsigned start = chunk * kScatterChunk;
  const unsigned end = min(start + kScatterChunk, n);
  const bool continuing = start > 0 && keys[start - 1] == keys[start];
  for (unsigned c = threadIdx.x; c < dim; c += blockDim.x) {
    for (unsigned p = start; p < end;) {
      const unsigned key = keys[p];
      float acc = 0.f;
      unsigned q = p;
      for (; q < end && keys[q] == key; q++) acc += g[(size_t)vals[q] * dim + c];
      if (key < rows) {
        if (p == start && continuing) head[(size_t)chunk * dim + c] = acc;
        else if (q == end && end < n && keys[end] == key) tail[(size_t)chunk * dim + c] = acc;
        else out[(size_t)key * dim + c] += acc;
      }
      p = q;
    }
  }
}

// One thread per (chunk, column) whose last run starts in that chunk and crosses its end: adds
// the run's partial sums of the following chunks, in order, and writes the row.
__global__ void k_scatter_chain(const unsigned *keys, const float *head, const float *tail,
                                float *out, unsigned n, unsigned rows, unsigned dim,
                                unsigned chunks) {
  const unsigned t = global_id();
  if (t >= chunks * dim) return;
  const unsigned chunk = t / dim, c = t - chunk * dim;
  const unsigned start = chunk * kScatterChunk;
  const unsigned end = min(start + kScatterChunk, n);
  const unsigned key = keys[end - 1];
  if (key >= rows || end >= n || keys[end] != key) return; // the last run ends in this chunk
  if (start > 0 && keys[start] == key && keys[start - 1] == key) return; // started earlier
  float acc = tail[(size_t)chunk * dim + c];
  for (unsigned j = chunk + 1; j < chunks; j++) {
    acc += head[(size_t)j * dim + c];
    const unsigned je = min((j + 1) * kScatterChunk, n);
    if (je >= n || keys[je] != key) break; // the run ends inside chunk j or at its end
  }
  out[(size_t)key * dim + c] += acc;
}

extern "C" int duaf_scatter_add(const float *g, const int32_t *idx, float *out, int32_t out_rows,
                                int32_t n, int32_t dim) {
  if (n <= 0 || dim <= 0) return 0;
  Scratch buf((size_t)4 * n * sizeof(unsigned));
  if (!buf.p) return 1;
  unsigned *keys_in = buf.as<unsigned>(), *keys_out = keys_in + n;
  unsigned *vals_in = keys_out + n, *vals_out = vals_in + n;
  k_scatter_keys<<<blocks_for(n), kThreads>>>(idx, n, out_rows, keys_in, vals_in);
  LAUNCHED("scatterAdd");
  // Sorting only the bits that can be set keeps the radix sort to a pass or two.
  int end_bit = 1;
  while (end_bit < 32 && ((unsigned)out_rows >> end_bit) != 0) end_bit++;
  size_t temp_bytes = 0;
  CK(cub::DeviceRadixSort::SortPairs(NULL, temp_bytes, keys_in, keys_out, vals_in, vals_out, n, 0,
                                     end_bit, 0));
  Scratch temp(temp_bytes > 0 ? temp_bytes : 1);
  if (!temp.p) return 1;
  CK(cub::DeviceRadixSort::SortPairs(temp.p, temp_bytes, keys_in, keys_out, vals_in, vals_out, n,
                                     0, end_bit, 0));
  const unsigned chunks = (unsigned)((n + kScatterChunk - 1) / kScatterChunk);
  Scratch partial((size_t)2 * chunks * dim * sizeof(float));
  if (!partial.p) return 1;
  float *head = partial.as<float>(), *tail = head + (size_t)chunks * dim;
  const unsigned threads = dim < kThreads ? (unsigned)dim : kThreads;
  k_scatter_chunks<<<chunks, threads>>>(g, keys_out, vals_out, out, head, tail, n, out_rows, dim);
  LAUNCHED("scatterAdd");
  k_scatter_chain<<<blocks_for((long long)chunks * dim), kThreads>>>(keys_out, head, tail, out, n,
                                                                     out_rows, dim, chunks);
  LAUNCHED("scatterAdd");
  return 0;
}

__global__ void k_pick(const float *x, const int *idx, float *out, unsigned rows, unsigned cols) {
  unsigned r = global_id();
  if (r >= rows) return;
  unsigned c = (unsigned)idx[r];
  if (c >= cols) {
    atomicOr(&d_bad_index, BAD_PICK);
    return;
  }
  out[r] = x[(size_t)r * cols + c];
}

__global__ void k_pick_grad(const float *g, const int *idx, float *out, unsigned rows,
                            unsigned cols) {
  unsigned r = global_id();
  if (r >= rows) return;
  unsigned c = (unsigned)idx[r];
  if (c >= cols) {
    atomicOr(&d_bad_index, BAD_PICK_GRAD);
    return;
  }
  out[(size_t)r * cols + c] += g[r]; // one element per row: no two threads share a target
}

extern "C" int duaf_pick(const float *x, const int32_t *idx, float *out, int32_t rows,
                         int32_t cols) {
  if (rows <= 0) return 0;
  k_pick<<<blocks_for(rows), kThreads>>>(x, idx, out, rows, cols);
  LAUNCHED("pick");
  return 0;
}

extern "C" int duaf_pick_grad(const float *g, const int32_t *idx, float *out, int32_t rows,
                              int32_t cols) {
  if (rows <= 0) return 0;
  k_pick_grad<<<blocks_for(rows), kThreads>>>(g, idx, out, rows, cols);
  LAUNCHED("pickGrad");
  return 0;
}

// ---------------------------------------------------------------------------------------------
// dropout: masks from hash32/dropout_value above

// The mask is drawn from (seed, i) in the kernel and never stored; x and out may alias.
__global__ void k_dropout(const float *x, float *out, unsigned n, double p, unsigned hseed,
                          float keep) {
  unsigned i = global_id();
  if (i < n) out[i] = x[i] * dropout_value(i, hseed, p, keep);
}

extern "C" int duaf_dropout(const float *x, float *out, int32_t n, double p, uint32_t seed) {
  if (n <= 0) return 0;
  const float keep = (float)(1.0 / (1.0 - p));
  k_dropout<<<blocks_for(n), kThreads>>>(x, out, n, p, hash32(seed), keep);
  LAUNCHED("dropout");
  return 0;
}

// Rows of a larger tensor's dropout: row r takes the mask of row rows[r] of an [of, cols] tensor.
__global__ void k_dropout_rows(const float *x, float *out, const int *rows, unsigned n,
                               unsigned cols, double p, unsigned hseed, float keep) {
  unsigned t = global_id();
  if (t >= n * cols) return;
  unsigned r = t / cols, c = t - r * cols;
  out[t] = x[t] * dropout_value((unsigned)rows[r] * cols + c, hseed, p, keep);
}

extern "C" int duaf_dropout_rows(const float *x, float *out, const int32_t *rows, int32_t n,
                                 int32_t cols, double p, uint32_t seed) {
  if (n <= 0 || cols <= 0) return 0;
  const float keep = (float)(1.0 / (1.0 - p));
  k_dropout_rows<<<blocks_for((long long)n * cols), kThreads>>>(x, out, rows, n, cols, p,
                                                                hash32(seed), keep);
  LAUNCHED("dropoutRows");
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Adam / AdamW, in double with float32 stores at the same points as the reference backend

__global__ void k_adam(float *P, const float *G, float *M, float *V, unsigned n, double lr,
                       double b1, double b2, double eps, double wd, int decoupled, double bc1,
                       double bc2) {
  unsigned i = global_id();
  if (i >= n) return;
  double g = G[i];
  float p = P[i];
  if (!decoupled && wd != 0) g += wd * p;
  const float m = (float)(b1 * M[i] + (1 - b1) * g);
  const float v = (float)(b2 * V[i] + (1 - b2) * g * g);
  M[i] = m;
  V[i] = v;
  const double mhat = m / bc1, vhat = v / bc2;
  if (decoupled && wd != 0) p = (float)(p - lr * wd * p);
  P[i] = (float)(p - lr * mhat / (sqrt(vhat) + eps));
}

extern "C" int duaf_adam(float *p, const float *g, float *m, float *v, int32_t n, double lr,
                         double beta1, double beta2, double eps, double weight_decay,
                         int32_t decoupled, double bc1, double bc2) {
  if (n <= 0) return 0;
  k_adam<<<blocks_for(n), kThreads>>>(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay,
                                      decoupled, bc1, bc2);
  LAUNCHED("adam");
  return 0;
}
