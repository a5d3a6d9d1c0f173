// CPU mask generators, all running the shared algorithms of mask_core.h.
// Exact mode: the reference draws masks with Python's `random` module and keeps
// `list(set(indices))[:M]`; to return the same indices we replay
//  * CPython's Mersenne Twister (random.getrandbits / randrange / sample), and
//  * CPython's set hash table (open addressing with linear probes and perturbation), whose
//    slot order is the set's iteration order.
// The Python side passes `random.getstate()[1]` in and writes the returned state back.
// Fast mode: the same algorithms on one xoshiro stream per sample (the CUDA kernel's streams).
#include "masking/mask_exact.h"
#include "masking/mask_core.h"
#include "masking/py_random.h"

#include <ATen/Parallel.h>

#include <cstdint>
#include <stdexcept>
#include <tuple>
#include <vector>

namespace ssast {
namespace {

using pyrand::PyMersenne;
namespace core = maskcore;

void check_len(int64_t sequence_len) {
  if (sequence_len < 1 || sequence_len >= (int64_t{1} << 31)) {
    throw std::invalid_argument("sequence_len must be in [1, 2**31)");
  }
}

// Masks of `batch` consecutive samples (the model's per-sample loop), one row each.
std::tuple<torch::Tensor, std::vector<int64_t>> mask_patch_exact(
    const std::vector<int64_t>& state, int64_t sequence_len, int64_t mask_size, int64_t p_t_dim,
    int64_t cluster, int64_t batch) {
  check_len(sequence_len);
  if (mask_size < 1 || mask_size > sequence_len - 2) {
    throw std::invalid_argument("mask_size must be in [1, sequence_len - 2]");
  }
  if (p_t_dim < 1 || cluster < 1 || batch < 0) {
    throw std::invalid_argument("p_t_dim and cluster must be >= 1, batch >= 0");
  }
  PyMersenne rng(state);
  auto out = torch::empty({batch, mask_size}, torch::kLong);
  int64_t* data = out.data_ptr<int64_t>();
  std::vector<uint64_t> workspace(core::workspace_words(sequence_len, mask_size, cluster, true));
  for (int64_t b = 0; b < batch; ++b) {
    core::patch_one(rng, sequence_len, mask_size, p_t_dim, cluster, workspace.data(), data + b * mask_size);
  }
  return {out, rng.state()};
}

std::tuple<torch::Tensor, std::vector<int64_t>> mask_frame_exact(
    const std::vector<int64_t>& state, int64_t sequence_len, int64_t mask_size, int64_t batch) {
  check_len(sequence_len);
  if (mask_size < 1 || mask_size > sequence_len || batch < 0) {
    throw std::invalid_argument("mask_size must be in [1, sequence_len], batch >= 0");
  }
  PyMersenne rng(state);
  auto out = torch::empty({batch, mask_size}, torch::kLong);
  int64_t* data = out.data_ptr<int64_t>();
  std::vector<uint64_t> workspace(core::workspace_words(sequence_len, mask_size, 3, false));
  for (int64_t b = 0; b < batch; ++b) core::frame_one(rng, sequence_len, mask_size, workspace.data(), data + b * mask_size);
  return {out, rng.state()};
}

// Fast mode: the reference algorithms (same squares, stop rule and CPython set order; frames by
// random.sample's algorithm) driven by xoshiro stream b of `seed` for sample b instead of
// Python's MT, run in parallel over samples: the host build of the CUDA kernel's core. Same
// distribution as the reference, not the same indices.
torch::Tensor mask_fast(int64_t seed, int64_t batch, int64_t sequence_len, int64_t mask_size,
                        int64_t p_t_dim, bool cluster) {
  check_len(sequence_len);
  const int64_t hi = cluster ? sequence_len - 2 : sequence_len;
  if (seed < 0 || mask_size < 1 || mask_size > hi || p_t_dim < 1 || batch < 0) {
    throw std::invalid_argument("mask_fast: seed < 0, mask_size out of range, p_t_dim < 1 or batch < 0");
  }
  const int64_t words = core::workspace_words(sequence_len, mask_size, 3, cluster);
  auto out = torch::empty({batch, mask_size}, torch::kLong);
  int64_t* data = out.data_ptr<int64_t>();
  // A sample costs a few microseconds: parallelise only batches large enough to amortise the
  // thread pool (on a loaded machine a needless fork-join costs milliseconds).
  constexpr int64_t kGrain = 64;
  at::parallel_for(0, batch, kGrain, [&](int64_t begin, int64_t end) {
    std::vector<uint64_t> workspace(words);
    for (int64_t b = begin; b < end; ++b) {
      core::fast_sample(static_cast<uint64_t>(seed), b, sequence_len, mask_size, p_t_dim, cluster, workspace.data(),
                        data + b * mask_size);
    }
  });
  return out;
}

// Iteration order of set(values) for ints in [0, 2**31): exposed to test the emulation.
std::vector<int64_t> cpython_set_order(const std::vector<int64_t>& values) {
  const size_t capacity = core::final_table_size(values.size());
  std::vector<int32_t> tables(2 * capacity);
  core::IntSet set(tables.data(), tables.data() + capacity);
  for (int64_t v : values) {
    if (v < 0 || v >= (int64_t{1} << 31)) throw std::invalid_argument("values must be in [0, 2**31)");
    set.add(static_cast<int32_t>(v));
  }
  std::vector<int64_t> out(set.size());
  set.head(out.data(), out.size());
  return out;
}

}  // namespace

void register_masking(pybind11::module& m) {
  m.def("mask_patch_exact", &mask_patch_exact, "Reference cluster masks for `batch` samples",
        pybind11::arg("state"), pybind11::arg("sequence_len"), pybind11::arg("mask_size"),
        pybind11::arg("p_t_dim"), pybind11::arg("cluster"), pybind11::arg("batch") = 1);
  m.def("mask_frame_exact", &mask_frame_exact, "Reference frame masks for `batch` samples",
        pybind11::arg("state"), pybind11::arg("sequence_len"), pybind11::arg("mask_size"),
        pybind11::arg("batch") = 1);
  m.def("mask_fast", &mask_fast, "Reference-distributed masks from a seeded fast RNG, parallel over samples",
        pybind11::arg("seed"), pybind11::arg("batch"), pybind11::arg("sequence_len"),
        pybind11::arg("mask_size"), pybind11::arg("p_t_dim"), pybind11::arg("cluster"));
  m.def("cpython_set_order", &cpython_set_order, "Iteration order of set(values)");
  m.def("seed_from_philox", &core::seed_from_philox,
        "The fast sampler's 62-bit seed for a CUDA generator's Philox (seed, offset) (graph-safe mode)",
        pybind11::arg("seed"), pybind11::arg("offset"));
}

}  // namespace ssast
