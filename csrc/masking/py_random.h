// CPython's Mersenne Twister (random.getrandbits / randrange), host only: driving the shared
// mask algorithms of mask_core.h it gives the reference's masks bit for bit. Header-only; bound
// in mask_exact.cpp and unit-tested standalone (csrc/tests/test_py_random.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace ssast {
namespace pyrand {

// ---- CPython's MT19937 (Modules/_randommodule.c semantics) ----
class PyMersenne {
 public:
  static constexpr int kN = 624;
  static constexpr int kM = 397;

  explicit PyMersenne(const std::vector<int64_t>& state) {
    if (state.size() != kN + 1) {
      throw std::invalid_argument("random state must have 625 entries (random.getstate()[1])");
    }
    for (int i = 0; i < kN; ++i) mt_[i] = static_cast<uint32_t>(state[i]);
    index_ = static_cast<int>(state[kN]);
    if (index_ < 0 || index_ > kN) throw std::invalid_argument("random state index out of range");
  }

  // random.seed(seed) for a non-negative int below 2**64 (CPython's init_by_array).
  static PyMersenne from_seed(uint64_t seed) {
    std::vector<uint32_t> key;
    do { key.push_back(static_cast<uint32_t>(seed)); seed >>= 32; } while (seed);
    PyMersenne r;
    r.init_genrand(19650218U);
    const int n = static_cast<int>(key.size());
    int i = 1, j = 0;
    for (int k = std::max(kN, n); k; --k) {
      r.mt_[i] = (r.mt_[i] ^ ((r.mt_[i - 1] ^ (r.mt_[i - 1] >> 30)) * 1664525U)) + key[j] + j;
      if (++i >= kN) { r.mt_[0] = r.mt_[kN - 1]; i = 1; }
      if (++j >= n) j = 0;
    }
    for (int k = kN - 1; k; --k) {
      r.mt_[i] = (r.mt_[i] ^ ((r.mt_[i - 1] ^ (r.mt_[i - 1] >> 30)) * 1566083941U)) - i;
      if (++i >= kN) { r.mt_[0] = r.mt_[kN - 1]; i = 1; }
    }
    r.mt_[0] = 0x80000000U;
    r.index_ = kN;
    return r;
  }

  std::vector<int64_t> state() const {
    std::vector<int64_t> s(kN + 1);
    for (int i = 0; i < kN; ++i) s[i] = mt_[i];
    s[kN] = index_;
    return s;
  }

  uint32_t next_u32() {
    if (index_ >= kN) refill();
    uint32_t y = mt_[index_++];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= (y >> 18);
    return y;
  }

  // random.randrange(n) == Random._randbelow_with_getrandbits(n), for 1 <= n < 2**32.
  int64_t below(int64_t n) {
    int k = 0;
    for (uint64_t v = static_cast<uint64_t>(n); v; v >>= 1) ++k;  // n.bit_length()
    uint32_t r = next_u32() >> (32 - k);
    while (r >= n) r = next_u32() >> (32 - k);
    return r;
  }

 private:
  PyMersenne() = default;

  void init_genrand(uint32_t s) {
    mt_[0] = s;
    for (int i = 1; i < kN; ++i) mt_[i] = 1812433253U * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + static_cast<uint32_t>(i);
    index_ = kN;
  }

  void refill() {
    constexpr uint32_t kUpper = 0x80000000U, kLower = 0x7fffffffU, kMatrix = 0x9908b0dfU;
    auto twist = [&](int kk, int next, int far) {
      uint32_t y = (mt_[kk] & kUpper) | (mt_[next] & kLower);
      mt_[kk] = mt_[far] ^ (y >> 1) ^ ((y & 1U) ? kMatrix : 0U);
    };
    int kk = 0;
    for (; kk < kN - kM; ++kk) twist(kk, kk + 1, kk + kM);
    for (; kk < kN - 1; ++kk) twist(kk, kk + 1, kk + kM - kN);
    twist(kN - 1, 0, kM - 1);
    index_ = 0;
  }

  uint32_t mt_[kN];
  int index_;
};

}  // namespace pyrand
}  // namespace ssast
