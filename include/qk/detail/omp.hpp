#pragma once
// Internal: sets OpenMP's thread count for the calling thread for one scope (Eigen's own small products follow it)
// and restores the previous value on exit.
#include <algorithm>

#include <omp.h>

namespace qk::detail {

class OmpThreadsScope {
 public:
  explicit OmpThreadsScope(int n) : old_(omp_get_max_threads()) { omp_set_num_threads(std::max(1, n)); }
  ~OmpThreadsScope() { omp_set_num_threads(old_); }
  OmpThreadsScope(const OmpThreadsScope&) = delete;
  OmpThreadsScope& operator=(const OmpThreadsScope&) = delete;

 private:
  int old_;
};

}  // namespace qk::detail
