/*
 * Native CPU kernels for the native backend: the compute-bound wasm kernels (transcendental
 * elementwise ops and their gradients, the cross-entropy block rows) rewritten in C so the
 * compiler can use the host's full vector width (AVX-512 is four times wasm's 128-bit SIMD).
 *
 * Every function computes each output element with the same float32 operations, in the same
 * order, as its wasm twin in wasm/assembly/ (math.ts, unary.ts, rows.ts): the results are the same
 * bits, so a run's checkpoints do not depend on whether these kernels were available. The backend
 * checks that on start-up (core/backends/cpu_kernels.ts) and keeps the wasm kernels if not.
 *
 * Build (ffi/cpu/build.ts): cc -O3 -march=native -ffp-contract=off -fno-math-errno, with
 * DUAF_FUSED_MADD=1 to match the relaxed-SIMD wasm build (fused multiply-add) or 0 for the plain
 * one. -ffp-contract=off keeps every other multiply and add separately rounded, as in wasm.
 *
 * Pointers: `base` is byte 0 of the wasm memory; every other pointer is a byte offset into it.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sched.h>
#define DUAF_YIELD() sched_yield()
#else
#define DUAF_YIELD() ((void)0)
#endif
#ifdef __SSE2__
#include <immintrin.h> /* x86 vector intrinsics, where the target has them */
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h> /* the CPU's maker (duaf_attention_min_keys) */
#endif
#if defined(__linux__)
#include <stdlib.h>      /* getenv, malloc (the AMX products) */
#include <sys/syscall.h> /* arch_prctl (the AMX tile state) */
#include <unistd.h>
#endif

#ifndef DUAF_FUSED_MADD
#define DUAF_FUSED_MADD 1
#endif

#if DUAF_FUSED_MADD
#define MADD(a, b, c) fmaf((a), (b), (c))
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

#define ABI_VERSION 29

/* Op codes of wasm/assembly/unary.ts (UNARY_CODES in core/backend.ts). */
enum {
  OP_NEG = 0,
  OP_EXP = 1,
  OP_LOG = 2,
  OP_SQRT = 3,
  OP_TANH = 4,
  OP_SIGMOID = 5,
  OP_GELU = 6,
  OP_RELU = 7,
  OP_LEAKY_RELU = 8,
  OP_SOFTPLUS = 9,
  OP_SIN = 10,
  OP_COS = 11,
  OP_ABS = 12,
  OP_SQUARE = 13,
  OP_SCALE = 14,
  OP_ADD_SCALAR = 15,
};

#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO -2.12194440e-4f
#define EXP_MAX 88.7228391f
#define EXP_MIN -87.3365447f
#define SQRT_HALF 0.707106781186547524f
#define FLT_MIN_NORMAL 1.17549435e-38f

static inline float as_float(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline uint32_t as_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/* wasm's f32x4.pmax / pmin: b if a < b (resp. b < a), else a. */
static inline float pmax(float a, float b) { return a < b ? b : a; }
static inline float pmin(float a, float b) { return b < a ? b : a; }

/* wasm's f32.max / f32.min (and f32x4.max): NaN if either is NaN, -0 below +0. */
static inline float wmax(float a, float b) {
  if (a != a || b != b) return a + b;
  if (a == b) return as_float(as_bits(a) & as_bits(b));
  return a > b ? a : b;
}
static inline float wmin(float a, float b) {
  if (a != a || b != b) return a + b;
  if (a == b) return as_float(as_bits(a) | as_bits(b));
  return a < b ? a : b;
}

/* math.ts expMantissa: e^(x - n ln 2) for n = round(x / ln 2). */
static inline float exp_mantissa(float xc, float n) {
  float r = xc - n * LN2_HI;
  r = r - n * LN2_LO;
  float p = 1.9875691500e-4f;
  p = MADD(p, r, 1.3981999507e-3f);
  p = MADD(p, r, 8.3334519073e-3f);
  p = MADD(p, r, 4.1665795894e-2f);
  p = MADD(p, r, 1.6666665459e-1f);
  p = MADD(p, r, 5.0000001201e-1f);
  return MADD(p, r * r, r + 1.0f);
}

/* math.ts expV. */
static inline float exp_full(float x) {
  float xc = pmin(pmax(x, EXP_MIN), EXP_MAX);
  float n = rintf(xc * LOG2E);
  float p = exp_mantissa(xc, n);
  int32_t ni = (int32_t)n;
  int32_t h = ni >> 1;
  float s1 = as_float((uint32_t)(h + 127) << 23);
  float s2 = as_float((uint32_t)(ni - h + 127) << 23);
  float y = (p * s1) * s2;
  y = x > EXP_MAX ? INFINITY : y;
  return x < EXP_MIN ? 0.0f : y;
}

/* math.ts expBoundedV: e^x for x < 88. */
static inline float exp_bounded(float x) {
  float xc = pmax(x, EXP_MIN);
  float n = rintf(xc * LOG2E);
  float p = exp_mantissa(xc, n);
  float s = as_float(((uint32_t)(int32_t)n + 127u) << 23);
  float y = p * s;
  return x < EXP_MIN ? 0.0f : y;
}

/* math.ts logV. */
static inline float log_(float x) {
  int sub = x < FLT_MIN_NORMAL;
  float xs = sub ? x * 33554432.0f : x;
  uint32_t bits = as_bits(xs);
  int32_t e = (int32_t)(bits >> 23) - 126;
  e -= sub ? 25 : 0;
  float m = as_float((bits & 0x007fffffu) | 0x3f000000u);
  int low = m < SQRT_HALF;
  e += low ? -1 : 0;
  m = (m + (low ? m : 0.0f)) - 1.0f;
  float fe = (float)e;
  float z = m * m;
  float p = 7.0376836292e-2f;
  p = MADD(p, m, -1.1514610310e-1f);
  p = MADD(p, m, 1.1676998740e-1f);
  p = MADD(p, m, -1.2420140846e-1f);
  p = MADD(p, m, 1.4249322787e-1f);
  p = MADD(p, m, -1.6668057665e-1f);
  p = MADD(p, m, 2.0000714765e-1f);
  p = MADD(p, m, -2.4999993993e-1f);
  p = MADD(p, m, 3.3333331174e-1f);
  float y = (p * m) * z;
  y = MADD(fe, LN2_LO, y);
  y = MADD(z, -0.5f, y);
  float r = (m + y) + fe * LN2_HI;
  r = x == 0.0f ? -INFINITY : r;
  r = x < 0.0f ? NAN : r;
  r = x == INFINITY ? x : r;
  return x != x ? x : r;
}

/* math.ts tanhV. */
static inline float tanh_(float x) {
  float ax = fabsf(x);
  float z = x * x;
  float p = -5.70498872745e-3f;
  p = MADD(p, z, 2.06390887954e-2f);
  p = MADD(p, z, -5.37397155531e-2f);
  p = MADD(p, z, 1.33314422036e-1f);
  p = MADD(p, z, -3.33332819422e-1f);
  float small = MADD(p * z, x, x);
  float e = exp_full(ax + ax);
  float large = 1.0f - 2.0f / (e + 1.0f);
  large = as_float(as_bits(large) | (as_bits(x) & 0x80000000u));
  return ax < 0.625f ? small : large;
}

static inline float sigmoid_(float x) { return 1.0f / (1.0f + exp_full(-x)); }

/* math.ts log1pV, for u >= 0. */
static inline float log1p_(float u) {
  float w = u + 1.0f;
  float d = w - 1.0f;
  float r = (log_(w) * u) / d;
  return d == 0.0f ? u : r;
}

static inline float softplus_(float x) {
  float r = wmax(x, 0.0f) + log1p_(exp_full(-fabsf(x)));
  return x > 20.0f ? x : r;
}

/* math.ts normalCdfV (Numerical Recipes' erfcc). */
static inline float normal_cdf(float x) {
  float z = fabsf(x) * 0.707106781186547524f;
  float t = 1.0f / MADD(z, 0.5f, 1.0f);
  float p = 0.17087277f;
  p = MADD(p, t, -0.82215223f);
  p = MADD(p, t, 1.48851587f);
  p = MADD(p, t, -1.13520398f);
  p = MADD(p, t, 0.27886807f);
  p = MADD(p, t, -0.18628806f);
  p = MADD(p, t, 0.09678418f);
  p = MADD(p, t, 0.37409196f);
  p = MADD(p, t, 1.00002368f);
  p = MADD(p, t, -1.26551223f);
  float z2 = (x * x) * 0.5f;
  float half = (t * exp_bounded(p - z2)) * 0.5f;
  return x >= 0.0f ? 1.0f - half : half;
}

static inline float normal_pdf(float x) {
  return exp_bounded((x * x) * -0.5f) * 0.398942280401432678f;
}

/*
 * sin and cos as AssemblyScript's Mathf.sin / Mathf.cos compute them (the wasm kernels' sin and
 * cos lanes; its std/assembly/math.ts, after musl's sinf.c / cosf.c and metallic's rem_pio2f.c):
 * double-precision kernels on the reduced argument, the same operations in the same order.
 */
static inline double as_double(uint64_t u) {
  double d;
  memcpy(&d, &u, 8);
  return d;
}

static const uint64_t PIO2F_TABLE[4] = {
    0xA2F9836E4E441529ull, 0xFC2757D1F534DDC0ull, 0xDB6295993C439041ull, 0xFE5163ABDEBBC561ull};

static inline int pio2f_large_quot(float x, int32_t u, double* y) {
  const double coeff = as_double(0x3BF921FB54442D18ull); /* pi * 2^-65 */
  const int32_t offset = (u >> 23) - 152;
  const uint64_t shift = (uint64_t)(offset & 63);
  const uint64_t* tbl = PIO2F_TABLE + (offset >> 6);
  const uint64_t b0 = tbl[0], b1 = tbl[1];
  uint64_t lo;
  if (shift > 32) {
    const uint64_t b2 = tbl[2];
    lo = b2 >> (96 - shift);
    lo |= b1 << (shift - 32);
  } else {
    lo = b1 >> (32 - shift);
  }
  /* wasm's i64 shifts take the count mod 64 (shift is 0 only for offset 0 mod 64). */
  const uint64_t hi = (b1 >> ((64 - shift) & 63)) | (b0 << shift);
  const uint64_t mantissa = (uint64_t)((u & 0x007FFFFF) | 0x00800000);
  const uint64_t product = mantissa * hi + (mantissa * lo >> 32);
  const int64_t r = (int64_t)(product << 2);
  const int q = (int)(int32_t)((product >> 62) + ((uint64_t)r >> 63));
  *y = copysign(coeff, (double)x) * (double)r;
  return q;
}

static inline int rempio2f(float x, uint32_t u, int sign, double* y) {
  const double pi2hi = as_double(0x3FF921FB50000000ull);
  const double pi2lo = as_double(0x3E5110B4611A6263ull);
  const double two_pi = as_double(0x3FE45F306DC9C883ull);
  if (u < 0x4DC90FDB) {
    const double q = nearbyint((double)x * two_pi);
    *y = (double)x - q * pi2hi - q * pi2lo;
    return (int)q;
  }
  const int q = pio2f_large_quot(x, (int32_t)u, y);
  return sign ? -q : q;
}

static inline float sin_kernf(double x) {
  const double S1 = as_double(0xBFC5555554CBAC77ull), S2 = as_double(0x3F811110896EFBB2ull);
  const double S3 = as_double(0xBF2A00F9E2CAE774ull), S4 = as_double(0x3EC6CD878C3B46A7ull);
  const double z = x * x, w = z * z, r = S3 + z * S4, s = z * x;
  return (float)((x + s * (S1 + z * S2)) + s * w * r);
}

static inline float cos_kernf(double x) {
  const double C0 = as_double(0xBFDFFFFFFD0C5E81ull), C1 = as_double(0x3FA55553E1053A42ull);
  const double C2 = as_double(0xBF56C087E80F1E27ull), C3 = as_double(0x3EF99342E0EE5069ull);
  const double z = x * x, w = z * z, r = C2 + z * C3;
  return (float)(((1 + z * C0) + w * C1) + (w * z) * r);
}

static float sin_(float x) {
  const double s1pio2 = as_double(0x3FF921FB54442D18ull), s2pio2 = as_double(0x400921FB54442D18ull);
  const double s3pio2 = as_double(0x4012D97C7F3321D2ull), s4pio2 = as_double(0x401921FB54442D18ull);
  uint32_t ux = as_bits(x);
  const int sign = (int)(ux >> 31);
  ux &= 0x7FFFFFFF;
  const double xd = (double)x;
  if (ux <= 0x3F490FDA) {
    if (ux < 0x39800000) return x;
    return sin_kernf(xd);
  }
  if (ux <= 0x407B53D1) {
    if (ux <= 0x4016CBE3) return sign ? -cos_kernf(xd + s1pio2) : cos_kernf(xd - s1pio2);
    return sin_kernf(-(sign ? xd + s2pio2 : xd - s2pio2));
  }
  if (ux <= 0x40E231D5) {
    if (ux <= 0x40AFEDDF) return sign ? cos_kernf(xd + s3pio2) : -cos_kernf(xd - s3pio2);
    return sin_kernf(sign ? xd + s4pio2 : xd - s4pio2);
  }
  if (ux >= 0x7F800000) return x - x;
  double y;
  const int n = rempio2f(x, ux, sign, &y);
  const float t = n & 1 ? cos_kernf(y) : sin_kernf(y);
  return n & 2 ? -t : t;
}

static float cos_(float x) {
  const double c1pio2 = as_double(0x3FF921FB54442D18ull), c2pio2 = as_double(0x400921FB54442D18ull);
  const double c3pio2 = as_double(0x4012D97C7F3321D2ull), c4pio2 = as_double(0x401921FB54442D18ull);
  uint32_t ux = as_bits(x);
  const int sign = (int)(ux >> 31);
  ux &= 0x7FFFFFFF;
  const double xd = (double)x;
  if (ux <= 0x3F490FDA) {
    if (ux < 0x39800000) return 1.0f;
    return cos_kernf(xd);
  }
  if (ux <= 0x407B53D1) {
    if (ux > 0x4016CBE3) return -cos_kernf(sign ? xd + c2pio2 : xd - c2pio2);
    return sign ? sin_kernf(xd + c1pio2) : sin_kernf(c1pio2 - xd);
  }
  if (ux <= 0x40E231D5) {
    if (ux > 0x40AFEDDF) return cos_kernf(sign ? xd + c4pio2 : xd - c4pio2);
    return sign ? sin_kernf(-xd - c3pio2) : sin_kernf(xd - c3pio2);
  }
  if (ux >= 0x7F800000) return x - x;
  double y;
  const int n = rempio2f(x, ux, sign, &y);
  const float t = n & 1 ? sin_kernf(y) : cos_kernf(y);
  return (n + 1) & 2 ? -t : t;
}

/*
 * sin_ (cos_ with want_cos) of n floats. Arguments past 9pi/4 and below 2^28 pi/2 (what a time
 * embedding's angles mostly are) take one path: the quadrant n = rint(x 2/pi) and y = x - n pi/2
 * in double, then the sine or cosine kernel by n & 1 and the sign by n & 2 (cos: (n + 1) & 2).
 * With AVX-512 eight lanes run that path at once with the same double operations, and any lane
 * outside it is redone by sin_ / cos_; without AVX-512 every element goes to sin_ / cos_.
 */
static void sin_cos_run(const float* x, float* out, int n, int want_cos) {
  int i = 0;
#if defined(__AVX512F__)
  const __m512d two_pi = _mm512_set1_pd(as_double(0x3FE45F306DC9C883ull));
  const __m512d pi2hi = _mm512_set1_pd(as_double(0x3FF921FB50000000ull));
  const __m512d pi2lo = _mm512_set1_pd(as_double(0x3E5110B4611A6263ull));
  const __m512d S1 = _mm512_set1_pd(as_double(0xBFC5555554CBAC77ull));
  const __m512d S2 = _mm512_set1_pd(as_double(0x3F811110896EFBB2ull));
  const __m512d S3 = _mm512_set1_pd(as_double(0xBF2A00F9E2CAE774ull));
  const __m512d S4 = _mm512_set1_pd(as_double(0x3EC6CD878C3B46A7ull));
  const __m512d C0 = _mm512_set1_pd(as_double(0xBFDFFFFFFD0C5E81ull));
  const __m512d C1 = _mm512_set1_pd(as_double(0x3FA55553E1053A42ull));
  const __m512d C2 = _mm512_set1_pd(as_double(0xBF56C087E80F1E27ull));
  const __m512d C3 = _mm512_set1_pd(as_double(0x3EF99342E0EE5069ull));
  const __m512d one = _mm512_set1_pd(1.0);
  const __m256i lo_bound = _mm256_set1_epi32(0x40E231D5), hi_bound = _mm256_set1_epi32(0x4DC90FDB);
  const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF);
  for (; i + 8 <= n; i += 8) {
    const __m256 xf = _mm256_loadu_ps(x + i);
    const __m256i ux = _mm256_and_si256(_mm256_castps_si256(xf), abs_mask);
    const __mmask8 in = _mm256_cmpgt_epi32_mask(ux, lo_bound) & _mm256_cmpgt_epi32_mask(hi_bound, ux);
    if (!in) {
      for (int j = 0; j < 8; j++) out[i + j] = want_cos ? cos_(x[i + j]) : sin_(x[i + j]);
      continue;
    }
    const __m512d xd = _mm512_cvtps_pd(xf);
    const __m512d q = _mm512_roundscale_pd(_mm512_mul_pd(xd, two_pi),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512d y = _mm512_sub_pd(_mm512_sub_pd(xd, _mm512_mul_pd(q, pi2hi)), _mm512_mul_pd(q, pi2lo));
    const __m256i nq = _mm512_cvtpd_epi32(q);
    const __m512d z = _mm512_mul_pd(y, y), w = _mm512_mul_pd(z, z);
    /* sin_kernf: (y + s (S1 + z S2)) + s w r, r = S3 + z S4, s = z y */
    const __m512d sr = _mm512_add_pd(S3, _mm512_mul_pd(z, S4)), sz = _mm512_mul_pd(z, y);
    const __m512d sv = _mm512_add_pd(_mm512_add_pd(y, _mm512_mul_pd(sz, _mm512_add_pd(S1, _mm512_mul_pd(z, S2)))),
                                     _mm512_mul_pd(_mm512_mul_pd(sz, w), sr));
    /* cos_kernf: ((1 + z C0) + w C1) + (w z) r, r = C2 + z C3 */
    const __m512d cr = _mm512_add_pd(C2, _mm512_mul_pd(z, C3));
    const __m512d cv = _mm512_add_pd(_mm512_add_pd(_mm512_add_pd(one, _mm512_mul_pd(z, C0)), _mm512_mul_pd(w, C1)),
                                     _mm512_mul_pd(_mm512_mul_pd(w, z), cr));
    const __m256 sf = _mm512_cvtpd_ps(sv), cf = _mm512_cvtpd_ps(cv);
    /* The kernel by quadrant parity, then the sign: n & 2 (sin), (n + 1) & 2 (cos). */
    const __m256i nk = want_cos ? _mm256_add_epi32(nq, _mm256_set1_epi32(1)) : nq;
    const __mmask8 odd = _mm256_test_epi32_mask(nq, _mm256_set1_epi32(1));
    const __m256 t = want_cos ? _mm256_mask_blend_ps(odd, cf, sf) : _mm256_mask_blend_ps(odd, sf, cf);
    const __m256i neg = _mm256_slli_epi32(_mm256_and_si256(nk, _mm256_set1_epi32(2)), 30);
    _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_xor_si256(_mm256_castps_si256(t), neg)));
    if (in != 0xFF) {
      for (int j = 0; j < 8; j++)
        if (!(in >> j & 1)) out[i + j] = want_cos ? cos_(x[i + j]) : sin_(x[i + j]);
    }
  }
#endif
  for (; i < n; i++) out[i] = want_cos ? cos_(x[i]) : sin_(x[i]);
}

/* Floats per chunk of a gradient that needs sin_ or cos_ of x first (on the stack). */
#define SIN_COS_CHUNK 256

/* One loop per op, so each vectorizes without a switch inside. */
#define UNARY_LOOP(EXPR)                          \
  for (int i = 0; i < n; i++) {                   \
    float v = x[i];                               \
    out[i] = (EXPR);                              \
  }                                               \
  return 1;

/* unary.ts `unary`. Returns 0 for an op this file does not implement (the caller falls back). */
int duaf_unary(uint8_t* base, int op, uint32_t xo, uint32_t outo, int n, float alpha) {
  const float* restrict x = (const float*)(base + xo);
  float* restrict out = (float*)(base + outo);
  switch (op) {
    case OP_NEG: UNARY_LOOP(-v)
    case OP_EXP: UNARY_LOOP(exp_full(v))
    case OP_LOG: UNARY_LOOP(log_(v))
    case OP_SQRT: UNARY_LOOP(sqrtf(v))
    case OP_TANH: UNARY_LOOP(tanh_(v))
    case OP_SIGMOID: UNARY_LOOP(sigmoid_(v))
    case OP_GELU: UNARY_LOOP(v * normal_cdf(v))
    case OP_RELU: UNARY_LOOP(pmax(v, 0.0f))
    case OP_LEAKY_RELU: UNARY_LOOP(v > 0.0f ? v : v * alpha)
    case OP_SOFTPLUS: UNARY_LOOP(softplus_(v))
    case OP_SIN: sin_cos_run(x, out, n, 0); return 1;
    case OP_COS: sin_cos_run(x, out, n, 1); return 1;
    case OP_ABS: UNARY_LOOP(fabsf(v))
    case OP_SQUARE: UNARY_LOOP(v * v)
    case OP_SCALE: UNARY_LOOP(v * alpha)
    case OP_ADD_SCALAR: UNARY_LOOP(v + alpha)
    default: return 0;
  }
}

#define GRAD_LOOP(EXPR)                           \
  for (int i = 0; i < n; i++) {                   \
    float v = x[i], yv = y[i], gv = g[i];         \
    (void)v; (void)yv;                            \
    out[i] = (EXPR);                              \
  }                                               \
  return 1;

static inline float gelu_grad(float v, float yv, float gv) {
  /* Phi(x) = y / x from the forward's y = x Phi(x); Phi(0) = 1/2. */
  float phi = v == 0.0f ? 0.5f : yv / v;
  return gv * (phi + v * normal_pdf(v));
}

static inline float abs_grad(float v, float gv) {
  float pos = v > 0.0f ? gv : 0.0f;
  float neg = v < 0.0f ? -gv : 0.0f;
  return as_float(as_bits(pos) | as_bits(neg));
}

/* unary.ts `unaryGrad`: out = g * f'(x), with y = f(x) where that is cheaper. */
int duaf_unary_grad(
    uint8_t* base, int op, uint32_t xo, uint32_t yo, uint32_t go, uint32_t outo, int n,
    float alpha) {
  const float* restrict x = (const float*)(base + xo);
  const float* restrict y = (const float*)(base + yo);
  const float* restrict g = (const float*)(base + go);
  float* restrict out = (float*)(base + outo);
  switch (op) {
    case OP_NEG: GRAD_LOOP(-gv)
    case OP_EXP: GRAD_LOOP(gv * yv)
    case OP_LOG: GRAD_LOOP(gv / v)
    case OP_SQRT: GRAD_LOOP(gv / (yv + yv))
    case OP_TANH: GRAD_LOOP(gv * ((1.0f - yv) * (1.0f + yv)))
    case OP_SIGMOID: GRAD_LOOP(gv * (yv * (1.0f - yv)))
    case OP_GELU: GRAD_LOOP(gelu_grad(v, yv, gv))
    case OP_RELU: GRAD_LOOP(v > 0.0f ? gv : 0.0f)
    case OP_LEAKY_RELU: GRAD_LOOP(v > 0.0f ? gv : gv * alpha)
    case OP_SOFTPLUS: GRAD_LOOP(v > 20.0f ? gv : gv * sigmoid_(v))
    case OP_SIN:
    case OP_COS:
      /* gv * cos_(v) and -(gv * sin_(v)), the sine or cosine a chunk at a time first. */
      for (int i0 = 0; i0 < n; i0 += SIN_COS_CHUNK) {
        float t[SIN_COS_CHUNK];
        const int len = n - i0 < SIN_COS_CHUNK ? n - i0 : SIN_COS_CHUNK;
        sin_cos_run(x + i0, t, len, op == OP_SIN);
        for (int i = 0; i < len; i++)
          out[i0 + i] = op == OP_SIN ? g[i0 + i] * t[i] : -(g[i0 + i] * t[i]);
      }
      return 1;
    case OP_ABS: GRAD_LOOP(abs_grad(v, gv))
    case OP_SQUARE: GRAD_LOOP(gv * (v + v))
    case OP_SCALE: GRAD_LOOP(gv * alpha)
    case OP_ADD_SCALAR: GRAD_LOOP(gv)
    default: return 0;
  }
}

/* Floats a row is cut into for the exponentials (vectorized), then summed in wasm's order. */
#define CHUNK 512

/* Sums e[0..n) (n a multiple of 4) into four lanes, lane j taking e[j], e[j + 4], ... in order. */
static inline void lane_sums(const float* e, int n, float* s) {
#if defined(__SSE2__)
  /* The four lanes as one f32x4, as the wasm kernel keeps them: each lane's adds unchanged. */
  __m128 acc = _mm_loadu_ps(s);
  for (int i = 0; i < n; i += 4) acc = _mm_add_ps(acc, _mm_loadu_ps(e + i));
  _mm_storeu_ps(s, acc);
#else
  float s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3];
  for (int i = 0; i < n; i += 4) {
    s0 += e[i];
    s1 += e[i + 1];
    s2 += e[i + 2];
    s3 += e[i + 3];
  }
  s[0] = s0, s[1] = s1, s[2] = s2, s[3] = s3;
#endif
}

static void shifted_exp(const float* restrict x, float* restrict e, int n, float m) {
  for (int i = 0; i < n; i++) e[i] = exp_bounded(x[i] - m);
}

static void shifted_exp_in_place(float* x, int n, float m) {
  for (int i = 0; i < n; i++) x[i] = exp_bounded(x[i] - m);
}

/* Rows summed side by side: one row's four lane sums are four chains of dependent adds, so the
   adds of several rows interleave to keep the adder busy (each row's sums are unchanged). */
#define CE_GROUP 4

/* lane_sums for CE_GROUP rows at once. */
static inline void lane_sums_group(const float* const* e, int n, float s[CE_GROUP][4]) {
#if defined(__SSE2__)
  __m128 v[CE_GROUP];
  for (int q = 0; q < CE_GROUP; q++) v[q] = _mm_loadu_ps(s[q]);
  for (int i = 0; i < n; i += 4)
    for (int q = 0; q < CE_GROUP; q++) v[q] = _mm_add_ps(v[q], _mm_loadu_ps(e[q] + i));
  for (int q = 0; q < CE_GROUP; q++) _mm_storeu_ps(s[q], v[q]);
#else
  float a[CE_GROUP][4];
  for (int q = 0; q < CE_GROUP; q++)
    for (int j = 0; j < 4; j++) a[q][j] = s[q][j];
  for (int i = 0; i < n; i += 4)
    for (int q = 0; q < CE_GROUP; q++)
      for (int j = 0; j < 4; j++) a[q][j] += e[q][i + j];
  for (int q = 0; q < CE_GROUP; q++)
    for (int j = 0; j < 4; j++) s[q][j] = a[q][j];
#endif
}

/* The wasm kernels' row maximum from four lane maxima vm (lane j: columns j, j + 4, ... before
   i): the lanes carried on with pmax to nv = cols & ~3, then f32x4.max of their halves and
   f32.max of the two left, then f32.max with each column past nv. */
static float max_from_lanes(float vm[4], const float* x, int i, int cols) {
  const int nv = cols & ~3;
  for (; i < nv; i += 4)
    for (int j = 0; j < 4; j++) vm[j] = pmax(vm[j], x[i + j]);
  float m = wmax(wmax(vm[0], vm[2]), wmax(vm[1], vm[3]));
  for (i = nv; i < cols; i++) m = wmax(m, x[i]);
  return m;
}

/* pmax over four lanes, then f32x4.max of the halves and f32.max of the two left. Sixteen
   accumulators folded in lane order give the same maximum (pmax skips NaN either way). */
static float row_max(const float* xr, int cols) {
  const int nv = cols & ~3;
  float v16[16];
  for (int j = 0; j < 16; j++) v16[j] = -INFINITY;
  int i = 0;
#ifdef __AVX512F__
  /* The sixteen accumulators as one vector: max_ps(x, v) is pmax(v, x), NaN and zeros alike. */
  __m512 acc = _mm512_loadu_ps(v16);
  for (; i + 16 <= nv; i += 16) acc = _mm512_max_ps(_mm512_loadu_ps(xr + i), acc);
  _mm512_storeu_ps(v16, acc);
#endif
  for (; i + 16 <= nv; i += 16)
    for (int j = 0; j < 16; j++) v16[j] = pmax(v16[j], xr[i + j]);
  float vm[4];
  for (int j = 0; j < 4; j++)
    vm[j] = pmax(pmax(pmax(v16[j], v16[j + 4]), v16[j + 8]), v16[j + 12]);
  return max_from_lanes(vm, xr, i, cols);
}

/*
 * rows.ts crossEntropyBlock: per row, the target's logit, the block's log-sum-exp merged into
 * lse, and with shift != 0 the exponentials e^(x - max) kept in x and the max in shift. Rows go
 * CE_GROUP at a time through each chunk of columns (lane_sums_group).
 */
static void ce_rows(
    float* x, const int32_t* targets, float* lse, float* picked, int rows, int cols, int col_offset,
    int first, float* shift) {
  const int nv = cols & ~3;
  float buf[CE_GROUP][CHUNK];
  for (int r0 = 0; r0 < rows; r0 += CE_GROUP) {
    const int g = rows - r0 < CE_GROUP ? rows - r0 : CE_GROUP;
    float* xr[CE_GROUP];
    float m[CE_GROUP];
    float s4[CE_GROUP][4] = {{0.0f}};
    for (int q = 0; q < g; q++) {
      const int r = r0 + q;
      xr[q] = x + (size_t)r * cols;
      const int32_t t = targets[r] - col_offset;
      if ((uint32_t)t < (uint32_t)cols) picked[r] = xr[q][t];
      else if (first) picked[r] = 0.0f;
      m[q] = row_max(xr[q], cols);
    }
    for (int i = 0; i < nv; i += CHUNK) {
      const int len = nv - i < CHUNK ? nv - i : CHUNK;
      const float* e[CE_GROUP];
      for (int q = 0; q < g; q++) {
        if (shift) shifted_exp_in_place(xr[q] + i, len, m[q]);
        else shifted_exp(xr[q] + i, buf[q], len, m[q]);
        e[q] = shift ? xr[q] + i : buf[q];
      }
      if (g == CE_GROUP) lane_sums_group(e, len, s4);
      else
        for (int q = 0; q < g; q++) lane_sums(e[q], len, s4[q]);
    }
    for (int q = 0; q < g; q++) {
      const int r = r0 + q;
      if (shift) shift[r] = m[q];
      float s = (s4[q][0] + s4[q][2]) + (s4[q][1] + s4[q][3]);
      for (int i = nv; i < cols; i++) {
        const float ev = exp_bounded(xr[q][i] - m[q]);
        if (shift) xr[q][i] = ev;
        s += ev;
      }
      const float block = m[q] + log_(s);
      if (first) {
        lse[r] = block;
      } else {
        const float prev = lse[r];
        const float hi = wmax(prev, block);
        const float lo_ = wmin(prev, block);
        lse[r] = hi + log1p_(exp_bounded(lo_ - hi));
      }
    }
  }
}

void duaf_ce_block(
    uint8_t* base, uint32_t xo, uint32_t to, uint32_t lo, uint32_t po, int rows, int cols,
    int col_offset, int first, uint32_t so) {
  ce_rows((float*)(base + xo), (const int32_t*)(base + to), (float*)(base + lo),
          (float*)(base + po), rows, cols, col_offset, first, so ? (float*)(base + so) : 0);
}

/*
 * rows.ts crossEntropyBlockGrad: the block's logits (or with shift != 0 their kept
 * exponentials) turned in place into w[r] * (softmax - onehot).
 */
/* One row of it from kept exponentials e (out may be e): vw e^(m - lse) e - vw onehot(t). */
static inline void ce_grad_kept_row(const float* e, float* out, int cols, int32_t t, float vw,
                                    float m, float lse) {
  const float c = vw * exp_bounded(m - lse);
  for (int i = 0; i < cols; i++) out[i] = c * e[i];
  if ((uint32_t)t < (uint32_t)cols) out[t] = out[t] - vw;
}

/* One row of it from the logits x (in place): vw e^(x - lse) - vw onehot(t). */
static inline void ce_grad_row(float* x, int cols, int32_t t, float vw, float lse) {
  for (int i = 0; i < cols; i++) x[i] = vw * exp_bounded(x[i] - lse);
  if ((uint32_t)t < (uint32_t)cols) x[t] = x[t] - vw;
}

void duaf_ce_block_grad(
    uint8_t* base, uint32_t xo, uint32_t to, uint32_t lo, uint32_t wo, int rows, int cols,
    int col_offset, uint32_t so) {
  const int32_t* targets = (const int32_t*)(base + to);
  const float* lse = (const float*)(base + lo);
  const float* w = (const float*)(base + wo);
  const float* shift = so ? (const float*)(base + so) : 0;
  for (int r = 0; r < rows; r++) {
    float* xr = (float*)(base + xo) + (size_t)r * cols;
    const float vl = lse[r], vw = w[r];
    const int32_t t = targets[r] - col_offset;
    if (shift) ce_grad_kept_row(xr, xr, cols, t, vw, shift[r], vl);
    else ce_grad_row(xr, cols, t, vw, vl);
  }
}

/* ---- axpy and the broadcasting binary ops ----------------------------------------------------- */

/* memory_ops.ts axpy: out = out + alpha x, the multiply and the add rounded apart. */
void duaf_axpy(uint8_t* base, uint32_t xo, uint32_t oo, int n, float alpha) {
  const float* x = (const float*)(base + xo);
  float* out = (float*)(base + oo);
  for (int i = 0; i < n; i++) out[i] = out[i] + alpha * x[i];
}

enum { BIN_ADD = 0, BIN_SUB = 1, BIN_MUL = 2, BIN_DIV = 3 };

/* One output row of n elements; sa, sb are element strides (0 = broadcast). */
#define BINARY_ROW(EXPR)                                                  \
  if (sa == 1 && sb == 1) {                                               \
    for (int i = 0; i < n; i++) {                                         \
      const float x = a[i], y = b[i];                                     \
      out[i] = (EXPR);                                                    \
    }                                                                     \
  } else if (sa == 1 && sb == 0) {                                        \
    const float y = b[0];                                                 \
    for (int i = 0; i < n; i++) {                                         \
      const float x = a[i];                                               \
      out[i] = (EXPR);                                                    \
    }                                                                     \
  } else if (sa == 0 && sb == 1) {                                        \
    const float x = a[0];                                                 \
    for (int i = 0; i < n; i++) {                                         \
      const float y = b[i];                                               \
      out[i] = (EXPR);                                                    \
    }                                                                     \
  } else {                                                                \
    for (int i = 0; i < n; i++) {                                         \
      const float x = a[(size_t)i * sa], y = b[(size_t)i * sb];           \
      out[i] = (EXPR);                                                    \
    }                                                                     \
  }

static void binary_row(int op, const float* a, int sa, const float* b, int sb, float* out, int n) {
  switch (op) {
    case BIN_ADD: BINARY_ROW(x + y) break;
    case BIN_SUB: BINARY_ROW(x - y) break;
    case BIN_MUL: BINARY_ROW(x * y) break;
    default: BINARY_ROW(x / y) break;
  }
}

/*
 * binary.ts `binary`: out = a (op) b over `shape`, out contiguous; params holds the shape, a's
 * strides and b's strides (rank words each) and rank words of scratch for the odometer over the
 * outer dims. Each element is the one IEEE operation, so any vector width gives the same bits.
 */
void duaf_binary(uint8_t* base, int op, uint32_t ao, uint32_t bo, uint32_t oo, int rank,
                 uint32_t params) {
  const int32_t* shape = (const int32_t*)(base + params);
  const int32_t* st_a = shape + rank;
  const int32_t* st_b = shape + 2 * rank;
  int32_t* idx = (int32_t*)(base + params) + 3 * rank;
  const float* a = (const float*)(base + ao);
  const float* b = (const float*)(base + bo);
  float* out = (float*)(base + oo);
  const int last = rank - 1;
  const int n = shape[last], ia = st_a[last], ib = st_b[last];
  size_t rows = 1;
  for (int d = 0; d < last; d++) rows *= (size_t)shape[d];
  for (int d = 0; d < last; d++) idx[d] = 0;
  ptrdiff_t off_a = 0, off_b = 0;
  for (size_t r = 0; r < rows; r++) {
    binary_row(op, a + off_a, ia, b + off_b, ib, out + r * (size_t)n, n);
    for (int d = last - 1; d >= 0; d--) {
      const int v = idx[d] + 1;
      if (v < shape[d]) {
        idx[d] = v;
        off_a += st_a[d];
        off_b += st_b[d];
        break;
      }
      idx[d] = 0;
      off_a -= (ptrdiff_t)st_a[d] * (v - 1);
      off_b -= (ptrdiff_t)st_b[d] * (v - 1);
    }
  }
}

/* ---- column sums ---------------------------------------------------------------------------- */

/*
 * binary.ts reduceSum over the rows of [rows x cols] (a bias's gradient): out[j] = out[j] + x[r][j]
 * for r in order, out zeroed first unless accumulating, for columns [c0, c1) (one thread's share).
 */
void duaf_col_sums(uint8_t* base, uint32_t xo, uint32_t oo, int rows, int cols, int c0, int c1,
                   int accumulate) {
  const float* x = (const float*)(base + xo);
  float* restrict out = (float*)(base + oo);
  if (!accumulate)
    for (int j = c0; j < c1; j++) out[j] = 0.0f;
  for (int r = 0; r < rows; r++) {
    const float* restrict xr = x + (size_t)r * cols;
    for (int j = c0; j < c1; j++) out[j] = out[j] + xr[j];
  }
}

/* ---- layer norm ---------------------------------------------------------------------------- */

/* simd.ts hsum: the four lanes summed as (l0 + l2) + (l1 + l3). */
static inline float hsum4(const float v[4]) { return (v[0] + v[2]) + (v[1] + v[3]); }

/* Rows of a layer norm taken together: a row of 64 is a chain of 16 dependent four-lane adds per
   sum, so G rows side by side give the adder G chains (each row's sums are unchanged). */
#define LN_GROUP 4

#if defined(__SSE2__)
/* wasm's f32x4 as SSE: the same lane-wise IEEE adds, multiplies and subtracts. */
typedef __m128 v4;
#define V4_LOAD _mm_loadu_ps
#define V4_STORE _mm_storeu_ps
#define V4_ADD _mm_add_ps
#define V4_SUB _mm_sub_ps
#define V4_MUL _mm_mul_ps
#define V4_SET1 _mm_set1_ps
static inline float v4_hsum(v4 v) {
  float l[4];
  _mm_storeu_ps(l, v);
  return hsum4(l);
}
#endif

/* rows.ts layerNorm for G rows (a constant after inlining) starting at row r. */
static inline __attribute__((always_inline)) void layer_norm_rows(
    int G, const float* x, const float* gamma, const float* beta, float* out, float* mean,
    float* rstd, int r, int cols, float eps) {
  const int nv = cols & ~3;
  const float inv_n = 1.0f / (float)cols;
  const float* xr[LN_GROUP];
  float mu[LN_GROUP], rs[LN_GROUP], sum[LN_GROUP], sq[LN_GROUP];
  for (int q = 0; q < G; q++) xr[q] = x + (size_t)(r + q) * cols;
#if defined(__SSE2__)
  v4 vs[LN_GROUP], vq[LN_GROUP];
  for (int q = 0; q < G; q++) vs[q] = vq[q] = V4_SET1(0.0f);
  for (int i = 0; i < nv; i += 4)
    for (int q = 0; q < G; q++) vs[q] = V4_ADD(vs[q], V4_LOAD(xr[q] + i));
  for (int q = 0; q < G; q++) sum[q] = v4_hsum(vs[q]);
#else
  for (int q = 0; q < G; q++) {
    float l[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int i = 0; i < nv; i += 4)
      for (int j = 0; j < 4; j++) l[j] += xr[q][i + j];
    sum[q] = hsum4(l);
  }
#endif
  for (int q = 0; q < G; q++) {
    for (int i = nv; i < cols; i++) sum[q] += xr[q][i];
    mu[q] = sum[q] * inv_n;
  }
#if defined(__SSE2__)
  for (int i = 0; i < nv; i += 4)
    for (int q = 0; q < G; q++) {
      const v4 dv = V4_SUB(V4_LOAD(xr[q] + i), V4_SET1(mu[q]));
      vq[q] = V4_ADD(vq[q], V4_MUL(dv, dv));
    }
  for (int q = 0; q < G; q++) sq[q] = v4_hsum(vq[q]);
#else
  for (int q = 0; q < G; q++) {
    float l[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int i = 0; i < nv; i += 4)
      for (int j = 0; j < 4; j++) {
        const float dv = xr[q][i + j] - mu[q];
        l[j] += dv * dv;
      }
    sq[q] = hsum4(l);
  }
#endif
  for (int q = 0; q < G; q++) {
    for (int i = nv; i < cols; i++) {
      const float dv = xr[q][i] - mu[q];
      sq[q] += dv * dv;
    }
    rs[q] = 1.0f / sqrtf(sq[q] * inv_n + eps);
    mean[r + q] = mu[q];
    rstd[r + q] = rs[q];
    float* restrict o = out + (size_t)(r + q) * cols;
    for (int i = 0; i < cols; i++) o[i] = (xr[q][i] - mu[q]) * rs[q] * gamma[i] + beta[i];
  }
}

void duaf_layer_norm(
    uint8_t* base, uint32_t xo, uint32_t go, uint32_t bo, uint32_t oo, uint32_t mo, uint32_t ro,
    int rows, int cols, float eps) {
  const float* x = (const float*)(base + xo);
  const float* gamma = (const float*)(base + go);
  const float* beta = (const float*)(base + bo);
  float* out = (float*)(base + oo);
  float* mean = (float*)(base + mo);
  float* rstd = (float*)(base + ro);
  int r = 0;
  for (; r + LN_GROUP <= rows; r += LN_GROUP)
    layer_norm_rows(LN_GROUP, x, gamma, beta, out, mean, rstd, r, cols, eps);
  for (; r < rows; r++) layer_norm_rows(1, x, gamma, beta, out, mean, rstd, r, cols, eps);
}

/* indexing.ts firstBad: the position of the first of n indices outside [0, rows), or -1. */
static int first_bad_index(const int32_t* idx, size_t n, int rows) {
  for (size_t i = 0; i < n; i++)
    if (idx[i] < 0 || idx[i] >= rows) return (int)i;
  return -1;
}

/*
 * indexing.ts gather with a tensor added: out[i, :] = table[idx[i], :] + b[i, :] (the binary
 * add's bits), the row added while it is in cache instead of in a second pass. Returns the first
 * position whose index is outside the table, having written nothing, or -1.
 */
int duaf_gather_add(uint8_t* base, uint32_t to, int table_rows, uint32_t io, uint32_t bo,
                    uint32_t oo, int n, int dim) {
  const float* table = (const float*)(base + to);
  const int32_t* idx = (const int32_t*)(base + io);
  const float* b = (const float*)(base + bo);
  float* out = (float*)(base + oo);
  const int bad = first_bad_index(idx, (size_t)n, table_rows);
  if (bad >= 0) return bad;
  for (int i = 0; i < n; i++) {
    const float* restrict t = table + (size_t)idx[i] * dim;
    const float* restrict bi = b + (size_t)i * dim;
    float* restrict o = out + (size_t)i * dim;
    for (int j = 0; j < dim; j++) o[j] = t[j] + bi[j];
  }
  return -1;
}

/*
 * indexing.ts scatterAdd: out[idx[i], :] += g[i, :] for i in order (a row indexed twice takes
 * its additions in that order); the position of the first index outside out's rows, having
 * written nothing, or -1.
 */
int duaf_scatter_add(uint8_t* base, uint32_t go, uint32_t io, uint32_t oo, int out_rows, int n,
                     int dim) {
  const float* g = (const float*)(base + go);
  const int32_t* idx = (const int32_t*)(base + io);
  float* out = (float*)(base + oo);
  const int bad = first_bad_index(idx, (size_t)n, out_rows);
  if (bad >= 0) return bad;
  for (int i = 0; i < n; i++) {
    const float* restrict gi = g + (size_t)i * dim;
    float* restrict o = out + (size_t)idx[i] * dim;
    for (int j = 0; j < dim; j++) o[j] = o[j] + gi[j];
  }
  return -1;
}

/* random.ts hash32 (lowbias32). */
static inline uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

/* random.ts `dropout` of elements [index0, index0 + n) of a call: the mask at each's index. */
static void dropout_run(const float* restrict x, float* restrict out, int n, int threshold,
                        float scale, uint32_t seed, uint32_t index0) {
  const uint32_t hs = hash32(seed);
  for (int i = 0; i < n; i++) {
    const int32_t u = (int32_t)(hash32((index0 + (uint32_t)i) ^ hs) >> 8);
    out[i] = x[i] * (u >= threshold ? scale : 0.0f);
  }
}

/* Rows of LN_GROUP of a + b formed on the stack when the sum is not kept (up to this width). */
#define ADD_LN_MAX_COLS 1024

/*
 * duaf_layer_norm of s = dropout(a) + b (a residual stream and its branch), each row's sum formed
 * just before it is normalized instead of in passes of their own: duaf_dropout's bits (its mask
 * at a's element index0 + i; threshold 0: no dropout), the binary add's, then the layer norm's.
 * The sum goes to so when it is kept for the backward (so != 0), else to a buffer on the stack.
 * Returns 0, having done nothing, for rows wider than that buffer without so.
 */
int duaf_add_layer_norm(
    uint8_t* base, uint32_t ao, uint32_t bo, uint32_t so, uint32_t go, uint32_t beo, uint32_t oo,
    uint32_t mo, uint32_t ro, int rows, int cols, float eps, int threshold, float scale,
    uint32_t seed, uint32_t index0) {
  if (!so && cols > ADD_LN_MAX_COLS) return 0;
  const float* a = (const float*)(base + ao);
  const float* b = (const float*)(base + bo);
  const float* gamma = (const float*)(base + go);
  const float* beta = (const float*)(base + beo);
  float* out = (float*)(base + oo);
  float* mean = (float*)(base + mo);
  float* rstd = (float*)(base + ro);
  float tmp[LN_GROUP * ADD_LN_MAX_COLS];
  for (int r = 0; r < rows; r += LN_GROUP) {
    const int g = rows - r < LN_GROUP ? rows - r : LN_GROUP;
    const size_t at = (size_t)r * cols;
    float* restrict sr = so ? (float*)(base + so) + at : tmp;
    const float* restrict ar = a + at;
    const float* restrict br = b + at;
    if (threshold > 0) {
      dropout_run(ar, sr, g * cols, threshold, scale, seed, index0 + (uint32_t)at);
      for (int i = 0; i < g * cols; i++) sr[i] = sr[i] + br[i];
    } else {
      for (int i = 0; i < g * cols; i++) sr[i] = ar[i] + br[i];
    }
    if (g == LN_GROUP)
      layer_norm_rows(LN_GROUP, sr, gamma, beta, out + at, mean + r, rstd + r, 0, cols, eps);
    else
      for (int q = 0; q < g; q++)
        layer_norm_rows(1, sr + (size_t)q * cols, gamma, beta, out + at + (size_t)q * cols,
                        mean + r + q, rstd + r + q, 0, cols, eps);
  }
  return 1;
}

/*
 * rows.ts layerNormGrad for G rows starting at row r; dgamma and dbeta take the rows in order.
 * DX and DGB (constants after inlining) choose the parts: dx of these rows, and their terms of
 * dgamma and dbeta. Each part's arithmetic is the same whichever others are done with it.
 */
static inline __attribute__((always_inline)) void layer_norm_grad_rows(
    int G, const float* x, const float* gamma, const float* mean, const float* rstd,
    const float* g, float* dx, float* dgamma, float* dbeta, int r, int cols, int DX, int DGB) {
  const int nv = cols & ~3;
  const float inv_n = 1.0f / (float)cols;
  const float *xr[LN_GROUP], *gr[LN_GROUP];
  float mu[LN_GROUP], rs[LN_GROUP], s1[LN_GROUP], s2[LN_GROUP];
  for (int q = 0; q < G; q++) {
    xr[q] = x + (size_t)(r + q) * cols;
    gr[q] = g + (size_t)(r + q) * cols;
    mu[q] = mean[r + q];
    rs[q] = rstd[r + q];
  }
#if defined(__SSE2__)
  v4 v1[LN_GROUP], v2[LN_GROUP];
  for (int q = 0; q < G; q++) v1[q] = v2[q] = V4_SET1(0.0f);
  for (int i = 0; i < nv; i += 4) {
    const v4 gm = V4_LOAD(gamma + i);
    v4 dg = V4_SET1(0.0f), db = V4_SET1(0.0f);
    if (DGB) dg = V4_LOAD(dgamma + i), db = V4_LOAD(dbeta + i);
    for (int q = 0; q < G; q++) {
      const v4 xh = V4_MUL(V4_SUB(V4_LOAD(xr[q] + i), V4_SET1(mu[q])), V4_SET1(rs[q]));
      const v4 gv = V4_LOAD(gr[q] + i);
      if (DX) {
        const v4 dxh = V4_MUL(gv, gm);
        v1[q] = V4_ADD(v1[q], dxh);
        v2[q] = V4_ADD(v2[q], V4_MUL(dxh, xh));
      }
      if (DGB) {
        dg = V4_ADD(dg, V4_MUL(gv, xh));
        db = V4_ADD(db, gv);
      }
    }
    if (DGB) {
      V4_STORE(dgamma + i, dg);
      V4_STORE(dbeta + i, db);
    }
  }
  for (int q = 0; q < G; q++) s1[q] = v4_hsum(v1[q]), s2[q] = v4_hsum(v2[q]);
#else
  for (int q = 0; q < G; q++) {
    float l1[4] = {0.0f, 0.0f, 0.0f, 0.0f}, l2[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int c = 0; c < nv; c++) {
      const float xh = (xr[q][c] - mu[q]) * rs[q];
      const float gv = gr[q][c];
      const float dxh = gv * gamma[c];
      l1[c & 3] += dxh;
      l2[c & 3] += dxh * xh;
      if (DGB) {
        dgamma[c] = dgamma[c] + gv * xh;
        dbeta[c] = dbeta[c] + gv;
      }
    }
    s1[q] = hsum4(l1), s2[q] = hsum4(l2);
  }
#endif
  for (int q = 0; q < G; q++) {
    for (int c = nv; c < cols; c++) {
      const float xh = (xr[q][c] - mu[q]) * rs[q];
      const float gv = gr[q][c];
      const float dxh = gv * gamma[c];
      s1[q] += dxh;
      s2[q] += dxh * xh;
      if (DGB) {
        dgamma[c] = dgamma[c] + gv * xh;
        dbeta[c] = dbeta[c] + gv;
      }
    }
    if (!DX) continue;
    const float m1 = s1[q] * inv_n, m2 = s2[q] * inv_n;
    float* restrict d = dx + (size_t)(r + q) * cols;
    for (int c = 0; c < cols; c++) {
      const float xh = (xr[q][c] - mu[q]) * rs[q];
      const float dxh = gr[q][c] * gamma[c];
      d[c] = rs[q] * ((dxh - m1) - xh * m2);
    }
  }
}

/* layer_norm_grad_rows over rows [r0, r1), LN_GROUP at a time, with the parts DX and DGB. */
#define LN_GRAD_RANGE(r0, r1, DX, DGB)                                                         \
  do {                                                                                          \
    int r_ = (r0);                                                                              \
    for (; r_ + LN_GROUP <= (r1); r_ += LN_GROUP)                                               \
      layer_norm_grad_rows(LN_GROUP, x, gamma, mean, rstd, g, dx, dgamma, dbeta, r_, cols, DX,  \
                           DGB);                                                                \
    for (; r_ < (r1); r_++)                                                                     \
      layer_norm_grad_rows(1, x, gamma, mean, rstd, g, dx, dgamma, dbeta, r_, cols, DX, DGB);  \
  } while (0)

/*
 * duaf_layer_norm_grad shared by two kernel threads: dx of rows [dx0, dx1), and with dgb the
 * terms of every row in dgamma and dbeta (a sum over the rows in order, so one thread takes it
 * all and the other only dx).
 */
void duaf_layer_norm_grad_part(
    uint8_t* base, uint32_t xo, uint32_t go, uint32_t mo, uint32_t ro, uint32_t gro, uint32_t dxo,
    uint32_t dgo, uint32_t dbo, int rows, int cols, int dx0, int dx1, int dgb) {
  const float* x = (const float*)(base + xo);
  const float* gamma = (const float*)(base + go);
  const float* mean = (const float*)(base + mo);
  const float* rstd = (const float*)(base + ro);
  const float* g = (const float*)(base + gro);
  float* dx = (float*)(base + dxo);
  float* dgamma = (float*)(base + dgo);
  float* dbeta = (float*)(base + dbo);
  if (!dgb) {
    LN_GRAD_RANGE(dx0, dx1, 1, 0);
    return;
  }
  LN_GRAD_RANGE(0, dx0, 0, 1);
  LN_GRAD_RANGE(dx0, dx1, 1, 1);
  LN_GRAD_RANGE(dx1, rows, 0, 1);
}

void duaf_layer_norm_grad(
    uint8_t* base, uint32_t xo, uint32_t go, uint32_t mo, uint32_t ro, uint32_t gro, uint32_t dxo,
    uint32_t dgo, uint32_t dbo, int rows, int cols) {
  duaf_layer_norm_grad_part(base, xo, go, mo, ro, gro, dxo, dgo, dbo, rows, cols, 0, rows, 1);
}

/* ---- attention softmax ---------------------------------------------------------------------- */

/* One row's logits f32(f32(x * scale) + mask), as rows.ts logitsV rounds them. */
static void masked_logits(const float* x, const float* mrow, float* z, int n, float scale) {
  if (mrow)
    for (int i = 0; i < n; i++) z[i] = x[i] * scale + mrow[i];
  else
    for (int i = 0; i < n; i++) z[i] = x[i] * scale;
}

/*
 * One row of rows.ts `maskedSoftmax`: softmax(x * scale + mask) with the maximum and the sum of
 * exponentials in the wasm kernel's four lanes and order, the exponentials at full width. x and
 * out may be the same row (each element is read once, before it is written).
 */
static void masked_softmax_row(const float* xr, const float* mr, float* orow, int cols,
                               float scale) {
  const int nv = cols & ~3;
  float zbuf[CHUNK];
  float vm[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
  for (int c0 = 0; c0 < cols; c0 += CHUNK) {
    const int len = cols - c0 < CHUNK ? cols - c0 : CHUNK;
    masked_logits(xr + c0, mr ? mr + c0 : 0, zbuf, len, scale);
    memcpy(orow + c0, zbuf, sizeof(float) * len);
  }
  const float m = max_from_lanes(vm, orow, 0, cols);
  float s4[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int c0 = 0; c0 < nv; c0 += CHUNK) {
    const int len = nv - c0 < CHUNK ? nv - c0 : CHUNK;
    shifted_exp_in_place(orow + c0, len, m);
    lane_sums(orow + c0, len, s4);
  }
  float s = (s4[0] + s4[2]) + (s4[1] + s4[3]);
  for (int c = nv; c < cols; c++) {
    orow[c] = exp_bounded(orow[c] - m);
    s += orow[c];
  }
  const float inv = 1.0f / s;
  for (int c = 0; c < cols; c++) orow[c] = orow[c] * inv;
}

/*
 * rows.ts `maskedSoftmax`: masked_softmax_row per row, row r of rowBegin + rows counted as
 * [a, heads, q] with its mask row at (i * sb + j * sh + k * sq) rows into mask.
 */
void duaf_masked_softmax(
    uint8_t* base, uint32_t xo, uint32_t mo, uint32_t oo, int rows, int cols, float scale,
    int has_mask, int heads, int q, int sb, int sh, int sq, int row_begin) {
  for (int r = 0; r < rows; r++) {
    const int ra = row_begin + r;
    const int k = ra % q, j = (ra / q) % heads, i = ra / (q * heads);
    const float* mr =
        has_mask ? (const float*)(base + mo) + (size_t)(i * sb + j * sh + k * sq) * cols : 0;
    masked_softmax_row((const float*)(base + xo) + (size_t)r * cols, mr,
                       (float*)(base + oo) + (size_t)r * cols, cols, scale);
  }
}

/* ---- ranking -------------------------------------------------------------------------------- */

/*
 * indexing.ts `rankRows`: per row, how many columns score at least the target's, the target and
 * its excluded columns other than itself not counted. Counts are exact in any order. Returns the
 * first out-of-range target (or rows + the first out-of-range excluded column), else -1.
 */
int duaf_rank_rows(
    uint8_t* base, uint32_t xo, uint32_t to, uint32_t eo, uint32_t co, uint32_t oo, int rows,
    int cols) {
  const int32_t* targets = (const int32_t*)(base + to);
  const int32_t* ex_off = (const int32_t*)(base + eo);
  const int32_t* ex_cols = (const int32_t*)(base + co);
  int32_t* out = (int32_t*)(base + oo);
  for (int r = 0; r < rows; r++)
    if ((uint32_t)targets[r] >= (uint32_t)cols) return r;
  for (int e = 0; e < ex_off[rows]; e++)
    if ((uint32_t)ex_cols[e] >= (uint32_t)cols) return rows + e;
  for (int r = 0; r < rows; r++) {
    const float* row = (const float*)(base + xo) + (size_t)r * cols;
    const int32_t t = targets[r];
    const float sv = row[t];
    int32_t n = 0;
    for (int c = 0; c < cols; c++) n += row[c] >= sv;
    n--;
    for (int e = ex_off[r]; e < ex_off[r + 1]; e++) {
      const int32_t c = ex_cols[e];
      if (c != t && row[c] >= sv) n--;
    }
    out[r] = n;
  }
  return -1;
}

/* ---- DuAF's modality fusion (paper Eq. 7-8) ------------------------------------------------ */

static void tanh_sum(const float* restrict e, const float* restrict t, float* restrict k, int n) {
  for (int i = 0; i < n; i++) k[i] = tanh_(e[i] + t[i]);
}

/*
 * fusion.ts `modalityFusion`, rows [row_begin, row_end): keys = tanh(e_j + t), omega =
 * softmax_j(scale <key_j, q>), h = sum_j omega_j e_j. The tanh is computed at full width; the
 * scores then sum key * q in fusion.ts's four lanes (the tail lanes' zeros included) and order.
 */
void duaf_modality_fusion(
    uint8_t* base, uint32_t ptrs, int m, uint32_t to, uint32_t qo, uint32_t ho, uint32_t wo,
    uint32_t ko, int row_begin, int row_end, int dim, float scale) {
  const uint32_t* eo = (const uint32_t*)(base + ptrs);
  const int end = (dim + 3) & ~3;
  for (int r = row_begin; r < row_end; r++) {
    const size_t off = (size_t)r * dim;
    const float* tr = (const float*)(base + to) + off;
    const float* qr = (const float*)(base + qo) + off;
    float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    float mx = -INFINITY;
    for (int j = 0; j < m; j++) {
      const float* ej = (const float*)(base + eo[j]) + off;
      float* kj = (float*)(base + ko) + (size_t)(r * m + j) * dim;
      tanh_sum(ej, tr, kj, dim);
      const float k0 = tanh_(0.0f); /* a tail lane: tanh(0 + 0) times q's 0 */
      float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      for (int c = 0; c < end; c += 4)
        for (int l = 0; l < 4; l++) {
          const int i = c + l;
          acc[l] = i < dim ? MADD(kj[i], qr[i], acc[l]) : MADD(k0, 0.0f, acc[l]);
        }
      const float sj = ((acc[0] + acc[2]) + (acc[1] + acc[3])) * scale;
      s[j] = sj;
      mx = wmax(mx, sj);
    }
    float ex[4], sum = 0.0f;
    for (int j = 0; j < 4; j++) ex[j] = exp_bounded(s[j] - mx);
    for (int j = 0; j < m; j++) sum += ex[j];
    const float inv = 1.0f / sum;
    float* wr = (float*)(base + wo) + (size_t)r * m;
    for (int j = 0; j < m; j++) wr[j] = ex[j] * inv;
    float* hr = (float*)(base + ho) + off;
    for (int c = 0; c < dim; c++) hr[c] = 0.0f;
    for (int j = 0; j < m; j++) {
      const float* ej = (const float*)(base + eo[j]) + off;
      const float w = wr[j];
      for (int c = 0; c < dim; c++) hr[c] = MADD(w, ej[c], hr[c]);
    }
  }
}

/* One modality's share of a row's gradient, element by element (fusion.ts's lanes, at full
   width): u = gs (1 - k^2) q, ge = w g + u, gt += u, gq += gs k. */
static void fusion_grad_elements(const float* restrict k, const float* restrict g,
                                 const float* restrict q, float* restrict ge, float* restrict gt,
                                 float* restrict gq, float gs, float w, int n) {
  for (int i = 0; i < n; i++) {
    /* 1 - k^2 as (1 - k)(1 + k), as fusion.ts: no cancellation near |k| = 1 */
    const float u = (gs * ((1.0f - k[i]) * (1.0f + k[i]))) * q[i];
    ge[i] = MADD(w, g[i], u);
    gt[i] = gt[i] + u;
    gq[i] = MADD(gs, k[i], gq[i]);
  }
}

/*
 * fusion.ts `modalityFusionGrad`, rows [row_begin, row_end): with gw_j = <gh, e_j> (+ gomega_j)
 * and gs_j = scale w_j (gw_j - sum_i w_i gw_i), u_j = gs_j (1 - k_j^2) q: ge_j = w_j gh + u_j,
 * gt = sum_j u_j, gq = sum_j gs_j k_j. `ptrs` holds the m e offsets, then (4 words on) the m ge
 * offsets. The dot products run in fusion.ts's four lanes (the tail lanes' zeros included) and
 * order; the rest is per element, at full width.
 */
void duaf_modality_fusion_grad(
    uint8_t* base, uint32_t ptrs, int m, uint32_t qo, uint32_t wo, uint32_t ko, uint32_t gho,
    uint32_t gwo, uint32_t gto, uint32_t gqo, int row_begin, int row_end, int dim, float scale) {
  const uint32_t* eo = (const uint32_t*)(base + ptrs);
  const uint32_t* geo = eo + 4;
  const int end = (dim + 3) & ~3;
  for (int r = row_begin; r < row_end; r++) {
    const size_t off = (size_t)r * dim;
    const float* g = (const float*)(base + gho) + off;
    const float* q = (const float*)(base + qo) + off;
    const float* wr = (const float*)(base + wo) + (size_t)r * m;
    float gw[4] = {0.0f, 0.0f, 0.0f, 0.0f}, w[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    float mean = 0.0f;
    for (int j = 0; j < m; j++) {
      const float* ej = (const float*)(base + eo[j]) + off;
      float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      for (int c = 0; c < end; c += 4)
        for (int l = 0; l < 4; l++) {
          const int i = c + l;
          acc[l] = i < dim ? MADD(g[i], ej[i], acc[l]) : MADD(0.0f, 0.0f, acc[l]);
        }
      float d = (acc[0] + acc[2]) + (acc[1] + acc[3]);
      if (gwo) d += ((const float*)(base + gwo))[(size_t)r * m + j];
      gw[j] = d;
      w[j] = wr[j];
      mean += w[j] * d;
    }
    float gs[4];
    for (int j = 0; j < 4; j++) gs[j] = scale * (w[j] * (gw[j] - mean));
    float* gt = (float*)(base + gto) + off;
    float* gq = (float*)(base + gqo) + off;
    for (int i = 0; i < dim; i++) {
      gt[i] = 0.0f;
      gq[i] = 0.0f;
    }
    for (int j = 0; j < m; j++) {
      const float* k = (const float*)(base + ko) + (size_t)(r * m + j) * dim;
      fusion_grad_elements(k, g, q, (float*)(base + geo[j]) + off, gt, gq, gs[j], w[j], dim);
    }
  }
}

/* ---- dropout --------------------------------------------------------------------------------- */

/*
 * random.ts `dropout`: out[i] = x[i] * (u(seed, i) * 2^24 >= threshold ? scale : 0), the mask
 * drawn from the counter-based hash in place (x and out may be the same buffer).
 */
void duaf_dropout(uint8_t* base, uint32_t xo, uint32_t outo, int n, int threshold, float scale,
                  uint32_t seed) {
  /* restrict: in place, each element is read before it is written and by nothing after. */
  dropout_run((const float*)(base + xo), (float*)(base + outo), n, threshold, scale, seed, 0);
}

/* Elements [index0, index0 + n) of a dropout call (xo and outo at element index0): its mask
   there, so the kernel threads can each take a share. */
void duaf_dropout_at(uint8_t* base, uint32_t xo, uint32_t outo, int n, int threshold, float scale,
                     uint32_t seed, uint32_t index0) {
  dropout_run((const float*)(base + xo), (float*)(base + outo), n, threshold, scale, seed, index0);
}

/* Rows of a dropout call over a larger [of x cols] tensor: row r takes that tensor's row rows[r]
   mask (the indices rows[r] * cols + c), so a pass over some rows keeps the full pass's mask. */
void duaf_dropout_rows(uint8_t* base, uint32_t xo, uint32_t outo, uint32_t ro, int n, int cols,
                       int threshold, float scale, uint32_t seed) {
  const int32_t* rows = (const int32_t*)(base + ro);
  const float* x = (const float*)(base + xo);
  float* out = (float*)(base + outo);
  for (int r = 0; r < n; r++)
    dropout_run(x + (size_t)r * cols, out + (size_t)r * cols, cols, threshold, scale, seed,
                (uint32_t)rows[r] * (uint32_t)cols);
}

/* ---- GEMM ---------------------------------------------------------------------------------- */

/* wasm/assembly/gemm.ts's K slice and its packed-B buffer (floats in one thread's scratch). */
#define KC 256
#define PACK_B_FLOATS 65536
#define MB 6 /* rows of a register tile, each sharing the tile's loaded B vector */

#if defined(__AVX512F__) && (defined(__FMA__) || !DUAF_FUSED_MADD)
#define VW 16
typedef __m512 vf;
typedef __mmask16 vmask;
static inline vmask vmask_first(int n) { return (vmask)((1u << n) - 1u); }
static inline vf vload(const float* p, vmask m) { return _mm512_maskz_loadu_ps(m, p); }
static inline void vstore(float* p, vf v, vmask m) { _mm512_mask_storeu_ps(p, m, v); }
static inline vf vset1(float x) { return _mm512_set1_ps(x); }
static inline vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
#define VFMA _mm512_fmadd_ps
#elif defined(__AVX2__) && (defined(__FMA__) || !DUAF_FUSED_MADD)
#define VW 8
typedef __m256 vf;
typedef __m256i vmask;
static inline vmask vmask_first(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline vf vload(const float* p, vmask m) { return _mm256_maskload_ps(p, m); }
static inline void vstore(float* p, vf v, vmask m) { _mm256_maskstore_ps(p, m, v); }
static inline vf vset1(float x) { return _mm256_set1_ps(x); }
static inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
#define VFMA _mm256_fmadd_ps
#else
/* No vector unit the compiler is told of: one lane, the same arithmetic. */
#define VW 1
typedef float vf;
typedef int vmask;
static inline vmask vmask_first(int n) { return n > 0; }
static inline vf vload(const float* p, vmask m) { return m ? *p : 0.0f; }
static inline void vstore(float* p, vf v, vmask m) {
  if (m) *p = v;
}
static inline vf vset1(float x) { return x; }
static inline vf vmul(vf a, vf b) { return a * b; }
static inline vf vadd(vf a, vf b) { return a + b; }
#define VFMA fmaf
#endif

/* MADD at the vector width: fused, or a rounded multiply then an add. */
static inline vf vmadd(vf a, vf b, vf c) {
#if DUAF_FUSED_MADD
  return VFMA(a, b, c);
#else
  return vadd(vmul(a, b), c);
#endif
}

/*
 * A rows x (up to VW) tile of C: per element an accumulator from 0 taking A(i, k) * B(k, j) with
 * MADD in increasing k, then gemm.ts's store. `rows` is a constant after inlining, so the
 * accumulators live in registers; `m` masks the columns past the edge.
 */
static inline __attribute__((always_inline)) void gemm_tile(
    int rows, const float* ap, size_t rs, size_t ks, const float* bk, size_t bstride, int kc,
    float* c, size_t ldc, vmask m, int scaled, float alpha, int add, const float* bias) {
  vf acc[MB];
  for (int r = 0; r < rows; r++) acc[r] = vset1(0.0f);
  for (int kk = 0; kk < kc; kk++) {
    const vf bv = vload(bk + (size_t)kk * bstride, m);
    const float* ak = ap + (size_t)kk * ks;
    for (int r = 0; r < rows; r++) acc[r] = vmadd(vset1(ak[(size_t)r * rs]), bv, acc[r]);
  }
  const vf va = vset1(alpha);
  /* The row C starts from: its own (add), or the bias's columns (what a copy would have put). */
  const vf vb = bias && !add ? vload(bias, m) : vset1(0.0f);
  for (int r = 0; r < rows; r++) {
    float* cr = c + (size_t)r * ldc;
    vf v = scaled ? vmul(acc[r], va) : acc[r];
    if (add) v = vadd(vload(cr, m), v);
    else if (bias) v = vadd(vb, v);
    vstore(cr, v, m);
  }
}

/*
 * gemm_tile over two vectors of columns side by side (b0's, then b1's masked by m1): each row's
 * A value loaded once for both, so a k step issues one load per two multiply-adds instead of
 * one per one (CPUs with two FMA units are otherwise held by their loads). Every element keeps
 * gemm_tile's operations, so the same bits.
 */
static inline __attribute__((always_inline)) void gemm_tile2(
    const float* ap, size_t rs, size_t ks, const float* b0, const float* b1, size_t bstride, int kc,
    float* c, size_t ldc, vmask m1, int scaled, float alpha, int add, const float* bias) {
  const vmask full = vmask_first(VW);
  vf acc0[MB], acc1[MB];
  for (int r = 0; r < MB; r++) acc0[r] = acc1[r] = vset1(0.0f);
  for (int kk = 0; kk < kc; kk++) {
    const vf bv0 = vload(b0 + (size_t)kk * bstride, full);
    const vf bv1 = vload(b1 + (size_t)kk * bstride, m1);
    const float* ak = ap + (size_t)kk * ks;
    for (int r = 0; r < MB; r++) {
      const vf av = vset1(ak[(size_t)r * rs]);
      acc0[r] = vmadd(av, bv0, acc0[r]);
      acc1[r] = vmadd(av, bv1, acc1[r]);
    }
  }
  const vf va = vset1(alpha);
  const vf vb0 = bias && !add ? vload(bias, full) : vset1(0.0f);
  const vf vb1 = bias && !add ? vload(bias + VW, m1) : vset1(0.0f);
  for (int r = 0; r < MB; r++) {
    float* cr = c + (size_t)r * ldc;
    vf v0 = scaled ? vmul(acc0[r], va) : acc0[r];
    vf v1 = scaled ? vmul(acc1[r], va) : acc1[r];
    if (add) {
      v0 = vadd(vload(cr, full), v0);
      v1 = vadd(vload(cr + VW, m1), v1);
    } else if (bias) {
      v0 = vadd(vb0, v0);
      v1 = vadd(vb1, v1);
    }
    vstore(cr, v0, full);
    vstore(cr + VW, v1, m1);
  }
}

/* gemm_tile for the last 1 to MB - 1 rows, each count its own register tile. */
static void gemm_edge_tile(
    int rows, const float* ap, size_t rs, size_t ks, const float* bk, size_t bstride, int kc,
    float* c, size_t ldc, vmask m, int scaled, float alpha, int add, const float* bias) {
#define EDGE(n) gemm_tile(n, ap, rs, ks, bk, bstride, kc, c, ldc, m, scaled, alpha, add, bias)
  switch (rows) {
    case 5: EDGE(5); break;
    case 4: EDGE(4); break;
    case 3: EDGE(3); break;
    case 2: EDGE(2); break;
    case 1: EDGE(1); break;
    default: break;
  }
#undef EDGE
}

/*
 * What the GEMM does to a band of C's rows once its last K slice is stored, while they are in
 * cache, instead of a pass of its own over memory: the unary kernels' GELU or GELU gradient,
 * element by element, so the bits are those of the GEMM followed by that kernel. `e1` and `e2`
 * are laid out as C (the same row stride).
 */
#define EPI_NONE 0
#define EPI_GELU 1      /* e1 = gelu(C): e1 is C itself or another buffer */
#define EPI_GELU_GRAD 2 /* C = gelu'(x) * C with x = e1, y = gelu(x) = e2 (duaf_unary_grad's) */

static void gemm_epilogue(int epi, float* c, size_t ldc, int i0, int i1, int j0, int j1, float* e1,
                          const float* e2) {
  const int n = j1 - j0;
  for (int i = i0; i < i1; i++) {
    const size_t at = (size_t)i * ldc + j0;
    float* cr = c + at;
    if (epi == EPI_GELU && e1 == c) {
      for (int j = 0; j < n; j++) {
        const float v = cr[j];
        cr[j] = v * normal_cdf(v);
      }
    } else if (epi == EPI_GELU) {
      const float* restrict pre = cr;
      float* restrict out = e1 + at;
      for (int j = 0; j < n; j++) {
        const float v = pre[j];
        out[j] = v * normal_cdf(v);
      }
    } else if (epi == EPI_GELU_GRAD) {
      const float* restrict x = e1 + at;
      const float* restrict y = e2 + at;
      for (int j = 0; j < n; j++) cr[j] = gelu_grad(x[j], y[j], cr[j]);
    }
  }
}

/*
 * Rows [r0, r1) x columns [c0, c1) of one item of C = alpha op(A) op(B) + beta C (beta 0 or 1),
 * with gemm.ts's arithmetic for every element: per K slice of KC, an accumulator from 0 taking
 * a[i][k] * b[k][j] with MADD in increasing k, then times alpha when alpha != 1, then stored (the
 * first slice with beta 0) or added to C. Row-major; A(i, k) is read in place through its
 * transpose; B is copied k-major into `pack` only when transposed.
 */
static void gemm_slices(
    const float* a, const float* b, float* c, int k, int trans_a, int trans_b, int lda, int ldb,
    int ldc, float alpha, int beta, int r0, int r1, int c0, int c1, float* pack,
    const float* bias, int p0, int p1, float* parts, int part_ld, int epi, float* e1,
    const float* e2) {
  if (r0 >= r1 || c0 >= c1) return;
  if (k == 0) {
    for (int i = r0; i < r1; i++) {
      float* ci = c + (size_t)i * ldc + c0;
      if (bias) memcpy(ci, bias + c0, sizeof(float) * (c1 - c0));
      else if (!beta) memset(ci, 0, sizeof(float) * (c1 - c0));
    }
    if (epi) gemm_epilogue(epi, c, (size_t)ldc, r0, r1, c0, c1, e1, e2);
    return;
  }
  const int scaled = alpha != 1.0f;
  const size_t rs = trans_a ? 1 : (size_t)lda, ks = trans_a ? (size_t)lda : 1;
  const int pend = (size_t)p1 * KC < (size_t)k ? p1 * KC : k;
  for (int pc = p0 * KC; pc < pend; pc += KC) {
    const int kc = k - pc < KC ? k - pc : KC;
    /* Where this slice goes: C (stored by the first slice with beta 0, else added), or with
       `parts` its own [rows x part_ld] block of alpha * accumulator, for gemm_add_parts. */
    float* const cs = parts ? parts + (size_t)(pc / KC - p0) * r1 * part_ld : c;
    const int lds = parts ? part_ld : ldc;
    const int add = parts ? 0 : pc > 0 || beta;
    const float* brow = pc == 0 && !parts ? bias : 0;
    /* The epilogue follows the last slice (the whole product), never a K split's part. */
    const int last_epi = !parts && pc + kc >= k ? epi : EPI_NONE;
    int nc = (PACK_B_FLOATS / kc) & ~(VW - 1);
    if (nc < VW) nc = VW;
    for (int jc = c0; jc < c1; jc += nc) {
      const int ncur = c1 - jc < nc ? c1 - jc : nc;
      /* B(pc + kk, jc + j0 + jj) at panel(j0)[kk * bstride + jj]: B's rows in place, or for a
         transposed B, panels of VW columns copied k-major (each panel's kc vectors back to back;
         rows of the whole chunk would put vectors a multiple of 4 KiB apart, all in one L1 set). */
      const float* bk = b + (size_t)pc * ldb + jc;
      size_t bstride = (size_t)ldb;
      if (trans_b) {
        for (int j0 = 0; j0 < ncur; j0 += VW) {
          float* panel = pack + (size_t)j0 * kc;
          const int w = ncur - j0 < VW ? ncur - j0 : VW;
          for (int jj = 0; jj < w; jj++) {
            const float* src = b + (size_t)(jc + j0 + jj) * ldb + pc;
            for (int kk = 0; kk < kc; kk++) panel[(size_t)kk * VW + jj] = src[kk];
          }
        }
        bk = pack;
        bstride = VW;
      }
#define PANEL(j0) (trans_b ? bk + (size_t)(j0) * kc : bk + (j0))
#define BIAS(j0) (brow ? brow + jc + (j0) : 0)
      /* Six rows at a time across the chunk's columns: each row of C is written front to back
         and the chunk of B stays in cache. */
      int i = r0;
      for (; i + MB <= r1; i += MB) {
        const float* ap = a + (size_t)i * rs + (size_t)pc * ks;
        float* ci = cs + (size_t)i * lds + jc;
        /* The next tile's rows of A (row-major A): their lines arrive while this tile computes
           (the activations a layer's product reads were written several ops ago, out of cache). */
        if (!trans_a && i + 2 * MB <= r1) {
          for (int r = 0; r < MB; r++) {
            const char* row = (const char*)(ap + (size_t)(MB + r) * rs);
            for (int off = 0; off < kc * 4; off += 64) __builtin_prefetch(row + off, 0, 3);
          }
        }
        int j0 = 0;
        for (; j0 + VW < ncur; j0 += 2 * VW) {
          const vmask m1 = vmask_first(ncur - j0 - VW < VW ? ncur - j0 - VW : VW);
          gemm_tile2(ap, rs, ks, PANEL(j0), PANEL(j0 + VW), bstride, kc, ci + j0, (size_t)lds, m1,
                     scaled, alpha, add, BIAS(j0));
        }
        for (; j0 < ncur; j0 += VW) {
          const vmask m = vmask_first(ncur - j0 < VW ? ncur - j0 : VW);
          gemm_tile(MB, ap, rs, ks, PANEL(j0), bstride, kc, ci + j0, (size_t)lds, m, scaled, alpha, add,
                    BIAS(j0));
        }
        if (last_epi) gemm_epilogue(last_epi, c, (size_t)ldc, i, i + MB, jc, jc + ncur, e1, e2);
      }
      if (i < r1) {
        const float* ap = a + (size_t)i * rs + (size_t)pc * ks;
        float* ci = cs + (size_t)i * lds + jc;
        for (int j0 = 0; j0 < ncur; j0 += VW) {
          const vmask m = vmask_first(ncur - j0 < VW ? ncur - j0 : VW);
          gemm_edge_tile(r1 - i, ap, rs, ks, PANEL(j0), bstride, kc, ci + j0, (size_t)lds, m,
                         scaled, alpha, add, BIAS(j0));
        }
        if (last_epi) gemm_epilogue(last_epi, c, (size_t)ldc, i, r1, jc, jc + ncur, e1, e2);
      }
#undef PANEL
#undef BIAS
    }
  }
}

static void gemm_one(
    const float* a, const float* b, float* c, int k, int trans_a, int trans_b, int lda, int ldb,
    int ldc, float alpha, int beta, int r0, int r1, int c0, int c1, float* pack,
    const float* bias, int epi, float* e1, const float* e2) {
  gemm_slices(a, b, c, k, trans_a, trans_b, lda, ldb, ldc, alpha, beta, r0, r1, c0, c1, pack, bias,
              0, (k + KC - 1) / KC, 0, 0, epi, e1, e2);
}

/* gemm.ts `gemm`: `batch` items of `batch2` inner items each; strides in elements. */
void duaf_gemm(
    uint8_t* base, uint32_t ao, uint32_t bo, uint32_t co, int m, int n, int k, int trans_a,
    int trans_b, int batch, int stride_a, int stride_b, int stride_c, int batch2, int stride_a2,
    int stride_b2, int stride_c2, int lda, int ldb, int ldc, float alpha, int beta, int r0,
    int r1, int c0, int c1, uint32_t scratch, uint32_t bias) {
  (void)m;
  (void)n;
  float* pack = (float*)(base + scratch);
  /* bias (0: none): the row C starts from instead of its own contents (with beta 0). */
  const float* brow = bias ? (const float*)(base + bias) : 0;
  for (int item = 0; item < batch * batch2; item++) {
    const int bi = item / batch2, bj = item - bi * batch2;
    const float* a = (const float*)(base + ao) + (size_t)bi * stride_a + (size_t)bj * stride_a2;
    const float* b = (const float*)(base + bo) + (size_t)bi * stride_b + (size_t)bj * stride_b2;
    float* c = (float*)(base + co) + (size_t)bi * stride_c + (size_t)bj * stride_c2;
    gemm_one(a, b, c, k, trans_a, trans_b, lda, ldb, ldc, alpha, beta, r0, r1, c0, c1, pack, brow,
             EPI_NONE, 0, 0);
  }
}

/*
 * duaf_gemm for one item with an epilogue (EPI_*) on its rows [r0, r1) x columns [c0, c1), e1
 * and e2 laid out as C. Its own entry point: duaf_gemm's arguments are already as many as a
 * Deno FFI fast call takes.
 */
void duaf_gemm_epilogue(
    uint8_t* base, uint32_t ao, uint32_t bo, uint32_t co, int k, int trans_a, int trans_b,
    int lda, int ldb, int ldc, float alpha, int beta, int r0, int r1, int c0, int c1,
    uint32_t scratch, uint32_t bias, int epi, uint32_t e1o, uint32_t e2o) {
  gemm_one((const float*)(base + ao), (const float*)(base + bo), (float*)(base + co), k, trans_a,
           trans_b, lda, ldb, ldc, alpha, beta, r0, r1, c0, c1, (float*)(base + scratch),
           bias ? (const float*)(base + bias) : 0, epi, (float*)(base + e1o),
           epi == EPI_GELU_GRAD ? (const float*)(base + e2o) : 0);
}

/* ---- candidate scores of the sampled losses --------------------------------------------------- */

/* Candidates ahead of the one in use whose table rows are prefetched (GATHER_AHEAD: by
   duaf_gather_dots, whose gathers take 16 at a time; ROW_AHEAD: one row at a time). */
#define GATHER_AHEAD 16
#define ROW_AHEAD 12

#if VW == 16
/* r[i][k] -> r[k][i]: sixteen vectors of sixteen floats transposed in registers. */
static inline __attribute__((always_inline)) void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
    const __m512d c = _mm512_castps_pd(t[i + 2]), e = _mm512_castps_pd(t[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, e));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, e));
  }
  for (int i = 0; i < 16; i += 8)
    for (int j = 0; j < 4; j++) {
      t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
      t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xdd);
    }
  for (int j = 0; j < 8; j++) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
  }
}
#endif

/* Asks for the cache lines of a row of d floats (write: 1 when it is about to be written). */
static inline void prefetch_row(const float* row, int d, int write) {
  for (int off = 0; off < d * 4; off += 64) {
    if (write) __builtin_prefetch((const char*)row + off, 1, 3);
    else __builtin_prefetch((const char*)row + off, 0, 3);
  }
}

/* One MADD on scalars, as vmadd does lane by lane. */
static inline float madd1(float a, float b, float c) {
#if DUAF_FUSED_MADD
  return fmaf(a, b, c);
#else
  return a * b + c;
#endif
}

/*
 * out[r, j] = table[idx[r, j]] . h[r] for n rows of m candidates, without the gathered [n, m, d]
 * rows: each score the GEMM's arithmetic for the batched [m x d] @ [d x 1] product it replaces
 * (per K slice of KC an accumulator from 0 taking MADD in increasing k, slices added in order), so
 * gathering and multiplying give the same bits. Sixteen candidates at a time, one lane each: their
 * rows read sixteen floats at a time and transposed in registers (a gather instruction per
 * element costs several times that). Returns the first out-of-range index's position, else -1.
 */
int duaf_gather_dots(uint8_t* base, uint32_t to, int table_rows, uint32_t io, uint32_t ho,
                     uint32_t oo, int n, int m, int d) {
  const float* table = (const float*)(base + to);
  const int32_t* idx = (const int32_t*)(base + io);
  const float* h = (const float*)(base + ho);
  float* out = (float*)(base + oo);
  const size_t all = (size_t)n * m;
  const int bad = first_bad_index(idx, all, table_rows);
  if (bad >= 0) return bad;
  for (int r = 0; r < n; r++) {
    const float* hr = h + (size_t)r * d;
    const int32_t* ir = idx + (size_t)r * m;
    float* orow = out + (size_t)r * m;
#if VW == 16
    for (int j0 = 0; j0 < m; j0 += 16) {
      /* The rows of the candidates GATHER_AHEAD later (in the next row's once past this one's
         end): random rows of a table larger than the cache, whose lines then arrive while this
         block is scored. */
      const size_t ahead = (size_t)r * m + j0 + GATHER_AHEAD;
      for (size_t q = ahead; q < ahead + 16 && q < all; q++)
        prefetch_row(table + (size_t)idx[q] * d, d, 0);
      const int w = m - j0 < 16 ? m - j0 : 16;
      const vmask mask = vmask_first(w);
      /* Lanes past the last candidate score its first one again; the store leaves them out. */
      const float* rows[16];
      for (int q = 0; q < 16; q++) rows[q] = table + (size_t)ir[j0 + (q < w ? q : 0)] * d;
      vf total = vset1(0.0f);
      for (int pc = 0; pc < d; pc += KC) {
        const int pend = d - pc < KC ? d : pc + KC;
        vf acc = vset1(0.0f);
        for (int k0 = pc; k0 < pend; k0 += 16) {
          /* Sixteen floats of each candidate's row, transposed: v[kk] holds element k0 + kk of
             every candidate, one lane each, as a gather of that element would. */
          const int kw = pend - k0 < 16 ? pend - k0 : 16;
          const vmask km = vmask_first(kw);
          vf v[16];
          for (int q = 0; q < 16; q++) v[q] = _mm512_maskz_loadu_ps(km, rows[q] + k0);
          transpose16(v);
          /* A constant trip count for whole blocks: unrolled, v stays in registers. */
          if (kw == 16) {
            for (int kk = 0; kk < 16; kk++) acc = vmadd(v[kk], vset1(hr[k0 + kk]), acc);
          } else {
            for (int kk = 0; kk < kw; kk++) acc = vmadd(v[kk], vset1(hr[k0 + kk]), acc);
          }
        }
        total = pc == 0 ? acc : vadd(total, acc);
      }
      _mm512_mask_storeu_ps(orow + j0, mask, total);
    }
#else
    for (int j = 0; j < m; j++) {
      const float* row = table + (size_t)ir[j] * d;
      float total = 0.0f;
      for (int pc = 0; pc < d; pc += KC) {
        const int pend = d - pc < KC ? d : pc + KC;
        float acc = 0.0f;
        for (int k = pc; k < pend; k++) acc = madd1(row[k], hr[k], acc);
        total = pc == 0 ? acc : total + acc;
      }
      orow[j] = total;
    }
#endif
  }
  return -1;
}

/* Row r of duaf_gather_dots_grad_h with its d floats in `chunks` vectors (d <= chunks * VW). */
static inline __attribute__((always_inline)) void grad_h_row(
    const float* table, const int32_t* idx, size_t all, const int32_t* ir, const float* gr,
    float* dr, int r, int m, int d, const int chunks) {
  vf total[8], acc[8];
  vmask mask[8];
  for (int c = 0; c < chunks; c++) mask[c] = vmask_first(d - c * VW < VW ? d - c * VW : VW);
  for (int pc = 0; pc < m; pc += KC) {
    const int pend = m - pc < KC ? m : pc + KC;
    for (int c = 0; c < chunks; c++) acc[c] = vset1(0.0f);
    for (int j = pc; j < pend; j++) {
      const size_t ahead = (size_t)r * m + j + ROW_AHEAD;
      if (ahead < all) prefetch_row(table + (size_t)idx[ahead] * d, d, 0);
      const float* row = table + (size_t)ir[j] * d;
      const vf gj = vset1(gr[j]);
      for (int c = 0; c < chunks; c++) acc[c] = vmadd(vload(row + c * VW, mask[c]), gj, acc[c]);
    }
    for (int c = 0; c < chunks; c++) total[c] = pc == 0 ? acc[c] : vadd(total[c], acc[c]);
  }
  for (int c = 0; c < chunks; c++) vstore(dr + c * VW, total[c], mask[c]);
}

/*
 * duaf_gather_dots' gradient for h: dh[r, :] = sum_j g[r, j] table[idx[r, j], :], the GEMM's
 * arithmetic for the [d x m] @ [m x 1] product with the gathered rows transposed that it replaces
 * (per K slice of KC candidates an accumulator from 0 taking MADD in increasing j, slices added
 * in order), so the same bits. The indices were checked by the forward call.
 */
void duaf_gather_dots_grad_h(uint8_t* base, uint32_t to, uint32_t io, uint32_t go, uint32_t dho,
                             int n, int m, int d) {
  const float* table = (const float*)(base + to);
  const int32_t* idx = (const int32_t*)(base + io);
  const float* g = (const float*)(base + go);
  float* dh = (float*)(base + dho);
  const int chunks = (d + VW - 1) / VW;
  const size_t all = (size_t)n * m;
  for (int r = 0; r < n; r++) {
    const int32_t* ir = idx + (size_t)r * m;
    const float* gr = g + (size_t)r * m;
    float* dr = dh + (size_t)r * d;
    switch (chunks) {
      /* Each candidate's row read once, all its vectors at a time, into accumulators that a
         constant chunk count keeps in registers: per lane the same MADDs in the same order. */
      case 1: grad_h_row(table, idx, all, ir, gr, dr, r, m, d, 1); continue;
      case 2: grad_h_row(table, idx, all, ir, gr, dr, r, m, d, 2); continue;
      case 3: grad_h_row(table, idx, all, ir, gr, dr, r, m, d, 3); continue;
      case 4: grad_h_row(table, idx, all, ir, gr, dr, r, m, d, 4); continue;
      case 6: grad_h_row(table, idx, all, ir, gr, dr, r, m, d, 6); continue;
      case 8: grad_h_row(table, idx, all, ir, gr, dr, r, m, d, 8); continue;
      default: break;
    }
    for (int k0 = 0; k0 < d; k0 += VW) {
      const vmask mask = vmask_first(d - k0 < VW ? d - k0 : VW);
      vf total = vset1(0.0f);
      for (int pc = 0; pc < m; pc += KC) {
        const int pend = m - pc < KC ? m : pc + KC;
        vf acc = vset1(0.0f);
        for (int j = pc; j < pend; j++)
          acc = vmadd(vload(table + (size_t)ir[j] * d + k0, mask), vset1(gr[j]), acc);
        total = pc == 0 ? acc : vadd(total, acc);
      }
      vstore(dr + k0, total, mask);
    }
  }
}

/*
 * The table's gradient from duaf_gather_dots' scores without the candidates' [n, m, d] rows of
 * g h^T: out[idx[i], c] += g[i] * h[i / m, c] for i < n m in order, over columns [c0, c1) (the two
 * kernel threads take halves of a row), each product rounded and then added: the bits of the
 * one-term product and the scatterAdd it replaces. Returns the first out-of-range index's
 * position, else -1.
 */
int duaf_scatter_outer(uint8_t* base, uint32_t go, uint32_t ho, uint32_t io, uint32_t oo,
                       int out_rows, int n, int m, int d, int c0, int c1) {
  const float* g = (const float*)(base + go);
  const float* h = (const float*)(base + ho);
  const int32_t* idx = (const int32_t*)(base + io);
  float* out = (float*)(base + oo);
  const size_t total = (size_t)n * m;
  const int bad = first_bad_index(idx, total, out_rows);
  if (bad >= 0) return bad;
  for (size_t i = 0; i < total; i++) {
    if (i + ROW_AHEAD < total)
      prefetch_row(out + (size_t)idx[i + ROW_AHEAD] * d + c0, c1 - c0, 1);
    const vf gi = vset1(g[i]);
    const float* hr = h + (i / m) * d;
    float* o = out + (size_t)idx[i] * d;
    for (int c = c0; c < c1; c += VW) {
      const vmask mask = vmask_first(c1 - c < VW ? c1 - c : VW);
      vstore(o + c, vadd(vload(o + c, mask), vmul(gi, vload(hr + c, mask))), mask);
    }
  }
  return -1;
}

/* ---- attention ------------------------------------------------------------------------------ */

/*
 * core/ops/attention.ts: per sequence and head, headDots -> maskedSoftmax -> dropout -> headMix
 * (forward) and their gradients (backward) in one pass over the sequence, instead of a call and a
 * pass over [B, heads, lq, lk] in memory for each. Every element gets those calls' float32
 * operations in their order: each product an accumulator from 0 taking MADD in increasing k (the
 * GEMM's, for k within one K slice), the softmax masked_softmax_row's, its gradient the wasm
 * softmaxGrad's four lanes, the dropout dropout_run's mask at the element's index.
 *
 * q [B, lq, d], k and v [B, lk, d], out and the gradients likewise, head g in columns
 * [g dh, (g + 1) dh) of each row; p [B, heads, lq, lk] holds the softmax before dropout. The
 * dropout of element (b, g, i, j) is drawn at index row * lk + j, row = (b heads + g) lrows +
 * step + i with step = steps[b] (0 without steps): a query row taken from a full pass keeps that
 * pass's mask. Sequences [b0, b1) are this call's; `scratch` holds attn_scratch_floats floats.
 */

static inline int attn_ldk(int lk) { return (lk + VW - 1) / VW * VW; }

/* Head g of rows [n x d] transposed into t[c * ldk + j], the columns past n zero. */
static void pack_head_t(const float* x, int n, int d, int dh, int g, float* t, int ldk) {
  /* Row by row: x's rows are read front to back (column by column, every element of a column was
     a load from another line, each waiting on memory), the writes land in t, in L1. */
  for (int j = 0; j < n; j++) {
    const float* xr = x + (size_t)j * d + (size_t)g * dh;
    for (int c = 0; c < dh; c++) t[(size_t)c * ldk + j] = xr[c];
  }
  if (n < ldk)
    for (int c = 0; c < dh; c++) memset(t + (size_t)c * ldk + n, 0, sizeof(float) * (ldk - n));
}

/*
 * C [rows x n] = A B for k within one K slice, A(i, kk) at a[i rs + kk ks], B(kk, j) at
 * b[kk bstride + j]: the GEMM's register tiles, so its bits. With `lo` and `hi`, row i's terms
 * outside kk in [lo[i], hi[i]) have weight exactly 0 and each row tile takes only the union of its
 * rows' ranges: the same bits, as the accumulator starts at +0 and a zero-weight MADD leaves any
 * value it can hold unchanged (for finite B). Without them every kk < k.
 */
static void small_product(const float* a, size_t rs, size_t ks, const float* b, size_t bstride,
                          int k, int rows, int n, float* c, size_t ldc, const int* lo,
                          const int* hi) {
  for (int i = 0; i < rows; i += MB) {
    const int r = rows - i < MB ? rows - i : MB;
    int k0 = 0, k1 = k;
    if (lo) {
      k0 = lo[i], k1 = hi[i];
      for (int t = 1; t < r; t++) {
        k0 = lo[i + t] < k0 ? lo[i + t] : k0;
        k1 = hi[i + t] > k1 ? hi[i + t] : k1;
      }
      if (k1 < k0) k1 = k0;
    }
    const float* ai = a + (size_t)i * rs + (size_t)k0 * ks;
    const float* bk = b + (size_t)k0 * bstride;
    for (int j0 = 0; j0 < n; j0 += VW) {
      const vmask m = vmask_first(n - j0 < VW ? n - j0 : VW);
      float* cij = c + (size_t)i * ldc + j0;
      if (r == MB) gemm_tile(MB, ai, rs, ks, bk + j0, bstride, k1 - k0, cij, ldc, m, 0, 1.0f, 0, 0);
      else gemm_edge_tile(r, ai, rs, ks, bk + j0, bstride, k1 - k0, cij, ldc, m, 0, 1.0f, 0, 0);
    }
  }
}

/* Per row i of p [lq x lk] (row stride lk), columns [lo[i], hi[i]) hold its nonzeros. */
static void row_ranges(const float* p, int lq, int lk, int* lo, int* hi) {
  for (int i = 0; i < lq; i++) {
    const float* pr = p + (size_t)i * lk;
    int l = 0, h = lk;
    while (h > 0 && pr[h - 1] == 0.0f) h--;
    while (l < h && pr[l] == 0.0f) l++;
    lo[i] = l, hi[i] = h;
  }
}

/*
 * From the rows' ranges, per column j the rows [lo[j], hi[j]) whose ranges hold j, a superset of
 * the rows where column j is nonzero: each MB-column tile gets its union for every column in it.
 */
static void column_ranges(const int* rlo, const int* rhi, int lq, int lk, int* lo, int* hi) {
  for (int j = 0; j < lk; j += MB) {
    const int j1 = lk - j < MB ? lk : j + MB;
    int l = lq, h = 0;
    for (int i = 0; i < lq; i++) {
      if (rlo[i] < j1 && rhi[i] > j) {
        if (i < l) l = i;
        h = i + 1;
      }
    }
    if (l >= h) l = 0, h = 0;
    for (int t = j; t < j1; t++) lo[t] = l, hi[t] = h;
  }
}

/* The dropout's factors (scale or 0) of (b, g)'s lq query rows, f[i lk + j]: dropout_run's at
   each index. The rows are consecutive rows of the pass, so their indices are too: one loop over
   lq lk of them (row by row, a row of a few keys is mostly a vector loop's prologue and tail). */
static void keep_factors(int b, int g, int lq, int heads, int lrows, uint32_t step, int lk,
                         uint32_t hs, int threshold, float dscale, float* f) {
  const uint32_t row = ((uint32_t)b * heads + g) * (uint32_t)lrows + step;
  const uint32_t i0 = row * (uint32_t)lk;
  const int n = lq * lk;
  for (int t = 0; t < n; t++) {
    const int32_t u = (int32_t)(hash32((i0 + (uint32_t)t) ^ hs) >> 8);
    f[t] = u >= threshold ? dscale : 0.0f;
  }
}

/*
 * masked_softmax_row for the lq rows of one (sequence, head): scores sc (row stride lds), mask
 * rows at mask + i * msq (null: none), probabilities into p [lq x lk]. Each element's operations
 * are masked_softmax_row's; the shift by the row's maximum is stored, then the exponentials of the
 * whole block are one loop (exp_bounded(x - m) is exp_bounded of the rounded x - m either way).
 */
static void softmax_block(const float* sc, size_t lds, const float* mask, size_t msq, float* p,
                          int lq, int lk, float scale) {
  const int nv = lk & ~3;
  for (int i = 0; i < lq; i++) {
    float* pr = p + (size_t)i * lk;
    masked_logits(sc + (size_t)i * lds, mask ? mask + (size_t)i * msq : 0, pr, lk, scale);
    float vm[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    const float m = max_from_lanes(vm, pr, 0, lk);
    for (int c = 0; c < lk; c++) pr[c] = pr[c] - m;
  }
  const int n = lq * lk;
  for (int t = 0; t < n; t++) p[t] = exp_bounded(p[t]);
  for (int i = 0; i < lq; i++) {
    float* pr = p + (size_t)i * lk;
    float s4[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    lane_sums(pr, nv, s4);
    float s = (s4[0] + s4[2]) + (s4[1] + s4[3]);
    for (int c = nv; c < lk; c++) s += pr[c];
    const float inv = 1.0f / s;
    for (int c = 0; c < lk; c++) pr[c] = pr[c] * inv;
  }
}

/*
 * Keys below which the separate calls (batched products, the softmax kernel, dropout) beat
 * duaf_attention on this CPU, the backend's threshold for taking it: on the AMD EPYC (Zen 4) these
 * kernels were measured on, 10 keys took 11.6 ms fused against 6.0 separate and 32 keys were the
 * crossover (with the kernel before its softmax went a block at a time); on an Intel Xeon the
 * fused call is faster from 3 keys up (docs/benchmarks.md, "Attention's fused kernel on short
 * sequences"). Elsewhere: fused at every length.
 */
int duaf_attention_min_keys(void) {
#if defined(__x86_64__) || defined(__i386__)
  unsigned int a, b, c, d;
  if (__get_cpuid(0, &a, &b, &c, &d) && b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u)
    return 32; /* "AuthenticAMD" */
#endif
  return 0;
}

int duaf_attention_scratch_floats(int lq, int lk, int dh) {
  return (dh + 3 * lq) * attn_ldk(lk);
}

int duaf_attention(
    uint8_t* base, uint32_t qo, uint32_t ko, uint32_t vo, uint32_t mo, uint32_t po, uint32_t oo,
    uint32_t so, uint32_t scro, int b0, int b1, int lq, int lk, int d, int heads, int lrows,
    float scale, int has_mask, int sb, int sh, int sq, int drop, int threshold, float dscale,
    uint32_t seed) {
  const int dh = d / heads, ldk = attn_ldk(lk);
  if (dh > KC || lk > KC || lq > KC) return -1;
  const float* q = (const float*)(base + qo);
  const float* k = (const float*)(base + ko);
  const float* v = (const float*)(base + vo);
  const float* mask = has_mask ? (const float*)(base + mo) : 0;
  const int32_t* steps = so ? (const int32_t*)(base + so) : 0;
  float* p = (float*)(base + po);
  float* out = (float*)(base + oo);
  float* kt = (float*)(base + scro);
  float* sc = kt + (size_t)dh * ldk; /* [lq x ldk] scores */
  float* pd = sc + (size_t)lq * ldk; /* [lq x lk] dropped probabilities */
  float* f = pd + (size_t)lq * ldk;  /* [lq x lk] their factors */
  int rlo[KC], rhi[KC];
  const uint32_t hs = hash32(seed);
  for (int b = b0; b < b1; b++) {
    const float* qb = q + (size_t)b * lq * d;
    const float* vb = v + (size_t)b * lk * d;
    const uint32_t step = steps ? (uint32_t)steps[b] : 0u;
    for (int g = 0; g < heads; g++) {
      const size_t hc = (size_t)g * dh;
      float* pb = p + ((size_t)b * heads + g) * lq * lk;
      /* headDots: scores = q_g k_g^T. */
      pack_head_t(k + (size_t)b * lk * d, lk, d, dh, g, kt, ldk);
      small_product(qb + hc, (size_t)d, 1, kt, (size_t)ldk, dh, lq, lk, sc, (size_t)ldk, 0, 0);
      softmax_block(sc, (size_t)ldk, mask ? mask + (size_t)(b * sb + g * sh) * lk : 0,
                    (size_t)sq * lk, pb, lq, lk, scale);
      if (drop) {
        keep_factors(b, g, lq, heads, lrows, step, lk, hs, threshold, dscale, f);
        for (int t = 0; t < lq * lk; t++) pd[t] = pb[t] * f[t];
      }
      /* headMix: out_g = (dropped) probabilities v_g, over each row's nonzero keys. */
      row_ranges(pb, lq, lk, rlo, rhi);
      small_product(drop ? pd : pb, (size_t)lk, 1, vb + hc, (size_t)d, lk, lq, dh,
                    out + (size_t)b * lq * d + hc, (size_t)d, rlo, rhi);
    }
  }
  return 0;
}

int duaf_attention_grad(
    uint8_t* base, uint32_t qo, uint32_t ko, uint32_t vo, uint32_t po, uint32_t go, uint32_t dqo,
    uint32_t dko, uint32_t dvo, uint32_t so, uint32_t scro, int b0, int b1, int lq, int lk, int d,
    int heads, int lrows, float scale, int drop, int threshold, float dscale, uint32_t seed) {
  const int dh = d / heads, ldk = attn_ldk(lk);
  if (dh > KC || lk > KC || lq > KC) return -1;
  const float* q = (const float*)(base + qo);
  const float* k = (const float*)(base + ko);
  const float* v = (const float*)(base + vo);
  const float* p = (const float*)(base + po);
  const float* gr = (const float*)(base + go);
  float* dq = (float*)(base + dqo);
  float* dk = (float*)(base + dko);
  float* dv = (float*)(base + dvo);
  const int32_t* steps = so ? (const int32_t*)(base + so) : 0;
  float* vt = (float*)(base + scro);
  float* ds = vt + (size_t)dh * ldk; /* [lq x ldk]: dp, then the scores' gradient in place */
  float* pd = ds + (size_t)lq * ldk; /* [lq x lk] dropped probabilities */
  float* f = pd + (size_t)lq * ldk;  /* [lq x lk] their factors */
  int rlo[KC], rhi[KC], clo[KC], chi[KC];
  const uint32_t hs = hash32(seed);
  const int nv = lk & ~3;
  for (int b = b0; b < b1; b++) {
    const float* qb = q + (size_t)b * lq * d;
    const float* kb = k + (size_t)b * lk * d;
    const float* gb = gr + (size_t)b * lq * d;
    const uint32_t step = steps ? (uint32_t)steps[b] : 0u;
    for (int g = 0; g < heads; g++) {
      const size_t hc = (size_t)g * dh;
      const float* pb = p + ((size_t)b * heads + g) * lq * lk;
      /* headMix's gradients: dp = g v_g^T (then the dropout's mask), dv_g = pd^T g. Where p is
         0 so are pd and the scores' gradient (p (dp - s)), whatever dp: dp is left 0 there. */
      row_ranges(pb, lq, lk, rlo, rhi);
      column_ranges(rlo, rhi, lq, lk, clo, chi);
      pack_head_t(v + (size_t)b * lk * d, lk, d, dh, g, vt, ldk);
      for (int i = 0; i < lq; i += MB) {
        const int r = lq - i < MB ? lq - i : MB;
        int n = 0;
        for (int t = 0; t < r; t++) n = rhi[i + t] > n ? rhi[i + t] : n;
        small_product(gb + hc + (size_t)i * d, (size_t)d, 1, vt, (size_t)ldk, dh, r, n,
                      ds + (size_t)i * ldk, (size_t)ldk, 0, 0);
        for (int t = 0; t < r; t++) memset(ds + (size_t)(i + t) * ldk + n, 0, sizeof(float) * (lk - n));
      }
      if (drop) {
        keep_factors(b, g, lq, heads, lrows, step, lk, hs, threshold, dscale, f);
        for (int t = 0; t < lq * lk; t++) pd[t] = pb[t] * f[t];
        for (int i = 0; i < lq; i++) {
          const float* fr = f + (size_t)i * lk;
          float* dpr = ds + (size_t)i * ldk;
          for (int j = 0; j < lk; j++) dpr[j] = dpr[j] * fr[j];
        }
      }
      small_product(drop ? pd : pb, 1, (size_t)lk, gb + hc, (size_t)d, lq, lk, dh,
                    dv + (size_t)b * lk * d + hc, (size_t)d, clo, chi);
      /* The masked softmax's gradient, the wasm softmaxGrad's: y (g - sum y g), then the scale. */
      for (int i = 0; i < lq; i++) {
        const float* prow = pb + (size_t)i * lk;
        float* dr = ds + (size_t)i * ldk;
        float l4[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int j = 0; j < nv; j += 4)
          for (int l = 0; l < 4; l++) l4[l] = l4[l] + dr[j + l] * prow[j + l];
        float s = (l4[0] + l4[2]) + (l4[1] + l4[3]);
        for (int j = nv; j < lk; j++) s += dr[j] * prow[j];
        for (int j = 0; j < lk; j++) {
          const float dj = prow[j] * (dr[j] - s);
          dr[j] = scale != 1.0f ? dj * scale : dj;
        }
      }
      /* headDots's gradients: dq_g = ds k_g, dk_g = ds^T q_g. */
      small_product(ds, (size_t)ldk, 1, kb + hc, (size_t)d, lk, lq, dh,
                    dq + (size_t)b * lq * d + hc, (size_t)d, rlo, rhi);
      small_product(ds, 1, (size_t)ldk, qb + hc, (size_t)d, lq, lk, dh,
                    dk + (size_t)b * lk * d + hc, (size_t)d, clo, chi);
    }
  }
  return 0;
}

/* ---- cross-entropy with its logits products ----------------------------------------------- */

/*
 * core/ops/linear_ce.ts with one block of all items and the exponentials kept, in one call each
 * way instead of a GEMM, a row kernel and (backward) a row kernel and two GEMMs, each a pass
 * over the [rows x items] block in memory. Each element gets the separate calls' float32
 * operations in their order: the GEMM's per-element accumulation restarts at every K slice of
 * KC and adds into C, so a product over item (or row) blocks cut at multiples of KC, taken in
 * order, gives the whole product's bits.
 *
 * Both kernel threads run the same call (tid 0 and 1 of nt) and meet at a spin barrier, two
 * words in the arena that the caller zeroes before the call.
 */

#define BARRIER_TIMEOUT_S 60

static double seconds_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Waits until all nt threads arrive; b[0] counts arrivals, b[1] the generation. 0, or -1 when
   the other thread has not come within BARRIER_TIMEOUT_S (it died: the caller reports it). */
static int spin_barrier(uint32_t* b, int nt) {
  if (nt <= 1) return 0;
  const uint32_t gen = __atomic_load_n(&b[1], __ATOMIC_ACQUIRE);
  if (__atomic_add_fetch(&b[0], 1, __ATOMIC_ACQ_REL) == (uint32_t)nt) {
    __atomic_store_n(&b[0], 0, __ATOMIC_RELAXED);
    __atomic_store_n(&b[1], gen + 1, __ATOMIC_RELEASE);
    return 0;
  }
  double start = 0;
  for (uint32_t spins = 1; __atomic_load_n(&b[1], __ATOMIC_ACQUIRE) == gen; spins++) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
    /* Past some microseconds the other thread is likely not running (more threads than cores:
       two training processes on two cores); spinning on would hold the core it waits for. */
    if ((spins & 0x3ff) == 0) DUAF_YIELD();
    if ((spins & 0xfffff) == 0) {
      const double t = seconds_now();
      if (start == 0) start = t;
      else if (t - start > BARRIER_TIMEOUT_S) return -1;
    }
  }
  return 0;
}

/* Rows [r0, r1) of `rows` for thread tid of nt: halves cut at a register tile's height. */
static void thread_rows(int rows, int tid, int nt, int* r0, int* r1) {
  int cut = nt > 1 ? (rows / 2 + MB / 2) / MB * MB : rows;
  if (cut > rows) cut = rows;
  *r0 = tid == 0 ? 0 : cut;
  *r1 = tid == 0 ? cut : rows;
}

/* Rows of logits a thread turns into exponentials at a time: about 2 MiB of them stay in the
   shared cache between the product that writes them and the row kernel that reads them. */
#define LCE_BAND_BYTES (2u << 20)
/* Columns of the packed table swept by one band's rows at a time (256 KiB at d = 64). */
#define LCE_CHUNK_FLOATS 65536

/* This thread's share of the table's panels, as duaf_gemm packs a transposed B: VW items' d
   values k-major (ceil(items / VW) * VW * d floats in all). */
static void pack_table_panels(const float* e, int items, int d, float* pack, int tid, int nt) {
  const int panels = (items + VW - 1) / VW;
  for (int p = panels * tid / nt; p < panels * (tid + 1) / nt; p++) {
    float* panel = pack + (size_t)p * d * VW;
    const int w = items - p * VW < VW ? items - p * VW : VW;
    for (int jj = 0; jj < w; jj++) {
      const float* src = e + (size_t)(p * VW + jj) * d;
      for (int kk = 0; kk < d; kk++) panel[(size_t)kk * VW + jj] = src[kk];
    }
  }
}

/* Items of the packed table a band of rows sweeps at a time (256 KiB of panels at d = 64). */
static int table_chunk(int d) {
  const int chunk = LCE_CHUNK_FLOATS / d / VW * VW;
  return chunk < VW ? VW : chunk;
}

/* Rows [i0, i1) of h (rows of d) against packed items [j0, j1): each score as duaf_gemm computes
   it, row i's at z[(i - i0) * ldz + j - j0]. */
static void band_scores(const float* h, int i0, int i1, const float* pack, int j0, int j1, int d,
                        float* z, size_t ldz) {
  const vmask full = vmask_first(VW);
  int i = i0;
  for (; i + MB <= i1; i += MB) {
    int j = j0;
    for (; j + VW < j1; j += 2 * VW) {
      const vmask m1 = j1 - j - VW < VW ? vmask_first(j1 - j - VW) : full;
      gemm_tile2(h + (size_t)i * d, (size_t)d, 1, pack + (size_t)j * d, pack + (size_t)(j + VW) * d,
                 VW, d, z + (size_t)(i - i0) * ldz + (j - j0), ldz, m1, 0, 1.0f, 0, 0);
    }
    for (; j < j1; j += VW) {
      const vmask m = j1 - j < VW ? vmask_first(j1 - j) : full;
      gemm_tile(MB, h + (size_t)i * d, (size_t)d, 1, pack + (size_t)j * d, VW, d,
                z + (size_t)(i - i0) * ldz + (j - j0), ldz, m, 0, 1.0f, 0, 0);
    }
  }
  if (i < i1)
    for (int j = j0; j < j1; j += VW) {
      const vmask m = j1 - j < VW ? vmask_first(j1 - j) : full;
      gemm_edge_tile(i1 - i, h + (size_t)i * d, (size_t)d, 1, pack + (size_t)j * d, VW, d,
                     z + (size_t)(i - i0) * ldz + (j - j0), ldz, m, 0, 1.0f, 0, 0);
    }
}

/* The bf16 products (below) where the build targets AVX-512 BF16 with the 16-float GEMM tile. */
#if defined(__AVX512BF16__) && defined(__AVX512BW__) && defined(__AVX512VL__) && VW == 16
#define HAS_BF16 1
#endif

/* AMX tiles for the bf16 products, where the build targets them (AMX-BF16). */
#if defined(HAS_BF16) && defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__linux__)
#define HAS_AMX 1

/* 1 after this process was granted the tile state (Linux asks for it once, arch_prctl
   ARCH_REQ_XCOMP_PERM), -1 where it was refused or DUAF_CPU_AMX=off, 0 before the first ask. */
static int amx_state = 0;

static int amx_usable(void) {
  int st = __atomic_load_n(&amx_state, __ATOMIC_ACQUIRE);
  if (st == 0) {
    const char* env = getenv("DUAF_CPU_AMX");
    const int off = env && (!strcmp(env, "off") || !strcmp(env, "0"));
    st = !off && syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */,
                         18 /* XFEATURE_XTILEDATA */) == 0
             ? 1
             : -1;
    __atomic_store_n(&amx_state, st, __ATOMIC_RELEASE);
  }
  return st > 0;
}
#endif

#ifdef HAS_BF16
static void bf16_product(const uint32_t* a, size_t ars, int i0, int i1, int kp, const uint32_t* b,
                         size_t bq, size_t bv, int n, float* c, size_t ldc, int mode);
#endif

/*
 * A thread's rows [r0, r1) of the fused forward, a band at a time: the band's scores against the
 * packed table chunk by chunk (bf16 null: band_scores on the float32 panels; else the bf16
 * product of h's pairs `bf16` and the bf16 panels), then ce_rows over all items while the band is
 * in cache (first block, exponentials kept in z, row maxima in shift).
 */
static void lce_bands(uint8_t* base, const float* h, const void* pack, const uint32_t* bf16,
                      float* z, uint32_t to, uint32_t lo, uint32_t po, uint32_t so, int r0, int r1,
                      int items, int d) {
  int band = (int)(LCE_BAND_BYTES / (4u * (unsigned)items)) / MB * MB;
  if (band < MB) band = MB;
  const int chunk = table_chunk(d);
  for (int i0 = r0; i0 < r1; i0 += band) {
    const int i1 = r1 - i0 < band ? r1 : i0 + band;
    for (int jc = 0; jc < items; jc += chunk) {
      const int n = items - jc < chunk ? items - jc : chunk;
      float* zc = z + (size_t)i0 * items + jc;
      if (!bf16) band_scores(h, i0, i1, (const float*)pack, jc, jc + n, d, zc, (size_t)items);
#ifdef HAS_BF16
      else {
        const int dp = (d + 1) / 2; /* pairs a row */
        bf16_product(bf16 + (size_t)i0 * dp, (size_t)dp, 0, i1 - i0, dp,
                     (const uint32_t*)pack + (size_t)jc * dp, VW, (size_t)dp * VW, n, zc,
                     (size_t)items, 0);
      }
#endif
    }
    ce_rows(z + (size_t)i0 * items, (const int32_t*)(base + to) + i0, (float*)(base + lo) + i0,
            (float*)(base + po) + i0, i1 - i0, items, 0, 1, (float*)(base + so) + i0);
  }
}

/*
 * Forward: z = h table^T (h [rows, d], table [items, d], z [rows, items]) as duaf_gemm computes
 * it, then ce_rows over all items (first block, exponentials kept in z, row maxima in shift).
 * pack: ceil(items / VW) * VW * d floats for the table's panels, filled by both threads.
 * Needs d <= KC (one K slice). Returns 0, or -1 when the threads did not meet.
 */
int duaf_lce_forward(
    uint8_t* base, uint32_t ho, uint32_t eo, uint32_t zo, uint32_t to, uint32_t lo, uint32_t po,
    uint32_t so, int rows, int items, int d, uint32_t packo, uint32_t baro, int tid, int nt) {
  const float* h = (const float*)(base + ho);
  const float* e = (const float*)(base + eo);
  float* z = (float*)(base + zo);
  float* pack = (float*)(base + packo);
  uint32_t* bar = (uint32_t*)(base + baro);
  pack_table_panels(e, items, d, pack, tid, nt);
  if (spin_barrier(bar, nt)) return -1;
  int r0, r1;
  thread_rows(rows, tid, nt, &r0, &r1);
  lce_bands(base, h, pack, 0, z, to, lo, po, so, r0, r1, items, d);
  return 0;
}

/* The fused CE backward's arguments as pointers (dho / deo 0: that gradient is not wanted). */
typedef struct {
  const float *h, *e, *z, *lse, *w, *shift;
  const int32_t* targets;
  float *dh, *de;
  uint32_t* bar;
} lce_grad_ptrs;

static lce_grad_ptrs lce_grad_args(uint8_t* base, uint32_t ho, uint32_t eo, uint32_t zo,
                                   uint32_t to, uint32_t lo, uint32_t wo, uint32_t so, uint32_t dho,
                                   uint32_t deo, uint32_t baro) {
  lce_grad_ptrs p = {
      (const float*)(base + ho), (const float*)(base + eo), (const float*)(base + zo),
      (const float*)(base + lo), (const float*)(base + wo), (const float*)(base + so),
      (const int32_t*)(base + to), dho ? (float*)(base + dho) : 0,
      deo ? (float*)(base + deo) : 0, (uint32_t*)(base + baro)};
  return p;
}

/*
 * Backward of duaf_lce_forward: in blocks of KC items, the block's gradient w[r] (softmax -
 * onehot) from the kept exponentials (duaf_ce_block_grad's arithmetic) into a [rows x KC]
 * buffer, then dh (+)= G_blk table_blk on each thread's rows and dtable_blk = G_blk^T h on each
 * thread's share of the block's items. z is read once and left as it was. dho / deo 0: that
 * gradient is not wanted. gs: 2 * rows * KC floats (two buffers: while one thread still reads a
 * block, the other fills the next). Returns 0, or -1 when the threads did not meet.
 */
int duaf_lce_backward(
    uint8_t* base, uint32_t ho, uint32_t eo, uint32_t zo, uint32_t to, uint32_t lo, uint32_t wo,
    uint32_t so, uint32_t dho, uint32_t deo, int rows, int items, int d, uint32_t gso,
    uint32_t baro, int tid, int nt) {
  const lce_grad_ptrs p = lce_grad_args(base, ho, eo, zo, to, lo, wo, so, dho, deo, baro);
  const float *h = p.h, *e = p.e, *z = p.z, *lse = p.lse, *w = p.w, *shift = p.shift;
  const int32_t* targets = p.targets;
  float *dh = p.dh, *de = p.de;
  uint32_t* bar = p.bar;
  int r0, r1;
  thread_rows(rows, tid, nt, &r0, &r1);
  for (int j0 = 0, blk = 0; j0 < items; j0 += KC, blk++) {
    const int cols = items - j0 < KC ? items - j0 : KC;
    float* g = (float*)(base + gso) + (size_t)(blk & 1) * rows * KC;
    for (int r = r0; r < r1; r++) {
      ce_grad_kept_row(z + (size_t)r * items + j0, g + (size_t)r * KC, cols, targets[r] - j0, w[r],
                       shift[r], lse[r]);
    }
    /* dh's K slice blk: stored by the first, added by the rest, as in the whole product. */
    if (dh) {
      gemm_one(g, e + (size_t)j0 * d, dh, cols, 0, 0, KC, d, d, 1.0f, j0 > 0, r0, r1, 0, d, 0, 0,
               EPI_NONE, 0, 0);
    }
    if (!de) continue;
    if (spin_barrier(bar, nt)) return -1;
    gemm_one(g, h, de + (size_t)j0 * d, rows, 1, 0, KC, d, d, 1.0f, 0, cols * tid / nt,
             cols * (tid + 1) / nt, 0, d, 0, 0, EPI_NONE, 0, 0);
  }
  return 0;
}

/* ---- the cross-entropy in item blocks, streamed (no [rows x items] in memory) -------------- */

/* Logits of one band of rows a thread holds at a time, for the block's log-sum-exp (512 KiB). */
#define LCE_STREAM_BAND_BYTES (512u << 10)

/* Rows of the streamed forward's band for blocks of `block` items: a multiple of MB. */
static int stream_band(int block) {
  const int band = (int)(LCE_STREAM_BAND_BYTES / (4u * (unsigned)block)) / MB * MB;
  return band < MB ? MB : band;
}

/* Floats of scratch of the streamed cross-entropy: kind 0 its forward's a thread, 1 its
   backward's in all; 2 and 3 the same for the bf16 products (..._bf16, below). */
int duaf_lce_stream_scratch_floats(int rows, int block, int d, int kind) {
  const int panels = (block + VW - 1) / VW, dp = (d + 1) / 2, rp = (rows + 1) / 2;
  switch (kind) {
    case 0: return panels * VW * d + stream_band(block) * block;
    case 1: return 2 * rows * KC + 2 * KC * d; /* two gradient buffers, each thread's panels */
    case 2: return rows * dp + panels * VW * dp + stream_band(block) * block;
    default: /* h's pairs both ways, two blocks of pairs along rows, the gradient rows and their
                bf16, then each thread's panels and pairs along items */
      return d * rp + 2 * rp * KC + 16 + rows * dp + rows * KC + rows * (KC / 2) +
             2 * (KC * dp + (KC / 2) * d);
  }
}

/*
 * Forward of the chunked cross-entropy (core/ops/linear_ce.ts) in one call: for each block of
 * `block` items, z = h table_blk^T then crossEntropyBlock (no exponentials kept), with the bits of
 * those separate calls, but a band of rows at a time so that the logits stay in cache and never
 * fill a [rows x block] buffer. Each thread takes its rows (thread_rows) and packs each block's
 * panels itself (no barrier). scratch: duaf_lce_stream_scratch_floats(.., 0) floats a thread.
 * Returns 0 (the bf16 variant's signature).
 */
int duaf_lce_stream_forward(
    uint8_t* base, uint32_t ho, uint32_t eo, uint32_t to, uint32_t lo, uint32_t po, int rows,
    int items, int d, int block, uint32_t scratch, int tid, int nt) {
  const float* h = (const float*)(base + ho);
  const float* e = (const float*)(base + eo);
  const int32_t* targets = (const int32_t*)(base + to);
  float* lse = (float*)(base + lo);
  float* picked = (float*)(base + po);
  float* pack = (float*)(base + scratch) +
                (size_t)tid * duaf_lce_stream_scratch_floats(rows, block, d, 0);
  float* z = pack + (size_t)(block + VW - 1) / VW * VW * d;
  const int band = stream_band(block), chunk = table_chunk(d);
  int r0, r1;
  thread_rows(rows, tid, nt, &r0, &r1);
  for (int j0 = 0; j0 < items && r0 < r1; j0 += block) {
    const int cols = items - j0 < block ? items - j0 : block;
    pack_table_panels(e + (size_t)j0 * d, cols, d, pack, 0, 1);
    for (int i0 = r0; i0 < r1; i0 += band) {
      const int i1 = r1 - i0 < band ? r1 : i0 + band;
      for (int jc = 0; jc < cols; jc += chunk) {
        const int jn = cols - jc < chunk ? cols : jc + chunk;
        band_scores(h, i0, i1, pack, jc, jn, d, z + jc, (size_t)cols);
      }
      ce_rows(z, targets + i0, lse + i0, picked + i0, i1 - i0, cols, j0, j0 == 0, 0);
    }
  }
  return 0;
}

/*
 * Its backward: for each block of `block` items, in slices of KC items (the K slices of the
 * separate calls' dh product), the logits again (band_scores), turned in place into w[r]
 * (softmax - onehot) with crossEntropyBlockGrad's arithmetic, then dh (+)= G table_slice on each
 * thread's rows and, after a barrier, dtable_slice = G^T h on each thread's share of the slice's
 * items: the bits of the separate calls (gemm, crossEntropyBlockGrad, gemm, gemm), with two
 * [rows x KC] buffers in place of the block's [rows x block] logits. dho / deo 0: not wanted.
 * scratch: duaf_lce_stream_scratch_floats(.., 1). Returns 0, or -1 when the threads did not meet.
 */
int duaf_lce_stream_backward(
    uint8_t* base, uint32_t ho, uint32_t eo, uint32_t to, uint32_t lo, uint32_t wo, uint32_t dho,
    uint32_t deo, int rows, int items, int d, int block, uint32_t scratch, uint32_t baro, int tid,
    int nt) {
  const lce_grad_ptrs p = lce_grad_args(base, ho, eo, 0, to, lo, wo, 0, dho, deo, baro);
  const float *h = p.h, *e = p.e, *lse = p.lse, *w = p.w;
  const int32_t* targets = p.targets;
  float *dh = p.dh, *de = p.de;
  uint32_t* bar = p.bar;
  float* gs = (float*)(base + scratch);
  float* pack = gs + (size_t)2 * rows * KC + (size_t)tid * KC * d;
  int r0, r1;
  thread_rows(rows, tid, nt, &r0, &r1);
  int slice = 0;
  for (int j0 = 0; j0 < items; j0 += block) {
    const int bend = items - j0 < block ? items : j0 + block;
    for (int k0 = j0; k0 < bend; k0 += KC, slice++) {
      const int cols = bend - k0 < KC ? bend - k0 : KC;
      float* g = gs + (size_t)(slice & 1) * rows * KC;
      if (r0 < r1) {
        pack_table_panels(e + (size_t)k0 * d, cols, d, pack, 0, 1);
        band_scores(h, r0, r1, pack, 0, cols, d, g + (size_t)r0 * KC, KC);
        for (int r = r0; r < r1; r++)
          ce_grad_row(g + (size_t)r * KC, cols, targets[r] - k0, w[r], lse[r]);
        if (dh) {
          gemm_one(g, e + (size_t)k0 * d, dh, cols, 0, 0, KC, d, d, 1.0f, k0 > 0, r0, r1, 0, d, 0,
                   0, EPI_NONE, 0, 0);
        }
      }
      if (!de) continue;
      if (spin_barrier(bar, nt)) return -1;
      gemm_one(g, h, de + (size_t)k0 * d, rows, 1, 0, KC, d, d, 1.0f, 0, cols * tid / nt,
               cols * (tid + 1) / nt, 0, d, 0, 0, EPI_NONE, 0, 0);
    }
  }
  return 0;
}

/* ---- the cross-entropy's products in bfloat16 (ceProducts "bf16") --------------------------- */

/*
 * duaf_lce_forward and duaf_lce_backward with their three products on bfloat16 inputs: each
 * operand rounded to bf16 (the instruction's round to nearest even), the products summed in
 * float32 by VDPBF16PS, two k at a time (a pair of bf16 in each 32-bit lane). AVX-512 BF16 runs
 * those pairs at about twice the rate of float32 FMAs. The exponentials, the log-sum-exp and the
 * gradient rows stay float32 (duaf_lce_forward's arithmetic); only the products round differently,
 * so this is a choice of precision (TrainConfig.ceProducts), not a speed trick with the same bits.
 *
 * Layouts (u32 = a pair of bf16, the lower k in the low half; an odd count padded with 0):
 *   forward: table panels [panel][d / 2][VW items]; h rows [rows][d / 2].
 *   backward: table pairs along items [items / 2][d]; h pairs along rows, transposed,
 *   [d][rows / 2]; per item block, the gradient rows [rows][KC / 2] (for dh) and their pairs
 *   along rows [rows / 2][KC] (for dtable, both threads' rows: two buffers, as the float32
 *   backward's).
 */
#ifdef HAS_BF16
#define BF_NV 4 /* vectors of a register tile's row */

/* n floats as bf16 into out (an odd n's pair completed with 0 at out[n]). */
static void to_bf16(const float* x, uint16_t* out, int n) {
  int i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256((__m256i*)(out + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
    const __m256i v = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + i));
    _mm256_mask_storeu_epi16(out + i, m, v);
  }
  if (n & 1) out[n] = 0;
}

/* out[j] = the pair (a[j], b[j]) of two bf16 rows (b null: zeros), j < n. */
static void pair_rows(const uint16_t* a, const uint16_t* b, uint32_t* out, int n) {
  int j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m512i lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(a + j)));
    const __m512i hi = b ? _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(b + j)))
                         : _mm512_setzero_si512();
    _mm512_storeu_si512(out + j, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
  }
  for (; j < n; j++) out[j] = (uint32_t)a[j] | ((uint32_t)(b ? b[j] : 0) << 16);
}

/*
 * A rows x (nv vectors) tile over kp pairs: acc[r][v] = sum over q of a[r * ars + q] . b[q * bq +
 * v * bv + 0..15], pair by pair. mode 0 stores it at c (row r at c + r * ldc, the last vector
 * masked by lastm), 1 adds it there, 2 stores it transposed: lane l of acc[r][v] to
 * c[(v * 16 + l) * ldc + r] for the lanes of lastm's count in the last vector.
 */
static inline __attribute__((always_inline)) void bf16_tile(
    int rows, int nv, const uint32_t* a, size_t ars, int kp, const uint32_t* b, size_t bq,
    size_t bv, float* c, size_t ldc, __mmask16 lastm, int mode) {
  __m512 acc[MB][BF_NV];
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < nv; v++) acc[r][v] = _mm512_setzero_ps();
  for (int q = 0; q < kp; q++) {
    __m512bh bvec[BF_NV];
    for (int v = 0; v < nv; v++)
      bvec[v] = (__m512bh)_mm512_loadu_si512(b + (size_t)q * bq + (size_t)v * bv);
    for (int r = 0; r < rows; r++) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[(size_t)r * ars + q]);
      for (int v = 0; v < nv; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bvec[v]);
    }
  }
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < nv; v++) {
      const __mmask16 m = v == nv - 1 ? lastm : (__mmask16)0xffff;
      if (mode == 2) {
        float lane[16];
        _mm512_storeu_ps(lane, acc[r][v]);
        for (int l = 0; l < 16 && (m >> l & 1); l++) c[((size_t)v * 16 + l) * ldc + r] = lane[l];
        continue;
      }
      float* cr = c + (size_t)r * ldc + (size_t)v * 16;
      const __m512 x = mode == 1 ? _mm512_add_ps(_mm512_maskz_loadu_ps(m, cr), acc[r][v]) : acc[r][v];
      _mm512_mask_storeu_ps(cr, m, x);
    }
}

/* bf16_tile with rows and nv as constants (each count its own register tile). */
static void bf16_block(int rows, int nv, const uint32_t* a, size_t ars, int kp, const uint32_t* b,
                       size_t bq, size_t bv, float* c, size_t ldc, __mmask16 lastm, int mode) {
#define BT(R, N) bf16_tile(R, N, a, ars, kp, b, bq, bv, c, ldc, lastm, mode)
#define BT_ROWS(N)                                     \
  switch (rows) {                                      \
    case 6: BT(6, N); break;                           \
    case 5: BT(5, N); break;                           \
    case 4: BT(4, N); break;                           \
    case 3: BT(3, N); break;                           \
    case 2: BT(2, N); break;                           \
    default: BT(1, N); break;                          \
  }
  switch (nv) {
    case 4: BT_ROWS(4); break;
    case 3: BT_ROWS(3); break;
    case 2: BT_ROWS(2); break;
    default: BT_ROWS(1); break;
  }
#undef BT_ROWS
#undef BT
}

/* Panels [p0, p1) of items [0, n) of e (rows of d) as bf16 pairs: [panel][d / 2][VW items], the
   items past n and an odd d's last half zero. */
static void bf16_panels(const float* e, int n, int d, uint32_t* pack, int p0, int p1) {
  const int dp = (d + 1) / 2;
  uint16_t row[KC + 2];
  for (int p = p0; p < p1; p++) {
    uint32_t* panel = pack + (size_t)p * dp * VW;
    for (int jj = 0; jj < VW; jj++) {
      const int j = p * VW + jj;
      if (j < n) to_bf16(e + (size_t)j * d, row, d);
      else memset(row, 0, sizeof(uint16_t) * 2 * dp);
      for (int q = 0; q < dp; q++)
        panel[(size_t)q * VW + jj] = (uint32_t)row[2 * q] | ((uint32_t)row[2 * q + 1] << 16);
    }
  }
}

/* The mask of a vector's first n lanes (n >= 16: all). */
static inline __mmask16 lanes(int n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u); }

#ifdef HAS_AMX
static int amx_product(const uint32_t* a, size_t ars, int i0, int i1, int kp, const uint32_t* b,
                       size_t bq, size_t bv, int n, float* c, size_t ldc, int mode);
#endif

/* c rows [i0, i1) x columns [0, n) = a b over kp pairs, in tiles of MB rows by BF_NV vectors
   (AMX tiles instead where the CPU has them and the process may use them: amx_usable). */
static void bf16_product(const uint32_t* a, size_t ars, int i0, int i1, int kp, const uint32_t* b,
                         size_t bq, size_t bv, int n, float* c, size_t ldc, int mode) {
#ifdef HAS_AMX
  if (amx_usable() && amx_product(a, ars, i0, i1, kp, b, bq, bv, n, c, ldc, mode) == 0) return;
#endif
  for (int i = i0; i < i1; i += MB) {
    const int rows = i1 - i < MB ? i1 - i : MB;
    for (int j = 0; j < n; j += BF_NV * 16) {
      const int w = n - j < BF_NV * 16 ? n - j : BF_NV * 16;
      const int nv = (w + 15) / 16;
      float* cij = mode == 2 ? c + (size_t)j * ldc + i : c + (size_t)i * ldc + j;
      bf16_block(rows, nv, a + (size_t)i * ars, ars, kp, b + (size_t)(j / 16) * bv, bq, bv, cij,
                 ldc, lanes(w - (nv - 1) * 16), mode);
    }
  }
}

#ifdef HAS_AMX
/*
 * bf16_product on AMX tiles: C blocks of 16 rows by 32 columns (two 16 x 16 float32 tiles), each
 * the sum over its pairs of TDPBF16PS on A's 16 rows x 16 pairs and B's 16 pairs x 16 columns (a
 * B panel's rows as they are packed). Where a block of A or B would read past its rows or pairs,
 * it is first copied into a zero-padded buffer; columns past n are computed and not stored. Each
 * element's sum runs over the same pairs in the same order whatever the rows' split between
 * threads, so one thread and two give the same bits; not the bits of the VDPBF16PS tile (the
 * tile unit rounds its sums its own way).
 */
typedef struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} amx_config;

/* Tiles 0-1: C; 2: A; 3-4: B. Every tile 16 rows of 64 bytes. */
static void amx_configure(void) {
  amx_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int t = 0; t < 5; t++) cfg.colsb[t] = 64, cfg.rows[t] = 16;
  _tile_loadconfig(&cfg);
}

/* A 16 x 16 float32 tile t's values where mode says: columns [j, j + w) of rows [i, i + rows). */
static void amx_finish(const float* t, int rows, int w, float* c, size_t ldc, int i, int j,
                       int mode) {
  for (int r = 0; r < rows; r++) {
    const float* tr = t + r * 16;
    if (mode == 2) {
      for (int l = 0; l < w; l++) c[(size_t)(j + l) * ldc + i + r] = tr[l];
      continue;
    }
    float* cr = c + (size_t)(i + r) * ldc + j;
    if (mode == 1)
      for (int l = 0; l < w; l++) cr[l] = cr[l] + tr[l];
    else
      memcpy(cr, tr, sizeof(float) * w);
  }
}

/* Returns 0, or -1 (nothing written) where its padding buffers could not be allocated. */
static int amx_product(const uint32_t* a, size_t ars, int i0, int i1, int kp, const uint32_t* b,
                       size_t bq, size_t bv, int n, float* c, size_t ldc, int mode) {
  const int kt = (kp + 15) / 16, kpp = kt * 16, panels = (n + 15) / 16;
  /* B with its pairs padded to whole tiles, where kp is not: [panel][kpp][16]. */
  uint32_t* bpad = kp != kpp ? (uint32_t*)calloc((size_t)panels * kpp * 16, sizeof(uint32_t)) : 0;
  uint32_t* apad = (uint32_t*)malloc((size_t)16 * kpp * sizeof(uint32_t));
  if (!apad || (kp != kpp && !bpad)) {
    free(apad);
    free(bpad);
    return -1;
  }
  if (bpad)
    for (int p = 0; p < panels; p++)
      for (int q = 0; q < kp; q++)
        memcpy(bpad + ((size_t)p * kpp + q) * 16, b + (size_t)q * bq + (size_t)p * bv, 64);
  const uint32_t* bsrc = bpad ? bpad : b;
  const size_t bqs = bpad ? 16 : bq, bvs = bpad ? (size_t)kpp * 16 : bv;
  float t0[256], t1[256];
  amx_configure();
  for (int i = i0; i < i1; i += 16) {
    const int rows = i1 - i < 16 ? i1 - i : 16;
    const uint32_t* ab = a + (size_t)i * ars;
    size_t as = ars;
    if (rows < 16 || kp != kpp) {
      memset(apad, 0, (size_t)16 * kpp * sizeof(uint32_t));
      for (int r = 0; r < rows; r++) memcpy(apad + (size_t)r * kpp, ab + (size_t)r * ars, 4 * (size_t)kp);
      ab = apad;
      as = (size_t)kpp;
    }
    for (int p = 0; p < panels; p += 2) {
      const int two = p + 1 < panels;
      const uint32_t* b0 = bsrc + (size_t)p * bvs;
      const uint32_t* b1 = two ? b0 + bvs : b0;
      _tile_zero(0);
      _tile_zero(1);
      for (int k = 0; k < kt; k++) {
        _tile_loadd(2, ab + (size_t)k * 16, (long)(as * 4));
        _tile_loadd(3, b0 + (size_t)k * 16 * bqs, (long)(bqs * 4));
        _tile_dpbf16ps(0, 2, 3);
        if (two) {
          _tile_loadd(4, b1 + (size_t)k * 16 * bqs, (long)(bqs * 4));
          _tile_dpbf16ps(1, 2, 4);
        }
      }
      _tile_stored(0, t0, 64);
      amx_finish(t0, rows, n - p * 16 < 16 ? n - p * 16 : 16, c, ldc, i, p * 16, mode);
      if (two) {
        _tile_stored(1, t1, 64);
        const int j = (p + 1) * 16;
        amx_finish(t1, rows, n - j < 16 ? n - j : 16, c, ldc, i, j, mode);
      }
    }
  }
  _tile_release();
  free(apad);
  free(bpad);
  return 0;
}
#endif
#endif

#ifdef HAS_BF16
/* One KC slice of a bf16 backward: the gradient rows' bf16 `gp` [rows][KC / 2] (this thread's
   rows [r0, r1) filled), `gq` their pairs along rows, `ep` the slice's table pairs along items
   [KC / 2][d], `hpt` h's pairs along rows, transposed [d][rp]. */
typedef struct {
  const uint32_t* gp;
  uint32_t* gq;
  const uint32_t* ep;
  const uint32_t* hpt;
  int r0, r1, rp, cols, d;
} bf16_slice;

/* A slice's two gradient products: this thread's rows' pairs along rows into gq, dh (+)= G
   table_slice on its rows (dh_add: added, else stored), then after the barrier de (the slice's
   rows of dtable) = G^T h on its share of the slice's items, stored transposed. dh or de null:
   not wanted. Returns 0, or -1 when the threads did not meet. */
static int bf16_slice_products(const bf16_slice* s, float* dh, int dh_add, float* de,
                               uint32_t* bar, int tid, int nt) {
  const int d = s->d, cols = s->cols;
  for (int r = s->r0; r < s->r1; r += 2) {
    pair_rows((const uint16_t*)(s->gp + (size_t)r * (KC / 2)),
              r + 1 < s->r1 ? (const uint16_t*)(s->gp + (size_t)(r + 1) * (KC / 2)) : 0,
              s->gq + (size_t)(r / 2) * KC, cols);
  }
  if (dh) {
    bf16_product(s->gp, KC / 2, s->r0, s->r1, (cols + 1) / 2, s->ep, (size_t)d, 16, d, dh,
                 (size_t)d, dh_add);
  }
  if (!de) return 0;
  if (spin_barrier(bar, nt)) return -1;
  const int ja = cols * tid / nt, jb = cols * (tid + 1) / nt;
  if (jb > ja) {
    bf16_product(s->hpt, (size_t)s->rp, 0, d, s->rp, s->gq + ja, KC, 16, jb - ja,
                 de + (size_t)ja * d, (size_t)d, 2);
  }
  return 0;
}
#endif

/* 1 where this build has the bf16 products (AVX-512 BF16), else 0. */
int duaf_cpu_has_bf16(void) {
#ifdef HAS_BF16
  return 1;
#else
  return 0;
#endif
}

/* 1 where the bf16 products run on AMX tiles (amx_usable), else 0. */
int duaf_cpu_bf16_amx(void) {
#ifdef HAS_AMX
  return amx_usable();
#else
  return 0;
#endif
}

/*
 * duaf_lce_forward with the logits from bf16 products. pack: lceBf16PackBytes (the table's
 * panels, then h's rows as pairs). Returns 0, -1 when the threads did not meet, -2 without
 * AVX-512 BF16.
 */
int duaf_lce_forward_bf16(
    uint8_t* base, uint32_t ho, uint32_t eo, uint32_t zo, uint32_t to, uint32_t lo, uint32_t po,
    uint32_t so, int rows, int items, int d, uint32_t packo, uint32_t baro, int tid, int nt) {
#ifdef HAS_BF16
  const float* h = (const float*)(base + ho);
  const float* e = (const float*)(base + eo);
  float* z = (float*)(base + zo);
  const int dp = (d + 1) / 2, panels = (items + VW - 1) / VW;
  uint32_t* pack = (uint32_t*)(base + packo);
  uint32_t* hp = pack + (size_t)panels * dp * VW;
  uint32_t* bar = (uint32_t*)(base + baro);
  bf16_panels(e, items, d, pack, panels * tid / nt, panels * (tid + 1) / nt);
  int r0, r1;
  thread_rows(rows, tid, nt, &r0, &r1);
  for (int r = r0; r < r1; r++) to_bf16(h + (size_t)r * d, (uint16_t*)(hp + (size_t)r * dp), d);
  if (spin_barrier(bar, nt)) return -1;
  lce_bands(base, h, pack, hp, z, to, lo, po, so, r0, r1, items, d);
  return 0;
#else
  (void)base, (void)ho, (void)eo, (void)zo, (void)to, (void)lo, (void)po, (void)so, (void)rows;
  (void)items, (void)d, (void)packo, (void)baro, (void)tid, (void)nt;
  return -2;
#endif
}

/*
 * duaf_lce_backward with dh and dtable from bf16 products: per block of KC items the gradient
 * rows (duaf_lce_backward's float32 arithmetic) rounded to bf16, dh (+)= G_blk table_blk on each
 * thread's rows, and dtable_blk^T = h^T G_blk on each thread's share of the block's items, stored
 * transposed. grads: lceBf16GradBytes. Returns 0, -1 when the threads did not meet, -2 without
 * AVX-512 BF16.
 */
int duaf_lce_backward_bf16(
    uint8_t* base, uint32_t ho, uint32_t eo, uint32_t zo, uint32_t to, uint32_t lo, uint32_t wo,
    uint32_t so, uint32_t dho, uint32_t deo, int rows, int items, int d, uint32_t gso,
    uint32_t baro, int tid, int nt) {
#ifdef HAS_BF16
  const lce_grad_ptrs p = lce_grad_args(base, ho, eo, zo, to, lo, wo, so, dho, deo, baro);
  const float *h = p.h, *e = p.e, *z = p.z, *lse = p.lse, *w = p.w, *shift = p.shift;
  const int32_t* targets = p.targets;
  float *dh = p.dh, *de = p.de;
  uint32_t* bar = p.bar;
  const int ip = (items + 1) / 2, rp = (rows + 1) / 2;
  /* Scratch, as lceBf16GradBytes lays it out. */
  uint32_t* ep = (uint32_t*)(base + gso);           /* [ip][d] */
  uint32_t* hpt = ep + (size_t)ip * d;              /* [d][rp] */
  uint32_t* gp = hpt + (size_t)d * rp;              /* [rows][KC / 2] */
  uint32_t* gq0 = gp + (size_t)rows * (KC / 2);     /* 2 x [rp][KC], then 16 of padding */
  uint16_t ra[KC + 2], rb[KC + 2];
  float ga[KC];
  for (int q = ip * tid / nt; q < ip * (tid + 1) / nt; q++) {
    to_bf16(e + (size_t)2 * q * d, ra, d);
    if (2 * q + 1 < items) to_bf16(e + (size_t)(2 * q + 1) * d, rb, d);
    pair_rows(ra, 2 * q + 1 < items ? rb : 0, ep + (size_t)q * d, d);
  }
  for (int p = rp * tid / nt; p < rp * (tid + 1) / nt; p++) {
    to_bf16(h + (size_t)2 * p * d, ra, d);
    if (2 * p + 1 < rows) to_bf16(h + (size_t)(2 * p + 1) * d, rb, d);
    for (int c = 0; c < d; c++)
      hpt[(size_t)c * rp + p] = (uint32_t)ra[c] | ((uint32_t)(2 * p + 1 < rows ? rb[c] : 0) << 16);
  }
  if (spin_barrier(bar, nt)) return -1;
  int r0, r1;
  thread_rows(rows, tid, nt, &r0, &r1); /* r0 even: row pairs never straddle the threads */
  for (int j0 = 0, blk = 0; j0 < items; j0 += KC, blk++) {
    const int cols = items - j0 < KC ? items - j0 : KC;
    uint32_t* gq = gq0 + (size_t)(blk & 1) * rp * KC;
    for (int r = r0; r < r1; r++) {
      ce_grad_kept_row(z + (size_t)r * items + j0, ga, cols, targets[r] - j0, w[r], shift[r],
                       lse[r]);
      to_bf16(ga, (uint16_t*)(gp + (size_t)r * (KC / 2)), cols);
    }
    const bf16_slice sl = {gp, gq, ep + (size_t)(j0 / 2) * d, hpt, r0, r1, rp, cols, d};
    if (bf16_slice_products(&sl, dh, j0 > 0, de ? de + (size_t)j0 * d : 0, bar, tid, nt)) return -1;
  }
  return 0;
#else
  (void)base, (void)ho, (void)eo, (void)zo, (void)to, (void)lo, (void)wo, (void)so, (void)dho;
  (void)deo, (void)rows, (void)items, (void)d, (void)gso, (void)baro, (void)tid, (void)nt;
  return -2;
#endif
}

/*
 * duaf_lce_stream_forward with the logits from bf16 products (duaf_lce_forward_bf16's): each
 * thread's rows of h as pairs, each block's panels as bf16. scratch:
 * duaf_lce_stream_scratch_floats(.., 2) floats a thread. Returns 0, -2 without AVX-512 BF16.
 */
int duaf_lce_stream_forward_bf16(
    uint8_t* base, uint32_t ho, uint32_t eo, uint32_t to, uint32_t lo, uint32_t po, int rows,
    int items, int d, int block, uint32_t scratch, int tid, int nt) {
#ifdef HAS_BF16
  const float* h = (const float*)(base + ho);
  const float* e = (const float*)(base + eo);
  const int32_t* targets = (const int32_t*)(base + to);
  float* lse = (float*)(base + lo);
  float* picked = (float*)(base + po);
  const int dp = (d + 1) / 2;
  uint32_t* hp = (uint32_t*)(base + scratch) +
                 (size_t)tid * duaf_lce_stream_scratch_floats(rows, block, d, 2);
  uint32_t* pack = hp + (size_t)rows * dp;
  float* z = (float*)(pack + (size_t)(block + VW - 1) / VW * VW * dp);
  const int band = stream_band(block), chunk = table_chunk(d);
  int r0, r1;
  thread_rows(rows, tid, nt, &r0, &r1);
  for (int r = r0; r < r1; r++) to_bf16(h + (size_t)r * d, (uint16_t*)(hp + (size_t)r * dp), d);
  for (int j0 = 0; j0 < items && r0 < r1; j0 += block) {
    const int cols = items - j0 < block ? items - j0 : block;
    bf16_panels(e + (size_t)j0 * d, cols, d, pack, 0, (cols + VW - 1) / VW);
    for (int i0 = r0; i0 < r1; i0 += band) {
      const int i1 = r1 - i0 < band ? r1 : i0 + band;
      for (int jc = 0; jc < cols; jc += chunk) {
        const int jn = cols - jc < chunk ? cols : jc + chunk;
        bf16_product(hp + (size_t)i0 * dp, (size_t)dp, 0, i1 - i0, dp, pack + (size_t)jc * dp, VW,
                     (size_t)dp * VW, jn - jc, z + jc, (size_t)cols, 0);
      }
      ce_rows(z, targets + i0, lse + i0, picked + i0, i1 - i0, cols, j0, j0 == 0, 0);
    }
  }
  return 0;
#else
  (void)base, (void)ho, (void)eo, (void)to, (void)lo, (void)po, (void)rows, (void)items, (void)d;
  (void)block, (void)scratch, (void)tid, (void)nt;
  return -2;
#endif
}

/*
 * duaf_lce_stream_backward with the three products on bf16 operands: per slice of KC items the
 * logits again (the forward's bf16 products, so the same values), the gradient rows in float32
 * (crossEntropyBlockGrad's arithmetic) rounded to bf16, dh (+)= G table_slice on each thread's
 * rows, and dtable_slice^T = h^T G on each thread's share of the slice's items, stored transposed
 * (duaf_lce_backward_bf16's products). scratch: duaf_lce_stream_scratch_floats(.., 3). Returns 0,
 * -1 when the threads did not meet, -2 without AVX-512 BF16.
 */
int duaf_lce_stream_backward_bf16(
    uint8_t* base, uint32_t ho, uint32_t eo, uint32_t to, uint32_t lo, uint32_t wo, uint32_t dho,
    uint32_t deo, int rows, int items, int d, int block, uint32_t scratch, uint32_t baro, int tid,
    int nt) {
#ifdef HAS_BF16
  const lce_grad_ptrs p = lce_grad_args(base, ho, eo, 0, to, lo, wo, 0, dho, deo, baro);
  const float *h = p.h, *e = p.e, *lse = p.lse, *w = p.w;
  const int32_t* targets = p.targets;
  float *dh = p.dh, *de = p.de;
  uint32_t* bar = p.bar;
  const int dp = (d + 1) / 2, rp = (rows + 1) / 2;
  /* Scratch, as duaf_lce_stream_scratch_floats(.., 3) counts it. */
  uint32_t* hpt = (uint32_t*)(base + scratch);        /* [d][rp] */
  uint32_t* gq0 = hpt + (size_t)d * rp;               /* 2 x [rp][KC], then 16 of padding */
  uint32_t* hp = gq0 + (size_t)2 * rp * KC + 16;      /* [rows][dp] */
  float* g = (float*)(hp + (size_t)rows * dp);         /* [rows][KC] */
  uint32_t* gp = (uint32_t*)(g + (size_t)rows * KC);   /* [rows][KC / 2] */
  uint32_t* pack = gp + (size_t)rows * (KC / 2) + (size_t)tid * (KC * dp + (KC / 2) * d);
  uint32_t* ep = pack + (size_t)KC * dp;               /* [KC / 2][d] */
  uint16_t ra[KC + 2], rb[KC + 2];
  for (int p = rp * tid / nt; p < rp * (tid + 1) / nt; p++) {
    to_bf16(h + (size_t)2 * p * d, ra, d);
    if (2 * p + 1 < rows) to_bf16(h + (size_t)(2 * p + 1) * d, rb, d);
    for (int c = 0; c < d; c++)
      hpt[(size_t)c * rp + p] = (uint32_t)ra[c] | ((uint32_t)(2 * p + 1 < rows ? rb[c] : 0) << 16);
  }
  int r0, r1;
  thread_rows(rows, tid, nt, &r0, &r1); /* r0 even: row pairs never straddle the threads */
  for (int r = r0; r < r1; r++) to_bf16(h + (size_t)r * d, (uint16_t*)(hp + (size_t)r * dp), d);
  if (spin_barrier(bar, nt)) return -1;
  int slice = 0;
  for (int j0 = 0; j0 < items; j0 += block) {
    const int bend = items - j0 < block ? items : j0 + block;
    for (int k0 = j0; k0 < bend; k0 += KC, slice++) {
      const int cols = bend - k0 < KC ? bend - k0 : KC;
      const int cp = (cols + 1) / 2;
      uint32_t* gq = gq0 + (size_t)(slice & 1) * rp * KC;
      if (r0 < r1) {
        const float* es = e + (size_t)k0 * d;
        bf16_panels(es, cols, d, pack, 0, (cols + VW - 1) / VW);
        for (int q = 0; q < cp; q++) {
          to_bf16(es + (size_t)2 * q * d, ra, d);
          if (2 * q + 1 < cols) to_bf16(es + (size_t)(2 * q + 1) * d, rb, d);
          pair_rows(ra, 2 * q + 1 < cols ? rb : 0, ep + (size_t)q * d, d);
        }
        bf16_product(hp + (size_t)r0 * dp, (size_t)dp, 0, r1 - r0, dp, pack, VW, (size_t)dp * VW,
                     cols, g + (size_t)r0 * KC, KC, 0);
        for (int r = r0; r < r1; r++) {
          ce_grad_row(g + (size_t)r * KC, cols, targets[r] - k0, w[r], lse[r]);
          to_bf16(g + (size_t)r * KC, (uint16_t*)(gp + (size_t)r * (KC / 2)), cols);
        }
      }
      const bf16_slice sl = {gp, gq, ep, hpt, r0, r1, rp, cols, d};
      if (bf16_slice_products(&sl, dh, k0 > 0, de ? de + (size_t)k0 * d : 0, bar, tid, nt)) {
        return -1;
      }
    }
  }
  return 0;
#else
  (void)base, (void)ho, (void)eo, (void)to, (void)lo, (void)wo, (void)dho, (void)deo, (void)rows;
  (void)items, (void)d, (void)block, (void)scratch, (void)baro, (void)tid, (void)nt;
  return -2;
#endif
}

/* Rows a thread ranks at a time, and the scores of one table chunk (LCE_CHUNK_FLOATS) they fill. */
#define RANK_BAND 48

/* Columns of row x scoring at least s (a comparison per column: exact in any order). */
static int32_t count_at_least(const float* x, int n, float s) {
  int32_t count = 0;
  int c = 0;
#if defined(__AVX512F__)
  const __m512 sv = _mm512_set1_ps(s);
  for (; c + 16 <= n; c += 16)
    count += __builtin_popcount(_mm512_cmp_ps_mask(_mm512_loadu_ps(x + c), sv, _CMP_GE_OQ));
#endif
  for (; c < n; c++) count += x[c] >= s;
  return count;
}

/* One element of u table^T with the GEMM's operations: an accumulator from 0, MADD in k order. */
static inline float score_of(const float* u, const float* e, int d) {
  float acc = 0.0f;
  for (int k = 0; k < d; k++) acc = MADD(u[k], e[k], acc);
  return acc;
}

/*
 * Full-ranking evaluation without the [rows x items] scores: duaf_rank_rows's counts over the
 * scores u table^T (u [rows, d], table [items, d]) as duaf_gemm computes them. Each thread takes
 * its rows RANK_BAND at a time: their targets' scores first (score_of: the same operations, so
 * the same bits), then table chunk by chunk the band's scores into a buffer that stays in cache,
 * counted as they come; excluded columns are rescored one by one. pack: the table's panels as
 * duaf_lce_forward's; band: RANK_BAND * chunk floats a thread. Needs d <= KC. Returns
 * duaf_rank_rows's first bad index, else -1; -2 when the threads did not meet.
 */
int duaf_rank_scores(
    uint8_t* base, uint32_t uo, uint32_t eo, uint32_t to, uint32_t exo, uint32_t exc, uint32_t oo,
    int rows, int items, int d, uint32_t packo, uint32_t bando, int packed, uint32_t baro, int tid,
    int nt) {
  const float* u = (const float*)(base + uo);
  const float* e = (const float*)(base + eo);
  const int32_t* targets = (const int32_t*)(base + to);
  const int32_t* ex_off = (const int32_t*)(base + exo);
  const int32_t* ex_cols = (const int32_t*)(base + exc);
  int32_t* out = (int32_t*)(base + oo);
  float* pack = (float*)(base + packo);
  uint32_t* bar = (uint32_t*)(base + baro);
  /* Both threads check the same indices, so both return before the barrier or neither does. */
  for (int r = 0; r < rows; r++)
    if ((uint32_t)targets[r] >= (uint32_t)items) return r;
  for (int x = 0; x < ex_off[rows]; x++)
    if ((uint32_t)ex_cols[x] >= (uint32_t)items) return rows + x;
  /* packed: pack holds this table's panels from an earlier call (the same table, unchanged). */
  if (!packed) {
    pack_table_panels(e, items, d, pack, tid, nt);
    if (spin_barrier(bar, nt)) return -2;
  }
  int r0, r1;
  thread_rows(rows, tid, nt, &r0, &r1);
  const int chunk = table_chunk(d);
  float* z = (float*)(base + bando) + (size_t)tid * RANK_BAND * chunk;
  float sv[RANK_BAND];
  for (int i0 = r0; i0 < r1; i0 += RANK_BAND) {
    const int i1 = r1 - i0 < RANK_BAND ? r1 : i0 + RANK_BAND;
    for (int r = i0; r < i1; r++) {
      sv[r - i0] = score_of(u + (size_t)r * d, e + (size_t)targets[r] * d, d);
      out[r] = -1; /* the target itself is counted below */
    }
    for (int jc = 0; jc < items; jc += chunk) {
      const int n = items - jc < chunk ? items - jc : chunk;
      band_scores(u, i0, i1, pack, jc, jc + n, d, z, (size_t)n);
      for (int r = i0; r < i1; r++) out[r] += count_at_least(z + (size_t)(r - i0) * n, n, sv[r - i0]);
    }
    for (int r = i0; r < i1; r++) {
      const int32_t t = targets[r];
      for (int x = ex_off[r]; x < ex_off[r + 1]; x++) {
        const int32_t c = ex_cols[x];
        if (c != t && score_of(u + (size_t)r * d, e + (size_t)c * d, d) >= sv[r - i0]) out[r]--;
      }
    }
  }
  return -1;
}

/*
 * A product's K slices [p0, p1) (of KC each), for a product split across the threads by K: with
 * parts_o 0 into C as duaf_gemm would (the first slice stored when p0 is 0 and beta 0, the rest
 * added), else each slice's alpha * accumulator into its own [m x n] block at parts_o, which
 * duaf_gemm_add_parts then adds into C in slice order: every element gets the whole product's
 * operations in its order. No bias; one item.
 */
void duaf_gemm_slices(
    uint8_t* base, uint32_t ao, uint32_t bo, uint32_t co, int m, int n, int k, int trans_a,
    int trans_b, int lda, int ldb, int ldc, float alpha, int beta, int p0, int p1,
    uint32_t parts_o, uint32_t scratch) {
  gemm_slices((const float*)(base + ao), (const float*)(base + bo), (float*)(base + co), k,
              trans_a, trans_b, lda, ldb, ldc, alpha, beta, 0, m, 0, n, (float*)(base + scratch), 0,
              p0, p1, parts_o ? (float*)(base + parts_o) : 0, n, EPI_NONE, 0, 0);
}

/* C = C + part_q for each of `count` [m x n] blocks at parts_o, in order. */
void duaf_gemm_add_parts(uint8_t* base, uint32_t co, uint32_t parts_o, int m, int n, int ldc,
                         int count) {
  float* c = (float*)(base + co);
  const float* parts = (const float*)(base + parts_o);
  for (int q = 0; q < count; q++)
    for (int i = 0; i < m; i++) {
      float* restrict ci = c + (size_t)i * ldc;
      const float* restrict pi = parts + ((size_t)q * m + i) * n;
      for (int j = 0; j < n; j++) ci[j] = ci[j] + pi[j];
    }
}

int duaf_cpu_abi(void) { return ABI_VERSION; }

/* Floats per vector in the GEMM's register tile: 16 with AVX-512, 8 with AVX2, 1 without. */
int duaf_cpu_gemm_width(void) { return VW; }
