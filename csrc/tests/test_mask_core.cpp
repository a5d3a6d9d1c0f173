// Standalone unit test of the shared mask core (mask_core.h) compiled as host code: the masks of
// the fast sampler, workspace bounds, and the integer form of random.sample's threshold.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "expect.h"
#include "masking/mask_core.h"

namespace core = ssast::maskcore;

// FNV-1a over the little-endian bytes of the values.
static uint64_t fnv1a(const std::vector<int64_t>& values) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (int64_t v : values) {
    for (int k = 0; k < 8; ++k) {
      h ^= (static_cast<uint64_t>(v) >> (8 * k)) & 0xff;
      h *= 0x100000001b3ULL;
    }
  }
  return h;
}

// Rows [0, batch) of the fast sampler, each in a workspace of exactly workspace_words(...) words
// followed by guard words that must stay untouched.
static std::vector<int64_t> fast_masks(uint64_t seed, int64_t batch, int64_t n, int64_t m, int64_t t_dim, bool patch) {
  constexpr uint64_t kGuard = 0xdeadbeefcafef00dULL;
  const int64_t words = core::workspace_words(n, m, 3, patch);
  std::vector<int64_t> out(batch * m);
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<uint64_t> workspace(words + 4, kGuard);
    core::fast_sample(seed, b, n, m, t_dim, patch, workspace.data(), out.data() + b * m);
    bool intact = true;
    for (int64_t w = words; w < words + 4; ++w) intact &= workspace[w] == kGuard;
    expect(intact, "workspace overrun");
  }
  return out;
}

struct Recorded {
  uint64_t seed;
  int64_t n, m, t_dim;
  bool patch;
  uint64_t fnv;  // of 6 rows, row-major
  std::vector<int64_t> head;  // row 0's first values
};

int main() {
  // Printed by ssast_fast._C.mask_fast(seed, 6, n, m, t_dim, patch) at commit f89caa0, before the
  // algorithm moved into mask_core.h: the CPU fast sampler's masks, which the CUDA kernel shares.
  const std::vector<Recorded> recorded = {
      {1ULL, 5000, 200, 100, true, 0xb9f739f52c3abec9ULL, {1026, 1027, 1028, 3592}},
      {1ULL, 1000, 50, 1, true, 0x176d205a9817c05bULL, {266, 267, 268, 269}},
      {1ULL, 512, 400, 64, true, 0x1d301cdbaa77c494ULL, {4, 5, 6, 23}},
      {1ULL, 1212, 100, 101, true, 0xd0ff12ffefc2640bULL, {1024, 1025, 511, 525}},
      {1ULL, 1212, 250, 101, true, 0x079f2d41e522e8b7ULL, {1024, 1025, 512, 513}},
      {1ULL, 1212, 400, 101, true, 0xf2ea1797c3639511ULL, {11, 12, 13, 55}},
      {1ULL, 128, 40, 16, true, 0xd93ee9479b4d9068ULL, {14, 15, 16, 19}},
      {1ULL, 64, 24, 8, true, 0x51e4e6b60378cae3ULL, {7, 8, 9, 10}},
      {1ULL, 32, 30, 8, true, 0x5ef0a757d62977e5ULL, {1, 2, 3, 4}},
      {1ULL, 300, 150, 1, true, 0xe6d72b4bec89ca56ULL, {2, 3, 4, 5}},
      {1ULL, 2048, 1500, 2048, true, 0x726d32df71305ddbULL, {1, 2, 3, 4}},
      {1ULL, 512, 400, 1, false, 0xaabe85ca475a33ddULL, {110, 136, 84, 180}},
      {1ULL, 2048, 10, 1, false, 0x77c62dd295aff581ULL, {442, 546, 338, 726}},
      {1ULL, 100, 3, 1, false, 0xcbbd2c88214dec51ULL, {21, 26, 16}},
      {1ULL, 10, 3, 1, false, 0x66a31c96ced3e2e7ULL, {2, 9, 1}},
      {1ULL, 60, 20, 1, false, 0x7006928da862bd5dULL, {12, 15, 9, 20}},
      {123456789012345ULL, 5000, 200, 100, true, 0xeca114f95e924013ULL, {4098, 4099, 4100, 4101}},
      {123456789012345ULL, 1000, 50, 1, true, 0x8d135b63f215aceaULL, {769, 770, 771, 772}},
      {123456789012345ULL, 512, 400, 64, true, 0x4f7220ea08657b84ULL, {24, 25, 26, 27}},
      {123456789012345ULL, 1212, 100, 101, true, 0x0561ac3ac821a9a6ULL, {1030, 1031, 1032, 1033}},
      {123456789012345ULL, 1212, 250, 101, true, 0xbe85571b17ee0f7dULL, {1024, 1025, 1018, 1120}},
      {123456789012345ULL, 1212, 400, 101, true, 0x8acb96795f23b940ULL, {83, 84, 85, 86}},
      {123456789012345ULL, 128, 40, 16, true, 0x41b1776681e09799ULL, {18, 19, 20, 21}},
      {123456789012345ULL, 64, 24, 8, true, 0x6922a35170661d45ULL, {32, 33, 34, 35}},
      {123456789012345ULL, 32, 30, 8, true, 0x5ef0a757d62977e5ULL, {1, 2, 3, 4}},
      {123456789012345ULL, 300, 150, 1, true, 0x17def19bfe1d42abULL, {20, 21, 22, 23}},
      {123456789012345ULL, 2048, 1500, 2048, true, 0x0bcd7b11dc23ada9ULL, {7, 8, 9, 10}},
      {123456789012345ULL, 512, 400, 1, false, 0x7e1260f0603ff6b4ULL, {394, 256, 337, 71}},
      {123456789012345ULL, 2048, 10, 1, false, 0x4b31e92907f65690ULL, {1579, 1027, 1353, 289}},
      {123456789012345ULL, 100, 3, 1, false, 0x9b8c113c6ae97127ULL, {77, 50, 66}},
      {123456789012345ULL, 10, 3, 1, false, 0xee060092102d2a27ULL, {7, 4, 5}},
      {123456789012345ULL, 60, 20, 1, false, 0x546f38ec193b0a87ULL, {46, 29, 38, 8}},
  };
  for (const auto& r : recorded) {
    const auto out = fast_masks(r.seed, 6, r.n, r.m, r.t_dim, r.patch);
    char what[96];
    std::snprintf(what, sizeof what, "fast masks seed %llu, %lld/%lld/%lld %s", static_cast<unsigned long long>(r.seed),
                  static_cast<long long>(r.n), static_cast<long long>(r.m), static_cast<long long>(r.t_dim),
                  r.patch ? "patch" : "frame");
    expect(fnv1a(out) == r.fnv && std::vector<int64_t>(out.begin(), out.begin() + r.head.size()) == r.head, what);
  }

  // Workspace bounds and mask properties on random settings, hashed set orders included.
  std::mt19937_64 pick(7);
  for (int trial = 0; trial < 400; ++trial) {
    const int64_t n = 3 + static_cast<int64_t>(pick() % 3000);
    const bool patch = pick() % 4 != 0;
    const int64_t m = 1 + static_cast<int64_t>(pick() % static_cast<uint64_t>(patch ? n - 2 : n));
    const int64_t t_dim = 1 + static_cast<int64_t>(pick() % static_cast<uint64_t>(n));
    const auto out = fast_masks(pick() >> 2, 3, n, m, t_dim, patch);
    for (int64_t b = 0; b < 3; ++b) {
      std::vector<bool> seen(n, false);
      bool ok = true;
      for (int64_t i = 0; i < m; ++i) {
        const int64_t v = out[b * m + i];
        ok &= v >= (patch ? 1 : 0) && v < n && !seen[v];
        if (ok) seen[v] = true;
      }
      expect(ok, "masks hold distinct indices in range");
    }
  }

  // random.sample's threshold: the integer form equals CPython's float formula.
  bool same = true;
  auto float_setsize = [](int64_t k) {
    int64_t setsize = 21;
    if (k > 5) setsize += int64_t{1} << (2 * static_cast<int64_t>(std::ceil(std::log(3.0 * k) / std::log(4.0))));
    return setsize;
  };
  for (int64_t k = 1; k < 200000; ++k) same &= core::frame_setsize(k) == float_setsize(k);
  for (int64_t power = 4; power < (int64_t{1} << 33); power *= 4) {  // around every jump
    for (int64_t k = power / 3 - 3; k <= power / 3 + 3; ++k) same &= k < 1 || core::frame_setsize(k) == float_setsize(k);
  }
  expect(same, "frame_setsize == 21 + 4 ** ceil(log(3k, 4))");

  // Graph-safe seeds: 62 bits, and different (seed, offset) pairs give different seeds.
  expect(core::seed_from_philox(0, 0) < (uint64_t{1} << 62) && core::seed_from_philox(~0ULL, ~0ULL) < (uint64_t{1} << 62),
         "seed_from_philox < 2**62");
  expect(core::seed_from_philox(1, 0) != core::seed_from_philox(1, 4) &&
             core::seed_from_philox(1, 4) != core::seed_from_philox(2, 4),
         "seed_from_philox separates seeds and offsets");

  return report("mask_core");
}
