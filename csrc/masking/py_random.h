// Torch-free core of the reference-exact mask generators: CPython's Mersenne Twister
// (random.getrandbits / randrange / sample) and CPython's int set (Objects/setobject.c),
// whose slot order is the set's iteration order. Header-only; bound in mask_exact.cpp and
// unit-tested standalone (csrc/tests/test_py_random.cpp).
#pragma once

#include <algorithm>
#include <cmath>
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

// ---- A fast 64-bit generator with the same below() interface (for the fast sampler) ----
// xoshiro256** seeded through splitmix64; independent streams per (seed, stream) pair.
class Xoshiro {
 public:
  Xoshiro(uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (0x9e3779b97f4a7c15ULL * (stream + 1));
    for (auto& w : s_) w = splitmix(x);
  }

  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, n) for 1 <= n < 2**32 (Lemire's multiply-shift with exact rejection).
  int64_t below(int64_t n) {
    const uint64_t range = static_cast<uint64_t>(n);
    uint64_t m = (next() >> 32) * range;
    if (static_cast<uint32_t>(m) < range) {
      const uint32_t threshold = static_cast<uint32_t>(-static_cast<uint32_t>(range) % static_cast<uint32_t>(range));
      while (static_cast<uint32_t>(m) < threshold) m = (next() >> 32) * range;
    }
    return static_cast<int64_t>(m >> 32);
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t splitmix(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t s_[4];
};

// ---- CPython's set of small non-negative ints (Objects/setobject.c), insert-only ----
// hash(i) == i for these keys; slot order is iteration order.
class PyIntSet {
 public:
  PyIntSet() : table_(kMinSize, kEmpty), mask_(kMinSize - 1) {}

  void add(int64_t key) {
    size_t i = static_cast<size_t>(key) & mask_;
    size_t perturb = static_cast<size_t>(key);
    while (true) {
      const size_t probes = (i + kLinearProbes <= mask_) ? kLinearProbes : 0;
      for (size_t p = 0; p <= probes; ++p) {
        int64_t& slot = table_[i + p];
        if (slot == kEmpty) {
          slot = key;
          ++used_;
          if (used_ * 5 >= mask_ * 3) resize(used_ > 50000 ? used_ * 2 : used_ * 4);
          return;
        }
        if (slot == key) return;
      }
      perturb >>= kPerturbShift;
      i = (i * 5 + 1 + perturb) & mask_;
    }
  }

  size_t size() const { return used_; }

  // The first `count` keys in iteration order.
  void head(int64_t* out, size_t count) const {
    size_t n = 0;
    for (int64_t key : table_) {
      if (n == count) break;
      if (key != kEmpty) out[n++] = key;
    }
  }

 private:
  static constexpr int64_t kEmpty = -1;
  static constexpr size_t kMinSize = 8;
  static constexpr size_t kLinearProbes = 9;
  static constexpr int kPerturbShift = 5;

  void resize(size_t min_used) {
    size_t size = kMinSize;
    while (size <= min_used) size <<= 1;
    std::vector<int64_t> old(size, kEmpty);
    old.swap(table_);
    mask_ = size - 1;
    for (int64_t key : old) {
      if (key != kEmpty) insert_clean(key);
    }
  }

  void insert_clean(int64_t key) {
    size_t i = static_cast<size_t>(key) & mask_;
    size_t perturb = static_cast<size_t>(key);
    while (true) {
      if (table_[i] == kEmpty) { table_[i] = key; return; }
      if (i + kLinearProbes <= mask_) {
        for (size_t p = 1; p <= kLinearProbes; ++p) {
          if (table_[i + p] == kEmpty) { table_[i + p] = key; return; }
        }
      }
      perturb >>= kPerturbShift;
      i = (i * 5 + 1 + perturb) & mask_;
    }
  }

  std::vector<int64_t> table_;
  size_t mask_;
  size_t used_ = 0;
};

// Table size of a CPython set after `distinct` insertions of new keys (no deletions).
inline size_t final_table_size(size_t distinct) {
  size_t size = 8;
  while (true) {  // jump from one resize to the next: the first `used` with used*5 >= (size-1)*3
    const size_t used = ((size - 1) * 3 + 4) / 5;
    if (used > distinct) return size;
    const size_t min_used = used > 50000 ? used * 2 : used * 4;
    size = 8;
    while (size <= min_used) size <<= 1;
  }
}

// Population count: the POPCNT instruction when the CPU has it (x86-64-v2 and later; the
// extension is built for baseline x86-64, where GCC's portable popcount is ~2x slower here).
inline int popcount64(uint64_t x) {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool has_popcnt = __builtin_cpu_supports("popcnt");
  if (has_popcnt) {
    uint64_t r;
    asm("popcnt %1, %0" : "=r"(r) : "r"(x));
    return static_cast<int>(r);
  }
#endif
  return __builtin_popcountll(x);
}

// Marks cells [lo, hi) of a 64-bit-word bitmap (hi - lo <= 64); returns how many were new and,
// when `first` is given, appends the new cells in ascending order.
inline int64_t mark_run(std::vector<uint64_t>& words, int64_t lo, int64_t hi, std::vector<int64_t>* first) {
  int64_t added = 0;
  while (lo < hi) {
    const int64_t w = lo >> 6, bit = lo & 63;
    const int64_t len = std::min<int64_t>(hi - lo, 64 - bit);
    const uint64_t run = (len == 64 ? ~uint64_t{0} : ((uint64_t{1} << len) - 1)) << bit;
    uint64_t fresh = run & ~words[w];
    words[w] |= run;
    added += popcount64(fresh);
    if (first) {
      for (; fresh; fresh &= fresh - 1) first->push_back(w * 64 + __builtin_ctzll(fresh));
    }
    lo += len;
  }
  return added;
}

// One reference gen_maskid_patch call: cluster side randrange(cluster) + 3, squares
// start + p_t_dim * i + j kept when 0 < c < n, until more than mask_size are distinct, then
// the first mask_size keys of set(collected). Each square row is a run of `side` consecutive
// cells (j is not clipped at the grid row's end), marked in a bitmap word at a time.
// Duplicates never change a set, so the set is determined by the order of first occurrences.
// When every key is below the final table size, each key sits in its home slot (hash(i) == i)
// and iteration order is ascending: a bitmap scan gives the answer; otherwise the set is
// replayed from the first occurrences (recorded only when that can happen).
template <class Rng>
inline void patch_one(Rng& rng, int64_t n, int64_t mask_size, int64_t p_t_dim, int64_t cluster,
                      std::vector<uint64_t>& words, std::vector<int64_t>& first, int64_t* out) {
  const int64_t side = rng.below(cluster) + 3;
  words.assign(static_cast<size_t>((n + 63) / 64), 0);
  first.clear();
  // The table only grows with the number of distinct keys, which ends above mask_size.
  const bool may_hash = static_cast<size_t>(n) > final_table_size(static_cast<size_t>(mask_size) + 1);
  int64_t distinct = 0;
  while (distinct <= mask_size) {
    const int64_t start = rng.below(n);
    for (int64_t i = 0; i < side; ++i) {
      const int64_t lo = start + p_t_dim * i;
      if (lo >= n) break;
      distinct += mark_run(words, std::max<int64_t>(lo, 1), std::min<int64_t>(lo + side, n),
                           may_hash ? &first : nullptr);
    }
  }
  if (static_cast<size_t>(n) <= final_table_size(static_cast<size_t>(distinct))) {
    int64_t k = 0;
    for (size_t w = 0; k < mask_size; ++w) {
      for (uint64_t bits = words[w]; bits && k < mask_size; bits &= bits - 1) {
        out[k++] = static_cast<int64_t>(w) * 64 + __builtin_ctzll(bits);
      }
    }
    return;
  }
  PyIntSet set;
  for (int64_t c : first) set.add(c);
  set.head(out, static_cast<size_t>(mask_size));
}

// random.sample(range(n), k) as CPython 3.8-3.13 implement it.
template <class Rng>
inline void frame_one(Rng& rng, int64_t n, int64_t k, int64_t* out) {
  int64_t setsize = 21;
  if (k > 5) {
    const double e = std::ceil(std::log(static_cast<double>(k * 3)) / std::log(4.0));
    setsize += int64_t{1} << (2 * static_cast<int64_t>(e));
  }
  if (n <= setsize) {
    std::vector<int64_t> pool(n);
    for (int64_t i = 0; i < n; ++i) pool[i] = i;
    for (int64_t i = 0; i < k; ++i) {
      const int64_t j = rng.below(n - i);
      out[i] = pool[j];
      pool[j] = pool[n - i - 1];
    }
  } else {
    std::vector<bool> selected(n, false);
    for (int64_t i = 0; i < k; ++i) {
      int64_t j = rng.below(n);
      while (selected[j]) j = rng.below(n);
      selected[j] = true;
      out[i] = j;
    }
  }
}

}  // namespace pyrand
}  // namespace ssast
