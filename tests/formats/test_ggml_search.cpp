// The batched K-quant scale searches (several sub-blocks side by side in vector lanes) against the one-group
// searches they replace, lane by lane and bit for bit, on awkward data: ties at exact halves, constant, zero,
// tiny and heavy-tailed groups. The reference vectors cover the paths ggml's data exercises; this covers the rest
// (e.g. the importance-weighted Q2_K/Q3_K/Q5_K paths, which have no ggml vectors).
#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../../src/formats/ggml_internal.hpp"
#include "test_util.hpp"

namespace {

namespace d = qk::ggml::detail;

// 16 groups of n values with a different character each.
std::vector<float> awkward_groups(int n, uint64_t seed) {
  auto g = qk::test::rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> ud(-8, 8);
  std::vector<float> x(16 * n);
  for (int k = 0; k < 16; ++k) {
    float* xb = x.data() + k * n;
    for (int i = 0; i < n; ++i) {
      switch (k % 8) {
        case 0: xb[i] = 0.02f * nd(g); break;                                   // weights-like
        case 1: xb[i] = 0.25f * static_cast<float>(ud(g)); break;               // exact halves and quarters: ties
        case 2: xb[i] = 0.7f; break;                                            // constant positive
        case 3: xb[i] = -0.3f; break;                                           // constant negative
        case 4: xb[i] = 0.0f; break;                                            // zeros
        case 5: xb[i] = 1e-20f * nd(g); break;                                  // tiny
        case 6: xb[i] = (i == 3 ? 5.0f : 0.01f * nd(g)); break;                // one outlier
        default: xb[i] = nd(g) * (nd(g) > 1.5f ? 30.0f : 1.0f); break;         // heavy tail
      }
    }
  }
  return x;
}

std::vector<float> weights_for(const std::vector<float>& x, int mode, uint64_t seed) {
  auto g = qk::test::rng(seed);
  std::uniform_real_distribution<float> ud(0.0f, 2.0f);
  std::vector<float> w(x.size());
  for (size_t i = 0; i < x.size(); ++i) w[i] = mode == 0 ? std::fabs(x[i]) : mode == 1 ? ud(g) : x[i] * x[i] + 1e-3f;
  return w;
}

struct AffineCfg {
  int n, nmax;
  float rmin, rdelta;
  int nstep;
  bool use_mad, strict;
};

TEST(GgmlSearch, AffineBatchEqualsOneGroup) {
  // The configurations the encoders use: Q2_K ref / weighted (16, nmax 3), Q4_K and Q5_K ref / weighted (32).
  const AffineCfg cfgs[] = {{16, 3, -0.5f, 0.1f, 15, true, false},  {16, 3, -0.9f, 0.05f, 36, false, true},
                            {32, 15, -1.0f, 0.1f, 20, false, false}, {32, 31, -0.5f, 0.1f, 15, false, false},
                            {32, 15, -0.9f, 0.05f, 36, false, true}, {32, 31, -0.9f, 0.05f, 36, false, true}};
  for (const AffineCfg& c : cfgs) {
    for (uint64_t seed = 1; seed <= 6; ++seed) {
      const auto x = awkward_groups(c.n, seed);
      for (int mode = 0; mode < 3; ++mode) {
        const auto w = weights_for(x, mode, seed + 100);
        std::vector<uint8_t> Lb(16 * c.n);
        float scales[16], mins[16];
        d::search_affine_lanes(c.n, c.nmax, x.data(), w.data(), Lb.data(), scales, mins, c.rmin, c.rdelta, c.nstep,
                               c.use_mad, c.strict);
        for (int k = 0; k < 16; ++k) {
          std::vector<uint8_t> L(c.n);
          float the_min;
          const float s = d::search_affine_one(c.n, c.nmax, x.data() + k * c.n, w.data() + k * c.n, L.data(),
                                               &the_min, c.rmin, c.rdelta, c.nstep, c.use_mad, c.strict);
          const std::string where = "n=" + std::to_string(c.n) + " nmax=" + std::to_string(c.nmax) +
                                    " seed=" + std::to_string(seed) + " mode=" + std::to_string(mode) +
                                    " group=" + std::to_string(k);
          EXPECT_EQ(std::bit_cast<uint32_t>(scales[k]), std::bit_cast<uint32_t>(s)) << where;
          EXPECT_EQ(std::bit_cast<uint32_t>(mins[k]), std::bit_cast<uint32_t>(the_min)) << where;
          EXPECT_EQ(0, std::memcmp(L.data(), Lb.data() + k * c.n, c.n)) << where;
        }
      }
    }
  }
}

TEST(GgmlSearch, SymmetricBatchEqualsOneGroup) {
  for (int nmax : {4, 32}) {  // Q3_K weighted, Q6_K
    for (uint64_t seed = 1; seed <= 6; ++seed) {
      const auto x = awkward_groups(16, seed);
      for (int mode = -1; mode < 3; ++mode) {
        std::vector<float> w;
        if (mode >= 0) w = weights_for(x, mode, seed + 200);
        const float* qw = mode >= 0 ? w.data() : nullptr;
        std::vector<int8_t> Lb(256);
        float scales[16];
        d::search_sym_lanes(nmax, x.data(), Lb.data(), qw, scales);
        for (int k = 0; k < 16; ++k) {
          int8_t L[16];
          const float s = d::search_sym_one(16, nmax, x.data() + 16 * k, L, qw ? qw + 16 * k : nullptr);
          const std::string where = "nmax=" + std::to_string(nmax) + " seed=" + std::to_string(seed) +
                                    " mode=" + std::to_string(mode) + " group=" + std::to_string(k);
          EXPECT_EQ(std::bit_cast<uint32_t>(scales[k]), std::bit_cast<uint32_t>(s)) << where;
          EXPECT_EQ(0, std::memcmp(L, Lb.data() + 16 * k, 16)) << where;
        }
      }
    }
  }
}

// The branch-free table lookup picks what ggml's bisection picks, including at the midpoints between entries.
TEST(GgmlSearch, NearestIndexMatchesBisection) {
  auto bisect = [](const int8_t* val, float x) {
    if (x <= val[0]) return 0;
    if (x >= val[15]) return 15;
    int ml = 0, mu = 15;
    while (mu - ml > 1) {
      const int mav = (ml + mu) / 2;
      if (x < val[mav]) mu = mav; else ml = mav;
    }
    return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
  };
  const int8_t* v = qk::ggml::kIQ4NLValues;
  for (int t = -1300; t <= 1300; ++t) {
    const float x = 0.1f * static_cast<float>(t);
    EXPECT_EQ(d::nearest_index(v, x), bisect(v, x)) << x;
  }
  for (int k = 0; k < 15; ++k) {
    const float mid = 0.5f * (static_cast<float>(v[k]) + static_cast<float>(v[k + 1]));
    EXPECT_EQ(d::nearest_index(v, mid), bisect(v, mid)) << mid;
    EXPECT_EQ(d::nearest_index(v, std::nextafter(mid, -1e9f)), bisect(v, std::nextafter(mid, -1e9f)));
    EXPECT_EQ(d::nearest_index(v, std::nextafter(mid, 1e9f)), bisect(v, std::nextafter(mid, 1e9f)));
  }
}

}  // namespace
