#pragma once
// Thread count resolution. qk keeps no global thread setting of its own: every parallel entry point
// takes a `threads` argument; 0 means "QK_NUM_THREADS if set, else OpenMP's default".
#include <cstdlib>
#include <string>

#include <omp.h>

#include "qk/core/error.hpp"

namespace qk {

inline int resolve_threads(int requested = 0) {
  if (requested > 0) return requested;
  if (requested < 0) fail<InvalidArgument>("thread count must be >= 0, got {}", requested);
  if (const char* env = std::getenv("QK_NUM_THREADS"); env && *env) {
    char* end = nullptr;
    long v = std::strtol(env, &end, 10);
    if (end && *end == '\0' && v > 0 && v <= 4096) return static_cast<int>(v);
    fail<InvalidArgument>("QK_NUM_THREADS='{}' is not a positive integer", env);
  }
  return omp_get_max_threads();
}

}  // namespace qk
