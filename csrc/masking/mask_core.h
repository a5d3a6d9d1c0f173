// The SSAST mask algorithms, one source for the CPU samplers and the CUDA kernel.
//
// Every function here is `__host__ __device__` under nvcc and plain inline C++ elsewhere, uses
// integer arithmetic only and no allocation: each sample works in a caller-provided workspace of
// `workspace_words(...)` 64-bit words. Compiled as host code it is the CPU fast sampler
// (mask_exact.cpp: `mask_fast`) and, driven by CPython's Mersenne Twister (py_random.h), the
// reference-exact generator; compiled as device code it is the CUDA kernel (mask_kernel.cu).
// Same stream, same integer operations: the same masks on every build.
//
// Cluster masks (the reference's gen_maskid_patch): side = randrange(cluster) + 3; squares with
// start randrange(n), cells start + p_t_dim * i + j (i, j < side; j is not clipped at the grid
// row's end) kept when 0 < cell < n, until MORE than mask_size cells are distinct; the result is
// the first mask_size keys of CPython's set(collected) in iteration (slot) order.
// Frame masks: random.sample(range(n), k) with CPython's two algorithms (pool and set).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SSAST_HD __host__ __device__ __forceinline__
#else
#define SSAST_HD inline
#endif

namespace ssast {
namespace maskcore {

SSAST_HD int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
SSAST_HD int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Population count: the POPCNT instruction on x86 CPUs that have it (the extension is built for
// baseline x86-64, where GCC's portable popcount is ~2x slower), __popcll on the GPU.
SSAST_HD int popcount64(uint64_t x) {
#if defined(__CUDA_ARCH__)
  return __popcll(x);
#else
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool has_popcnt = __builtin_cpu_supports("popcnt");
  if (has_popcnt) {
    uint64_t r;
    asm("popcnt %1, %0" : "=r"(r) : "r"(x));
    return static_cast<int>(r);
  }
#endif
  return __builtin_popcountll(x);
#endif
}

// Index of the lowest set bit of x != 0.
SSAST_HD int lowest_bit(uint64_t x) {
#if defined(__CUDA_ARCH__)
  return __ffsll(static_cast<long long>(x)) - 1;
#else
  return __builtin_ctzll(x);
#endif
}

// splitmix64's output function of state z (after its increment).
SSAST_HD uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

constexpr uint64_t kGamma = 0x9e3779b97f4a7c15ULL;  // splitmix64's increment

// ---- xoshiro256** with one independent stream per (seed, stream) pair ----
// State: four splitmix64 outputs from seed ^ (kGamma * (stream + 1)); the samplers use the
// sample index as the stream.
class Xoshiro {
 public:
  SSAST_HD Xoshiro(uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (kGamma * (stream + 1));
    for (int w = 0; w < 4; ++w) {
      x += kGamma;
      s_[w] = mix64(x);
    }
  }

  SSAST_HD uint64_t next() {
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
  SSAST_HD int64_t below(int64_t n) {
    const uint64_t range = static_cast<uint64_t>(n);
    uint64_t m = (next() >> 32) * range;
    if (static_cast<uint32_t>(m) < range) {
      const uint32_t threshold = static_cast<uint32_t>(-static_cast<uint32_t>(range) % static_cast<uint32_t>(range));
      while (static_cast<uint32_t>(m) < threshold) m = (next() >> 32) * range;
    }
    return static_cast<int64_t>(m >> 32);
  }

 private:
  SSAST_HD static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

// The samplers' 62-bit seed in graph-safe mode, from a CUDA generator's Philox (seed, offset).
SSAST_HD uint64_t seed_from_philox(uint64_t seed, uint64_t offset) {
  return mix64(offset ^ mix64(seed + kGamma)) >> 2;
}

// ---- CPython's set of small non-negative ints (Objects/setobject.c), insert-only ----
// hash(i) == i for these keys; slot order is iteration order. The table lives in two caller
// buffers of `capacity` int32 each (the current table and the one a resize rebuilds into);
// capacity must be at least the final table size, `final_table_size(distinct keys)`.
class IntSet {
 public:
  SSAST_HD IntSet(int32_t* table, int32_t* spare) : table_(table), spare_(spare) { clear(table_, kMinSize); }

  SSAST_HD void add(int32_t key) {
    uint64_t i = static_cast<uint64_t>(key) & mask_;
    uint64_t perturb = static_cast<uint64_t>(key);
    while (true) {
      const uint64_t probes = (i + kLinearProbes <= mask_) ? kLinearProbes : 0;
      for (uint64_t p = 0; p <= probes; ++p) {
        int32_t& slot = table_[i + p];
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

  SSAST_HD uint64_t size() const { return used_; }

  // The first `count` keys in iteration order.
  SSAST_HD void head(int64_t* out, uint64_t count) const {
    uint64_t n = 0;
    for (uint64_t i = 0; i <= mask_ && n < count; ++i) {
      if (table_[i] != kEmpty) out[n++] = table_[i];
    }
  }

 private:
  static constexpr int32_t kEmpty = -1;
  static constexpr uint64_t kMinSize = 8;
  static constexpr uint64_t kLinearProbes = 9;
  static constexpr int kPerturbShift = 5;

  SSAST_HD static void clear(int32_t* t, uint64_t size) {
    for (uint64_t i = 0; i < size; ++i) t[i] = kEmpty;
  }

  // Rebuild into the spare buffer in the old table's slot order, as CPython's set_table_resize.
  SSAST_HD void resize(uint64_t min_used) {
    uint64_t size = kMinSize;
    while (size <= min_used) size <<= 1;
    int32_t* old = table_;
    const uint64_t old_mask = mask_;
    table_ = spare_;
    spare_ = old;
    mask_ = size - 1;
    clear(table_, size);
    for (uint64_t i = 0; i <= old_mask; ++i) {
      if (old[i] != kEmpty) insert_clean(old[i]);
    }
  }

  SSAST_HD void insert_clean(int32_t key) {
    uint64_t i = static_cast<uint64_t>(key) & mask_;
    uint64_t perturb = static_cast<uint64_t>(key);
    while (true) {
      if (table_[i] == kEmpty) { table_[i] = key; return; }
      if (i + kLinearProbes <= mask_) {
        for (uint64_t p = 1; p <= kLinearProbes; ++p) {
          if (table_[i + p] == kEmpty) { table_[i + p] = key; return; }
        }
      }
      perturb >>= kPerturbShift;
      i = (i * 5 + 1 + perturb) & mask_;
    }
  }

  int32_t* table_;
  int32_t* spare_;
  uint64_t mask_ = kMinSize - 1;
  uint64_t used_ = 0;
};

// Table size of a CPython set after `distinct` insertions of new keys (no deletions).
SSAST_HD uint64_t final_table_size(uint64_t distinct) {
  uint64_t size = 8;
  while (true) {  // jump from one resize to the next: the first `used` with used*5 >= (size-1)*3
    const uint64_t used = ((size - 1) * 3 + 4) / 5;
    if (used > distinct) return size;
    const uint64_t min_used = used > 50000 ? used * 2 : used * 4;
    size = 8;
    while (size <= min_used) size <<= 1;
  }
}

// random.sample's threshold (CPython 3.8-3.13): the pool algorithm when n <= frame_setsize(k).
// CPython computes 21 + 4 ** ceil(log(3k, 4)) for k > 5 in floating point; 3k is never a power
// of 4 and is at most 3 * 2**31, far from the rounding limit, so this integer form is the same.
SSAST_HD int64_t frame_setsize(int64_t k) {
  int64_t setsize = 21;
  if (k > 5) {
    int64_t power = 1;
    while (power < 3 * k) power *= 4;
    setsize += power;
  }
  return setsize;
}

// ---- Workspace of one sample: a bitmap of n bits, then int32 scratch ----
SSAST_HD int64_t bitmap_words(int64_t n) { return (n + 63) / 64; }

// Most distinct cells a cluster mask can collect: mask_size, plus what its last square adds.
SSAST_HD int64_t max_distinct(int64_t n, int64_t mask_size, int64_t cluster) {
  if (cluster >= n - 2) return n - 1;  // the largest side, cluster + 2, spans the grid
  return min64(n - 1, mask_size + (cluster + 2) * (cluster + 2));
}

// The set must be replayed (iteration order not ascending) only if n > final table size; the
// table only grows with the distinct count, which ends above mask_size.
SSAST_HD bool may_hash(int64_t n, int64_t mask_size) {
  return static_cast<uint64_t>(n) > final_table_size(static_cast<uint64_t>(mask_size) + 1);
}

// Table capacity for the replay: every table it builds is smaller than n (else no replay).
SSAST_HD int64_t set_capacity(int64_t n, int64_t mask_size, int64_t cluster) {
  int64_t below_n = 8;
  while (below_n * 2 < n) below_n *= 2;
  return min64(static_cast<int64_t>(final_table_size(max_distinct(n, mask_size, cluster))), below_n);
}

// int32 scratch entries: cluster replay (first occurrences + two tables) or the frame pool.
SSAST_HD int64_t scratch_ints(int64_t n, int64_t mask_size, int64_t cluster, bool patch) {
  if (patch) {
    return may_hash(n, mask_size) ? max_distinct(n, mask_size, cluster) + 2 * set_capacity(n, mask_size, cluster) : 0;
  }
  return n <= frame_setsize(mask_size) ? n : 0;
}

// Workspace of one sample in 64-bit words; `cluster` is the side parameter (3 in fast mode).
SSAST_HD int64_t workspace_words(int64_t n, int64_t mask_size, int64_t cluster, bool patch) {
  return bitmap_words(n) + (scratch_ints(n, mask_size, cluster, patch) + 1) / 2;
}

// Marks cells [lo, hi) of the bitmap (hi - lo <= 64); returns how many were new and, when
// `first` is given, appends the new cells in ascending order at first[*count].
SSAST_HD int64_t mark_run(uint64_t* words, int64_t lo, int64_t hi, int32_t* first, int64_t* count) {
  int64_t added = 0;
  while (lo < hi) {
    const int64_t w = lo >> 6, bit = lo & 63;
    const int64_t len = min64(hi - lo, 64 - bit);
    const uint64_t run = (len == 64 ? ~uint64_t{0} : ((uint64_t{1} << len) - 1)) << bit;
    uint64_t fresh = run & ~words[w];
    words[w] |= run;
    added += popcount64(fresh);
    if (first) {
      for (; fresh; fresh &= fresh - 1) first[(*count)++] = static_cast<int32_t>(w * 64 + lowest_bit(fresh));
    }
    lo += len;
  }
  return added;
}

// One gen_maskid_patch call into out[0, mask_size). Each square row is a run of `side`
// consecutive cells, marked in the bitmap a word at a time. Duplicates never change a set, so
// the set is determined by the order of first occurrences. When every key is below the final
// table size each key sits in its home slot (hash(i) == i) and iteration order is ascending: a
// bitmap scan gives the answer; otherwise the set is replayed from the first occurrences
// (recorded only when that can happen).
template <class Rng>
SSAST_HD void patch_one(Rng& rng, int64_t n, int64_t mask_size, int64_t p_t_dim, int64_t cluster,
                        uint64_t* workspace, int64_t* out) {
  const int64_t side = rng.below(cluster) + 3;
  uint64_t* words = workspace;
  const int64_t nwords = bitmap_words(n);
  for (int64_t w = 0; w < nwords; ++w) words[w] = 0;
  int32_t* first = may_hash(n, mask_size) ? reinterpret_cast<int32_t*>(workspace + nwords) : nullptr;
  int64_t recorded = 0;
  int64_t distinct = 0;
  while (distinct <= mask_size) {
    const int64_t start = rng.below(n);
    for (int64_t i = 0; i < side; ++i) {
      const int64_t lo = start + p_t_dim * i;
      if (lo >= n) break;
      distinct += mark_run(words, max64(lo, 1), min64(lo + side, n), first, &recorded);
    }
  }
  if (static_cast<uint64_t>(n) <= final_table_size(static_cast<uint64_t>(distinct))) {
    int64_t k = 0;
    for (int64_t w = 0; k < mask_size; ++w) {
      for (uint64_t bits = words[w]; bits && k < mask_size; bits &= bits - 1) out[k++] = w * 64 + lowest_bit(bits);
    }
    return;
  }
  const int64_t capacity = set_capacity(n, mask_size, cluster);
  int32_t* tables = first + max_distinct(n, mask_size, cluster);
  IntSet set(tables, tables + capacity);
  for (int64_t c = 0; c < recorded; ++c) set.add(first[c]);
  set.head(out, static_cast<uint64_t>(mask_size));
}

// random.sample(range(n), k) into out[0, k), as CPython 3.8-3.13 implement it.
template <class Rng>
SSAST_HD void frame_one(Rng& rng, int64_t n, int64_t k, uint64_t* workspace, int64_t* out) {
  uint64_t* selected = workspace;
  const int64_t nwords = bitmap_words(n);
  if (n <= frame_setsize(k)) {
    int32_t* pool = reinterpret_cast<int32_t*>(workspace + nwords);
    for (int64_t i = 0; i < n; ++i) pool[i] = static_cast<int32_t>(i);
    for (int64_t i = 0; i < k; ++i) {
      const int64_t j = rng.below(n - i);
      out[i] = pool[j];
      pool[j] = pool[n - i - 1];
    }
    return;
  }
  for (int64_t w = 0; w < nwords; ++w) selected[w] = 0;
  for (int64_t i = 0; i < k; ++i) {
    int64_t j = rng.below(n);
    while ((selected[j >> 6] >> (j & 63)) & 1) j = rng.below(n);
    selected[j >> 6] |= uint64_t{1} << (j & 63);
    out[i] = j;
  }
}

// Fast mode, sample `index` of a batch: the reference algorithm on stream `index` of `seed`.
// t_dim is unused for frames; `patch` selects cluster (true) or frame masks.
SSAST_HD void fast_sample(uint64_t seed, int64_t index, int64_t n, int64_t mask_size, int64_t t_dim, bool patch,
                          uint64_t* workspace, int64_t* out) {
  Xoshiro rng(seed, static_cast<uint64_t>(index));
  if (patch) {
    patch_one(rng, n, mask_size, t_dim, 3, workspace, out);
  } else {
    frame_one(rng, n, mask_size, workspace, out);
  }
}

}  // namespace maskcore
}  // namespace ssast
