// Bidirectional attention for bfloat16 CPU tensors: out = softmax(q k^T scale) v.
//
// The matrix products run on ATen's oneDNN batch-reduce GEMM (at::native::cpublas::brgemm,
// bf16 x bf16 -> fp32): on AMX tiles where the CPU has AMX-BF16, else on AVX512-BF16 dot products
// (vdpbf16ps; e.g. AMD Zen 4/5, Intel Cooper Lake). oneDNN picks that code path itself; both take
// the same operands. B operands are written in VNNI layout by AVX-512 gathers; the softmax, its
// backward and the bf16 roundings are AVX-512 loops over rows that stay in cache. One thread owns
// one (batch, head) at a time, so the N x N scores never reach memory as a tensor.
//
// Forward, per block of kBlockM query rows: S = Q K^T (fp32), m = rowmax(scale S),
// P~ = exp(scale S - m) rounded to bf16, l = rowsum(exp(scale S - m)), O = (P~ V) / l;
// lse = m + log(l) is kept for the backward (float32 [B, H, N]).
// Backward, FlashAttention-2's formulas on the whole head: P = exp(scale S - lse),
// dP = dO V^T, dS = scale P (dP - delta) with delta = rowsum(dO * O), then dQ = dS K,
// dK = dS^T Q, dV = P^T dO (P and dS rounded to bf16 before their products).
// Padding: key tiles are kTile wide and every reduction dimension over tokens is a multiple of
// kKAlign; padded rows and columns hold zeros, so they add nothing.
//
// Gate: attention_cpu_supported() = the CPU runs our AVX512-BF16 loops, and a one-time self-test
// (at first use) of small brgemms on operands packed by this file's own VNNI writers matches a
// float32 product. That is all the kernel needs; it does not ask for AMX.
#include "attention/attention_cpu.h"

#include "common/avx512_bf16.h"

#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>
#include <immintrin.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace ssast {
namespace {

using at::BFloat16;
namespace cpublas = at::native::cpublas;
using avx512::load_bf16;
using avx512::store_bf16;
using avx512::tail_mask;

constexpr int64_t kTile = 64;    // key columns per packed B tile (and head-dim tile width)
constexpr int64_t kBlockM = 64;  // query rows per block
// Reduction dims over tokens are zero-padded to a multiple of this (VNNI pairs need K even; and
// brgemm on AMX runs about 3x slower when K / 2, the number of row pairs, is odd: K = 514 vs 516).
constexpr int64_t kKAlign = 4;

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// exp(x) for x <= 0 (and -inf): x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial, 2^n by scalef.
// Within 2 ulp of std::exp; arguments below -87.3 flush to 0.
SSAST_AVX512 inline __m512 exp_ps(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.3f);
  const __mmask16 tiny = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_max_ps(x, lo);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_maskz_scalef_ps(static_cast<__mmask16>(~tiny), p, n);
}

// A head's view: rows of D bf16 values, `stride` elements apart.
struct Rows {
  const BFloat16* p;
  int64_t stride;
  const BFloat16* row(int64_t i) const { return p + i * stride; }
};

// The brgemm B operands are VNNI-packed: logical [K, n] bf16 with row pairs interleaved,
// element (k, c) at [k / 2][c][k % 2] (what oneDNN's bf16 brgemm reads on AMX and on
// AVX512-BF16 alike; brgemm_self_test() checks it once, at first use).

// Byte offsets of 16 consecutive rows (gathers; rows_ready() keeps 16 strides within int32).
SSAST_AVX512 inline __m512i row_offsets(const Rows& x) {
  return _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                            _mm512_set1_epi32(static_cast<int32_t>(x.stride * sizeof(BFloat16))));
}

// X^T (X: [n, D] rows) as one B operand [D, np] (np = round_up(n, kTile)): logical (d, j) =
// X[j][d], zero for j >= n; a pair (d, d+1) is one 32-bit word of X's row, so 16 keys' words are
// one gather. dst: [D * np].
SSAST_AVX512 void vnni_transposed(Rows x, int64_t n, int64_t np, int64_t D, BFloat16* dst) {
  uint32_t* out = reinterpret_cast<uint32_t*>(dst);
  const __m512i offs = row_offsets(x);
  for (int64_t j0 = 0; j0 < np; j0 += 16) {
    const __mmask16 msk = j0 < n ? tail_mask(n - j0) : 0;
    const char* base = reinterpret_cast<const char*>(x.row(j0 < n ? j0 : 0));
    for (int64_t d2 = 0; d2 < D / 2; ++d2)
      _mm512_storeu_si512(out + d2 * np + j0,
                          _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), msk, offs, base + 4 * d2, 1));
  }
}

// 16 bf16 of row0 and of row1 -> 32 interleaved (row0[0], row1[0], row0[1], ...): one VNNI pair.
SSAST_AVX512 inline __m512i interleave_pair(__m256i row0, __m256i row1) {
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                       21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(idx, _mm512_inserti64x4(_mm512_castsi256_si512(row0), row1, 1));
}

SSAST_AVX512 inline __mmask32 pair_mask(int64_t cols) {
  return cols >= 16 ? ~__mmask32(0) : static_cast<__mmask32>((1ull << (2 * cols)) - 1);
}

// X (X: [n, D] rows) as B operands over the reduction dim nk (a multiple of kKAlign >= n), one
// per head-dim tile of width w = min(kTile, D - d0): logical (i, c) = X[i][d0 + c], zero for
// i >= n. dst: [d_tiles][nk * kTile].
SSAST_AVX512 void vnni_rows(Rows x, int64_t n, int64_t nk, int64_t D, BFloat16* dst) {
  for (int64_t d0 = 0; d0 < D; d0 += kTile) {
    const int64_t w = std::min(kTile, D - d0);
    BFloat16* out = dst + (d0 / kTile) * nk * kTile;
    for (int64_t i = 0; i < nk; i += 2) {
      BFloat16* o = out + i * w;
      for (int64_t c = 0; c < w; c += 16) {
        const __mmask16 msk = tail_mask(w - c);
        const __m256i r0 = i < n ? _mm256_maskz_loadu_epi16(msk, x.row(i) + d0 + c) : _mm256_setzero_si256();
        const __m256i r1 = i + 1 < n ? _mm256_maskz_loadu_epi16(msk, x.row(i + 1) + d0 + c) : _mm256_setzero_si256();
        _mm512_mask_storeu_epi16(o + 2 * c, pair_mask(w - c), interleave_pair(r0, r1));
      }
    }
  }
}

// C[m, np] = A[m, D] @ B[D, np] (B from vnni_transposed), fp32, one brgemm.
void gemm_nt(int64_t m, int64_t np, int64_t D, const BFloat16* a, int64_t lda, const BFloat16* packed, float* c) {
  cpublas::brgemm(m, np, D, lda, np, np, false, a, packed, c, true);
}

struct Sizes {
  int64_t N, D, N2, Np;  // tokens, head dim, N rounded up to kKAlign (reduction dims), to kTile
};

// Per-thread scratch that outlives a call (no page faults or zero-fill per call).
template <typename T>
T* scratch(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(n);
  return v.data();
}

// ---- forward --------------------------------------------------------------------------------

struct FwdScratch {
  std::vector<BFloat16> kp, vp, p;
  std::vector<float> s, o, inv_l;
};

SSAST_AVX512 void fwd_head(const Sizes& z, Rows q, Rows k, Rows v, float scale, BFloat16* out,
                           int64_t out_stride, float* lse, FwdScratch& w) {
  const int64_t N = z.N, D = z.D, N2 = z.N2, Np = z.Np;
  BFloat16* kp = scratch(w.kp, Np * D);
  BFloat16* vp = scratch(w.vp, round_up(D, kTile) * N2);
  BFloat16* p = scratch(w.p, kBlockM * N2);
  float* s = scratch(w.s, kBlockM * Np);
  float* o = scratch(w.o, kBlockM * kTile);
  float* inv_l = scratch(w.inv_l, kBlockM);
  vnni_transposed(k, N, Np, D, kp);
  vnni_rows(v, N, N2, D, vp);
  const __m512 vs = _mm512_set1_ps(scale);
  for (int64_t q0 = 0; q0 < N; q0 += kBlockM) {
    const int64_t m = std::min(kBlockM, N - q0);
    gemm_nt(m, Np, D, q.row(q0), q.stride, kp, s);
    for (int64_t r = 0; r < m; ++r) {
      const float* srow = s + r * Np;
      BFloat16* prow = p + r * N2;
      __m512 vmax = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
      for (int64_t j = 0; j < N; j += 16)
        vmax = _mm512_mask_max_ps(vmax, tail_mask(N - j), vmax, _mm512_mul_ps(_mm512_loadu_ps(srow + j), vs));
      const float mx = _mm512_reduce_max_ps(vmax);
      const __m512 vm = _mm512_set1_ps(mx);
      __m512 vsum = _mm512_setzero_ps();
      for (int64_t j = 0; j < N; j += 16) {
        const __mmask16 msk = tail_mask(N - j);
        const __m512 e = _mm512_maskz_mov_ps(msk, exp_ps(_mm512_fmsub_ps(_mm512_loadu_ps(srow + j), vs, vm)));
        vsum = _mm512_add_ps(vsum, e);
        store_bf16(prow + j, e, msk);
      }
      for (int64_t j = N; j < N2; ++j) prow[j] = BFloat16(0.f);
      const float l = _mm512_reduce_add_ps(vsum);
      inv_l[r] = 1.0f / l;
      lse[q0 + r] = mx + std::log(l);
    }
    for (int64_t d0 = 0; d0 < D; d0 += kTile) {
      const int64_t wd = std::min(kTile, D - d0);
      cpublas::brgemm(m, wd, N2, N2, wd, kTile, false, p, vp + (d0 / kTile) * N2 * kTile, o, true);
      for (int64_t r = 0; r < m; ++r) {
        const __m512 il = _mm512_set1_ps(inv_l[r]);
        for (int64_t c = 0; c < wd; c += 16) {
          const __mmask16 msk = tail_mask(wd - c);
          store_bf16(out + (q0 + r) * out_stride + d0 + c, _mm512_mul_ps(_mm512_maskz_loadu_ps(msk, o + r * kTile + c), il),
                     msk);
        }
      }
    }
  }
}

// ---- backward -------------------------------------------------------------------------------

struct BwdScratch {
  std::vector<BFloat16> kt, vt, kr, ds_rows, p_vnni, ds_vnni, dot, qt;
  std::vector<float> s, dp, delta, acc;
};

// X^T as a dense [D, n2] bf16 matrix (zero columns beyond n): the A operand of dK^T / dV^T.
// A gather of 16 rows' 32-bit words gives two output rows (d and d + 1) of 16 columns.
SSAST_AVX512 void transpose_rows(Rows x, int64_t n, int64_t n2, int64_t D, BFloat16* dst) {
  const __m512i offs = row_offsets(x);
  for (int64_t i0 = 0; i0 < n2; i0 += 16) {
    const __mmask16 ld = i0 < n ? tail_mask(n - i0) : 0, st = tail_mask(n2 - i0);
    const char* base = reinterpret_cast<const char*>(x.row(i0 < n ? i0 : 0));
    for (int64_t d = 0; d < D; d += 2) {
      const __m512i w = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), ld, offs, base + 2 * d, 1);
      _mm256_mask_storeu_epi16(dst + d * n2 + i0, st, _mm512_cvtepi32_epi16(w));
      _mm256_mask_storeu_epi16(dst + (d + 1) * n2 + i0, st, _mm512_cvtepi32_epi16(_mm512_srli_epi32(w, 16)));
    }
  }
}

// dst rows [n, D] (bf16) <- acc^T, acc [D, kTile] fp32 holding keys t*kTile .. t*kTile+kTile-1.
SSAST_AVX512 void store_transposed(const float* acc, int64_t t, int64_t n, int64_t D, BFloat16* dst,
                                   int64_t stride) {
  const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                         _mm512_set1_epi32(kTile));
  for (int64_t j = 0; j < kTile && t * kTile + j < n; ++j) {
    BFloat16* row = dst + (t * kTile + j) * stride;
    for (int64_t d = 0; d < D; d += 16) {
      const __mmask16 msk = tail_mask(D - d);
      store_bf16(row + d, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), msk, idx, acc + d * kTile + j, 4), msk);
    }
  }
}

// Two rows' 16 values each -> 32 bf16 interleaved (row0[0], row1[0], row0[1], ...): one VNNI
// row pair, stored for the first `cols` columns.
SSAST_AVX512 inline void store_vnni_pair(BFloat16* dst, __m512 row0, __m512 row1, int64_t cols) {
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                       21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(row1, row0);  // [row0 x16 | row1 x16]
  _mm512_mask_storeu_epi16(dst, pair_mask(cols), _mm512_permutexvar_epi16(idx, both));
}

SSAST_AVX512 void bwd_head(const Sizes& z, Rows q, Rows k, Rows v, Rows o, Rows dout, const float* lse,
                           float scale, BFloat16* dq, BFloat16* dk, BFloat16* dv, int64_t g_stride,
                           BwdScratch& w) {
  const int64_t N = z.N, D = z.D, N2 = z.N2, Np = z.Np;
  BFloat16* kt = scratch(w.kt, Np * D);
  BFloat16* vt = scratch(w.vt, Np * D);
  BFloat16* kr = scratch(w.kr, round_up(D, kTile) * N2);
  BFloat16* ds_rows = scratch(w.ds_rows, kBlockM * Np);
  BFloat16* p_vnni = scratch(w.p_vnni, N2 * Np);
  BFloat16* ds_vnni = scratch(w.ds_vnni, N2 * Np);
  BFloat16* dot = scratch(w.dot, D * N2);
  BFloat16* qt = scratch(w.qt, D * N2);
  float* s = scratch(w.s, kBlockM * Np);
  float* dp = scratch(w.dp, kBlockM * Np);
  float* delta = scratch(w.delta, N);
  float* acc = scratch(w.acc, std::max(kBlockM, D) * kTile);

  for (int64_t i = 0; i < N; ++i) {  // delta = rowsum(dO * O), fp32
    __m512 a = _mm512_setzero_ps();
    for (int64_t d = 0; d < D; d += 16) {
      const __mmask16 msk = tail_mask(D - d);
      a = _mm512_fmadd_ps(load_bf16(dout.row(i) + d, msk), load_bf16(o.row(i) + d, msk), a);
    }
    delta[i] = _mm512_reduce_add_ps(a);
  }
  vnni_transposed(k, N, Np, D, kt);
  vnni_transposed(v, N, Np, D, vt);
  vnni_rows(k, N, N2, D, kr);
  // VNNI row pairs past the last written one (padding of the reduction over queries): zeros.
  const int64_t pairs_written = (N + 1) / 2;
  for (int64_t t = 0; t * kTile < N; ++t)
    for (BFloat16* tiles : {p_vnni, ds_vnni})
      std::fill(tiles + t * N2 * kTile + pairs_written * 2 * kTile, tiles + (t + 1) * N2 * kTile, BFloat16(0.f));

  const __m512 vs = _mm512_set1_ps(scale);
  for (int64_t q0 = 0; q0 < N; q0 += kBlockM) {
    const int64_t m = std::min(kBlockM, N - q0);
    gemm_nt(m, Np, D, q.row(q0), q.stride, kt, s);
    gemm_nt(m, Np, D, dout.row(q0), dout.stride, vt, dp);
    // P = exp(scale S - lse) and dS = scale P (dP - delta), two rows at a time (a VNNI pair;
    // the partner of an odd last row is zero).
    for (int64_t r = 0; r < m; r += 2) {
      const bool two = r + 1 < m;
      const float* s0 = s + r * Np;
      const float* dp0 = dp + r * Np;
      const __m512 l0 = _mm512_set1_ps(lse[q0 + r]), d0 = _mm512_set1_ps(delta[q0 + r]);
      const __m512 l1 = _mm512_set1_ps(two ? lse[q0 + r + 1] : 0.f);
      const __m512 d1 = _mm512_set1_ps(two ? delta[q0 + r + 1] : 0.f);
      const int64_t pair = (q0 + r) / 2;
      for (int64_t j = 0; j < N; j += 16) {
        const __mmask16 msk = tail_mask(N - j);
        const __m512 p0 = exp_ps(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(msk, s0 + j), vs, l0));
        const __m512 ds0 = _mm512_mul_ps(_mm512_mul_ps(p0, vs), _mm512_sub_ps(_mm512_maskz_loadu_ps(msk, dp0 + j), d0));
        __m512 p1 = _mm512_setzero_ps(), ds1 = _mm512_setzero_ps();
        if (two) {
          p1 = exp_ps(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(msk, s0 + Np + j), vs, l1));
          ds1 = _mm512_mul_ps(_mm512_mul_ps(p1, vs), _mm512_sub_ps(_mm512_maskz_loadu_ps(msk, dp0 + Np + j), d1));
          store_bf16(ds_rows + (r + 1) * Np + j, ds1, msk);
        }
        store_bf16(ds_rows + r * Np + j, ds0, msk);
        const int64_t off = (j / kTile) * N2 * kTile + pair * 2 * kTile + (j % kTile) * 2;
        store_vnni_pair(p_vnni + off, p0, p1, N - j);
        store_vnni_pair(ds_vnni + off, ds0, ds1, N - j);
      }
      for (int64_t j = N; j < N2; ++j) {
        ds_rows[r * Np + j] = BFloat16(0.f);
        if (two) ds_rows[(r + 1) * Np + j] = BFloat16(0.f);
      }
    }
    // dQ rows = dS[q0:q0+m, :N2] @ K
    for (int64_t c0 = 0; c0 < D; c0 += kTile) {
      const int64_t wd = std::min(kTile, D - c0);
      cpublas::brgemm(m, wd, N2, Np, wd, kTile, false, ds_rows, kr + (c0 / kTile) * N2 * kTile, acc, true);
      for (int64_t r = 0; r < m; ++r)
        for (int64_t c = 0; c < wd; c += 16) {
          const __mmask16 msk = tail_mask(wd - c);
          store_bf16(dq + (q0 + r) * g_stride + c0 + c, _mm512_maskz_loadu_ps(msk, acc + r * kTile + c), msk);
        }
    }
  }
  // dV^T = dO^T P and dK^T = Q^T dS, one tile of kTile keys at a time (reduction over queries).
  transpose_rows(dout, N, N2, D, dot);
  transpose_rows(q, N, N2, D, qt);
  for (int64_t t = 0; t * kTile < N; ++t) {
    cpublas::brgemm(D, kTile, N2, N2, kTile, kTile, false, dot, p_vnni + t * N2 * kTile, acc, true);
    store_transposed(acc, t, N, D, dv, g_stride);
    cpublas::brgemm(D, kTile, N2, N2, kTile, kTile, false, qt, ds_vnni + t * N2 * kTile, acc, true);
    store_transposed(acc, t, N, D, dk, g_stride);
  }
}

// ---- checks and entry points ----------------------------------------------------------------

void check_input(const at::Tensor& t, const char* name, const at::Tensor& like) {
  TORCH_CHECK(t.device().is_cpu(), "attention_cpu: ", name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == at::kBFloat16, "attention_cpu: ", name, " must be bfloat16, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 4 && t.sizes() == like.sizes(), "attention_cpu: ", name, " must have shape ", like.sizes(),
              ", got ", t.sizes());
}

// Last dim contiguous (rows of D values), each (b, h) a strided row set, and 16 rows' byte
// offsets within int32 (the layout gathers).
at::Tensor rows_ready(const at::Tensor& t) {
  const bool gatherable = t.stride(2) >= 0 && t.stride(2) * 16 * static_cast<int64_t>(sizeof(BFloat16)) < (1ll << 31);
  return t.stride(3) == 1 && gatherable ? t : t.contiguous();
}

Rows head(const at::Tensor& t, int64_t b, int64_t h) {
  return Rows{t.data_ptr<BFloat16>() + b * t.stride(0) + h * t.stride(1), t.stride(2)};
}

Sizes sizes_of(const at::Tensor& q) {
  const int64_t N = q.size(2), D = q.size(3);
  TORCH_CHECK(D % 2 == 0 && D <= 256, "attention_cpu: head dim must be even and <= 256, got ", D);
  return Sizes{N, D, round_up(N, kKAlign), round_up(N, kTile)};
}

// Small exact values: every product and sum below is an integer well inside float32's range,
// so a correct brgemm reproduces the float32 reference exactly.
float probe_value(int64_t i, int64_t salt) { return static_cast<float>((i * 7 + salt * 3) % 9 - 4); }

// The kernel's two brgemm shapes on small operands, packed by the kernel's own VNNI writers,
// against float32 products: S = A X^T (vnni_transposed: K = D, N padded to kTile) and
// O = P X (vnni_rows: K = tokens padded to kKAlign, N = a head-dim tile). Any error (no bf16
// brgemm in this ATen or oneDNN, a layout it does not read, a wrong result) means "not supported".
SSAST_AVX512 bool brgemm_self_test() {
  constexpr int64_t M = 5, n = 70, D = 32;
  const int64_t np = round_up(n, kTile), nk = round_up(n, kKAlign);
  std::vector<BFloat16> a(M * D), x(n * D), p(M * nk, BFloat16(0.f)), xt(D * np), xr(kTile * nk);
  for (int64_t i = 0; i < M * D; ++i) a[i] = BFloat16(probe_value(i, 1));
  for (int64_t i = 0; i < n * D; ++i) x[i] = BFloat16(probe_value(i, 2));
  for (int64_t r = 0; r < M; ++r)
    for (int64_t j = 0; j < n; ++j) p[r * nk + j] = BFloat16(probe_value(r * n + j, 3));
  std::vector<float> s(M * np, -1.f), o(M * kTile, -1.f);
  try {
    vnni_transposed(Rows{x.data(), D}, n, np, D, xt.data());
    gemm_nt(M, np, D, a.data(), D, xt.data(), s.data());
    vnni_rows(Rows{x.data(), D}, n, nk, D, xr.data());
    cpublas::brgemm(M, D, nk, nk, D, kTile, false, p.data(), xr.data(), o.data(), true);
    cpublas::brgemm_release(true);
  } catch (const std::exception&) {
    return false;
  }
  for (int64_t r = 0; r < M; ++r) {
    for (int64_t j = 0; j < np; ++j) {
      float want = 0.f;
      for (int64_t d = 0; j < n && d < D; ++d) want += float(a[r * D + d]) * float(x[j * D + d]);
      if (std::abs(s[r * np + j] - want) > 1e-3f) return false;
    }
    for (int64_t d = 0; d < D; ++d) {
      float want = 0.f;
      for (int64_t j = 0; j < n; ++j) want += float(p[r * nk + j]) * float(x[j * D + d]);
      if (std::abs(o[r * kTile + d] - want) > 1e-3f) return false;
    }
  }
  return true;
}

}  // namespace

bool attention_cpu_supported() {
  static const bool ok = avx512::cpu_has_avx512_bf16() && brgemm_self_test();
  return ok;
}

std::string attention_cpu_isa() {
  if (!attention_cpu_supported()) return "none";
  // cpublas::could_pack(bf16) holds exactly when oneDNN's effective ISA has AMX (it reports the
  // path; it is not the gate). ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 turns AMX off.
  return cpublas::could_pack(at::kBFloat16) ? "amx" : "avx512_bf16";
}

std::tuple<at::Tensor, at::Tensor> attention_cpu_fwd(const at::Tensor& q_in, const at::Tensor& k_in,
                                                     const at::Tensor& v_in, double scale) {
  TORCH_CHECK(attention_cpu_supported(), "attention_cpu: needs a CPU with AVX512-BF16 and a working bf16 brgemm");
  check_input(q_in, "q", q_in);
  check_input(k_in, "k", q_in);
  check_input(v_in, "v", q_in);
  const at::Tensor q = rows_ready(q_in), k = rows_ready(k_in), v = rows_ready(v_in);
  const int64_t B = q.size(0), H = q.size(1), N = q.size(2), D = q.size(3);
  // out is [B, H, N, D] over [B, N, H, D] memory: the layout the projection after it reads.
  at::Tensor out = at::empty({B, N, H, D}, q.options()).permute({0, 2, 1, 3});
  at::Tensor lse = at::empty({B, H, N}, q.options().dtype(at::kFloat));
  if (B * H * N == 0) return {out, lse};
  const Sizes z = sizes_of(q);
  const float sc = static_cast<float>(scale);
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    static thread_local FwdScratch w;
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      fwd_head(z, head(q, b, h), head(k, b, h), head(v, b, h), sc,
               out.data_ptr<BFloat16>() + b * out.stride(0) + h * out.stride(1), out.stride(2),
               lse.data_ptr<float>() + bh * N, w);
    }
    cpublas::brgemm_release(true);
  });
  return {out, lse};
}

namespace {

// The backward into dq, dk, dv: [B, H, N, D] bf16 views sharing one stride layout (rows of D
// contiguous values), e.g. fresh tensors or the three slots of a packed [B, N, 3, H, D] buffer.
void bwd_into(const at::Tensor& dout_in, const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
              const at::Tensor& out_in, const at::Tensor& lse_in, double scale, at::Tensor& dq, at::Tensor& dk,
              at::Tensor& dv) {
  TORCH_CHECK(attention_cpu_supported(), "attention_cpu: needs a CPU with AVX512-BF16 and a working bf16 brgemm");
  check_input(q_in, "q", q_in);
  for (auto [t, name] : {std::pair{&k_in, "k"}, {&v_in, "v"}, {&out_in, "out"}, {&dout_in, "dout"}})
    check_input(*t, name, q_in);
  const int64_t B = q_in.size(0), H = q_in.size(1), N = q_in.size(2);
  TORCH_CHECK(lse_in.scalar_type() == at::kFloat && lse_in.sizes() == at::IntArrayRef({B, H, N}),
              "attention_cpu: lse must be float32 [B, H, N]");
  if (B * H * N == 0) return;
  const at::Tensor q = rows_ready(q_in), k = rows_ready(k_in), v = rows_ready(v_in), o = rows_ready(out_in),
                   dout = rows_ready(dout_in), lse = lse_in.contiguous();
  const Sizes z = sizes_of(q);
  const float sc = static_cast<float>(scale);
  auto at_head = [](at::Tensor& g, int64_t b, int64_t h) {
    return g.data_ptr<BFloat16>() + b * g.stride(0) + h * g.stride(1);
  };
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    static thread_local BwdScratch w;
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      bwd_head(z, head(q, b, h), head(k, b, h), head(v, b, h), head(o, b, h), head(dout, b, h),
               lse.data_ptr<float>() + bh * N, sc, at_head(dq, b, h), at_head(dk, b, h), at_head(dv, b, h),
               dq.stride(2), w);
    }
    cpublas::brgemm_release(true);
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_cpu_bwd(const at::Tensor& dout, const at::Tensor& q,
                                                                 const at::Tensor& k, const at::Tensor& v,
                                                                 const at::Tensor& out, const at::Tensor& lse,
                                                                 double scale) {
  TORCH_CHECK(q.dim() == 4, "attention_cpu: q must be [B, H, N, D]");
  at::Tensor dq = at::empty(q.sizes(), q.options()), dk = at::empty_like(dq), dv = at::empty_like(dq);
  bwd_into(dout, q, k, v, out, lse, scale, dq, dk, dv);
  return {dq, dk, dv};
}

at::Tensor attention_cpu_bwd_packed(const at::Tensor& dout, const at::Tensor& qkv, const at::Tensor& out,
                                    const at::Tensor& lse, double scale) {
  TORCH_CHECK(qkv.dim() == 5 && qkv.size(2) == 3, "attention_cpu: qkv must be [B, N, 3, H, D], got ", qkv.sizes());
  at::Tensor g = at::empty(qkv.sizes(), qkv.options());  // [B, N, 3, H, D], the qkv projection's layout
  auto slot = [](const at::Tensor& t, int64_t i) { return t.select(2, i).permute({0, 2, 1, 3}); };
  at::Tensor dq = slot(g, 0), dk = slot(g, 1), dv = slot(g, 2);
  bwd_into(dout, slot(qkv, 0), slot(qkv, 1), slot(qkv, 2), out, lse, scale, dq, dk, dv);
  return g;
}

void register_attention(pybind11::module_& m) {
  m.def("attention_cpu_supported", &attention_cpu_supported,
        "Whether this CPU runs the bf16 attention kernels (AVX512-BF16 and a bf16 brgemm that passes its self-test)");
  m.def("attention_cpu_isa", &attention_cpu_isa,
        "The brgemm code path the kernels use here: 'amx', 'avx512_bf16' or 'none'");
  m.def("attention_cpu_fwd", &attention_cpu_fwd, "bf16 CPU attention forward -> (out [B,H,N,D], lse [B,H,N])");
  m.def("attention_cpu_bwd", &attention_cpu_bwd, "bf16 CPU attention backward -> (dq, dk, dv)");
  m.def("attention_cpu_bwd_packed", &attention_cpu_bwd_packed,
        "bf16 CPU attention backward for q, k, v packed as qkv [B, N, 3, H, D] -> dqkv [B, N, 3, H, D]");
}

}  // namespace ssast
