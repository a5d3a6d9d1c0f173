// AVX-512 helpers shared by the bf16 CPU kernels: a target attribute (the kernels are compiled
// for the baseline ISA and run these paths only after a runtime CPU check), tail masks, and
// bf16 <-> fp32 loads and stores (round to nearest even, as torch).
#pragma once
#include <c10/util/BFloat16.h>
#include <immintrin.h>

#include <cstdint>

#define SSAST_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

namespace ssast::avx512 {

// Lanes [0, left) of 16.
SSAST_AVX512 inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
}

SSAST_AVX512 inline __m512 load_bf16(const c10::BFloat16* src, __mmask16 m) {
  const __m256i h = _mm256_maskz_loadu_epi16(m, src);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

SSAST_AVX512 inline void store_bf16(c10::BFloat16* dst, __m512 v, __mmask16 m) {
  _mm256_mask_storeu_epi16(dst, m, (__m256i)_mm512_cvtneps_pbh(v));
}

// Whether this CPU runs the SSAST_AVX512 code paths.
inline bool cpu_has_avx512_bf16() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bf16");
}

}  // namespace ssast::avx512
