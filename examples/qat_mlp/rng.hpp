#pragma once
// A seeded random source whose sequence is the same on every platform: std::mt19937_64's raw output is fixed by
// the standard, while std::uniform_*_distribution's mapping is left to the library, so the mapping is done here.
#include <cstdint>
#include <random>

namespace qat_mlp {

class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed) {}
  uint64_t next() { return g_(); }
  // Uniform in [0, n) (Lemire's multiply-shift; the bias for n < 2^32 is below 2^-32).
  uint64_t below(uint64_t n) { return static_cast<uint64_t>((static_cast<unsigned __int128>(g_()) * n) >> 64); }
  // Uniform in [lo, hi) from the top 53 bits.
  double uniform(double lo, double hi) {
    return lo + (hi - lo) * static_cast<double>(g_() >> 11) * (1.0 / 9007199254740992.0);
  }

 private:
  std::mt19937_64 g_;
};

}  // namespace qat_mlp
