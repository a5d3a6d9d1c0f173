// Assertions of the standalone C++ tests: expect() records a failure, report() prints the verdict
// and gives main's exit status.
#pragma once

#include <cstdio>

inline int& failures() {
  static int count = 0;
  return count;
}

inline void expect(bool ok, const char* what) {
  if (!ok) {
    std::printf("FAIL: %s\n", what);
    ++failures();
  }
}

inline int report(const char* name) {
  std::printf("%s tests %s\n", name, failures() ? "FAILED" : "passed");
  return failures() ? 1 : 0;
}
