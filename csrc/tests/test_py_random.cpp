// Standalone unit test of the CPython random/set replay (no torch, no Python).
// Expected values were printed by CPython 3.11 (see the comments).
#include <cstdio>
#include <vector>

#include "expect.h"
#include "masking/mask_core.h"
#include "masking/py_random.h"

using ssast::maskcore::IntSet;
using ssast::pyrand::PyMersenne;
namespace core = ssast::maskcore;

int main() {
  {  // random.seed(0); [random.getrandbits(32) for _ in range(3)]
    auto r = PyMersenne::from_seed(0);
    expect(r.next_u32() == 3626764237U && r.next_u32() == 1654615998U && r.next_u32() == 3255389356U,
           "getrandbits(32) after seed(0)");
  }
  {  // random.seed(2022); [random.randrange(1212) for _ in range(5)]
    auto r = PyMersenne::from_seed(2022);
    const std::vector<int64_t> want = {1088, 591, 906, 1117, 634};
    std::vector<int64_t> got;
    for (int i = 0; i < 5; ++i) got.push_back(r.below(1212));
    expect(got == want, "randrange(1212) after seed(2022)");
  }
  {  // list(set([1000, 9, 17, 513, 8, 2000, 3, 1, 700, 64, 1300, 45, 46, 47]))
    std::vector<int32_t> tables(2 * 32);
    IntSet s(tables.data(), tables.data() + 32);
    for (int32_t v : {1000, 9, 17, 513, 8, 2000, 3, 1, 700, 64, 1300, 45, 46, 47}) s.add(v);
    std::vector<int64_t> got(s.size());
    s.head(got.data(), got.size());
    const std::vector<int64_t> want = {64, 513, 1, 3, 1000, 9, 8, 45, 46, 47, 2000, 17, 1300, 700};
    expect(got == want, "set iteration order");
  }
  {  // random.seed(42); gen_maskid_patch(1212, 100, p_t_dim=101)[:12]
    auto r = PyMersenne::from_seed(42);
    std::vector<uint64_t> workspace(core::workspace_words(1212, 100, 3, true));
    std::vector<int64_t> out(100);
    core::patch_one(r, 1212, 100, 101, 3, workspace.data(), out.data());
    const std::vector<int64_t> want = {531, 532, 533, 534, 535, 558, 559, 560, 561, 562, 51, 52};
    expect(std::vector<int64_t>(out.begin(), out.begin() + 12) == want, "patch mask 1212/100/101");
  }
  {  // random.seed(42); random.sample(range(512), 10) then seed(42); sample(range(60), 10)
    auto r = PyMersenne::from_seed(42);
    std::vector<int64_t> out(10);
    std::vector<uint64_t> workspace(core::workspace_words(512, 10, 3, false));
    core::frame_one(r, 512, 10, workspace.data(), out.data());
    expect(out == std::vector<int64_t>({114, 25, 281, 250, 228, 142, 104, 89, 432, 32}), "sample set path");
    auto r2 = PyMersenne::from_seed(42);
    workspace.assign(core::workspace_words(60, 10, 3, false), 0);
    core::frame_one(r2, 60, 10, workspace.data(), out.data());
    expect(out == std::vector<int64_t>({40, 7, 1, 47, 17, 15, 14, 8, 56, 6}), "sample pool path");
  }
  return report("py_random");
}
