#pragma once
// Internal OpenMP helpers.
//  - OmpThreadsScope sets OpenMP's thread count for the calling thread for one scope (Eigen's own small products
//    follow it) and restores the previous value on exit.
//  - FirstException carries an exception out of a parallel region: an exception may not leave an OpenMP region
//    (it would end in std::terminate), so the body runs inside run(), which keeps the first exception thrown by any
//    thread; after the region, rethrow() throws it on the calling thread. run() never throws, so barriers inside a
//    region stay balanced; failed() lets the other threads skip their remaining work.
#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>

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

class FirstException {
 public:
  template <typename F>
  void run(F&& f) noexcept {
    if (failed()) return;
    try {
      f();
    } catch (...) {
      std::lock_guard<std::mutex> lock(m_);
      if (!e_) e_ = std::current_exception();
      failed_.store(true, std::memory_order_relaxed);
    }
  }
  bool failed() const { return failed_.load(std::memory_order_relaxed); }
  void rethrow() const {
    if (e_) std::rethrow_exception(e_);
  }

 private:
  std::mutex m_;
  std::exception_ptr e_;
  std::atomic<bool> failed_{false};
};

}  // namespace qk::detail
