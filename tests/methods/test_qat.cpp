// Fake quantization with the straight-through estimator (qk/methods/qat.hpp): values against the core's
// fake_quant and ggml's own quantizer, masks against the clipping range's definition, and the backward pass
// against finite differences of the STE's surrogate.
//
// The true fake-quantization function is piecewise constant (derivative 0 almost everywhere), so finite
// differences of it say nothing. The STE defines the gradient as that of the surrogate in which round() is
// the identity and clamp() is kept; frozen at the evaluation point x0 (the rounding residual
// d = round(u0) - u0 held constant), the surrogate is
//     y~(x) = s · (clamp(x / s + z, qmin, qmax) - z + d·[x0 inside]),
// which equals Q(x0) at x0 and is smooth away from the clipping boundaries. The tests take central differences
// of sum(G ⊙ y~) at points at least 1% of a step away from every boundary.
#include <cmath>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "qk/core/half.hpp"
#include "qk/core/quantize.hpp"
#include "qk/formats/ggml.hpp"
#include "qk/methods/qat.hpp"
#include "qk/methods/rtn.hpp"
#include "test_util.hpp"

namespace qk {
namespace {

using test::RowMat;

std::vector<QuantScheme> schemes() {
  std::vector<QuantScheme> v;
  for (int bits : {2, 4, 8}) {
    v.push_back(QuantScheme::per_tensor(bits));
    v.push_back(QuantScheme::per_channel(bits));
    v.push_back(QuantScheme::per_channel(bits, /*symmetric=*/false, /*is_signed=*/false));
    v.push_back(QuantScheme::per_group(bits, 16));
    v.push_back(QuantScheme::per_group(bits, 16, false, false));
    v.push_back(QuantScheme::per_group(bits, 16, false, true));
    QuantScheme narrow = QuantScheme::per_channel(bits);
    narrow.narrow_range = true;
    v.push_back(narrow);
  }
  return v;
}

// X with its largest magnitude made positive (x 1.1), so that symmetric schemes clip somewhere in every test.
RowMat with_positive_extreme(RowMat X) {
  X(0, 0) = 1.1f * X.cwiseAbs().maxCoeff();
  return X;
}

// u = x / s (the core's quotient) and the code bounds of element (r, c).
struct Elem {
  double u, lo, hi, s;
  int z;
};
Elem elem(const RowMat& X, const QuantScheme& s, const QuantParams& p, Eigen::Index r, Eigen::Index c) {
  const Eigen::Index pr = s.granularity == Granularity::PerTensor ? 0 : r, g = c / s.span(X.cols());
  const float sc = p.scale(pr, g);
  const int z = p.zero_point(pr, g);
  return {static_cast<double>(X(r, c) / sc), static_cast<double>(s.qmin() - z), static_cast<double>(s.qmax() - z), sc,
          z};
}

TEST(FakeQuantSte, ValueIsTheCoresFakeQuantAndMaskIsTheClippingRange) {
  const RowMat X = with_positive_extreme(test::gaussian(24, 64, 11) * 0.3f);
  for (const QuantScheme& s : schemes()) {
    SCOPED_TRACE(s.describe());
    const FakeQuantSte f = fake_quant_ste(X, s);
    const RowMatrixXf ref = fake_quant(X, s);
    EXPECT_EQ(f.value, ref);  // bit-identical
    int64_t inside = 0, outside = 0;
    for (Eigen::Index r = 0; r < X.rows(); ++r)
      for (Eigen::Index c = 0; c < X.cols(); ++c) {
        const Elem e = elem(X, s, f.params, r, c);
        const bool in = e.u >= e.lo && e.u <= e.hi;
        ASSERT_EQ(f.pass(r, c), in ? 1 : 0) << "[" << r << ", " << c << "] u " << e.u;
        (in ? inside : outside)++;
        // Inside the range the value is within half a step of x; outside it is the nearest end of the range.
        if (in) {
          EXPECT_LE(std::fabs(f.value(r, c) - X(r, c)), 0.5 * e.s * (1 + 1e-5));
        } else {
          EXPECT_FLOAT_EQ(f.value(r, c), static_cast<float>((e.u < e.lo ? e.lo : e.hi) * e.s));
        }
      }
    EXPECT_GT(inside, 0);
    if (s.symmetric && !s.narrow_range) {
      EXPECT_GT(outside, 0) << "the positive extreme is clipped";
    }
    EXPECT_NEAR(f.pass_fraction(), static_cast<double>(inside) / static_cast<double>(X.size()), 1e-12);
  }
}

TEST(FakeQuantSte, GivenParametersAreUsedAndStaticRangesClip) {
  // Static activation quantization: a calibrated range narrower than the data clips the tails.
  const RowMat X = test::uniform(8, 32, 3, 0.0f, 4.0f);
  const QuantScheme s = QuantScheme::per_tensor(8, false, false);
  const QuantParams p = params_from_range(0.0f, 2.0f, s);
  const FakeQuantSte f = fake_quant_ste(X, s, &p);
  EXPECT_EQ(f.params.scale(0, 0), p.scale(0, 0));
  for (Eigen::Index r = 0; r < X.rows(); ++r)
    for (Eigen::Index c = 0; c < X.cols(); ++c) {
      const bool in = X(r, c) / p.scale(0, 0) <= 255.0f;
      EXPECT_EQ(f.pass(r, c), in ? 1 : 0);
      if (!in) {
        EXPECT_FLOAT_EQ(f.value(r, c), 255.0f * p.scale(0, 0));
      }
    }
  EXPECT_LT(f.pass_fraction(), 0.7);
  EXPECT_GT(f.pass_fraction(), 0.3);
}

// Points at least `margin` (in units of u) away from every clipping boundary: resampled until they are.
RowMat away_from_boundaries(RowMat X, const QuantScheme& s, const QuantParams& p, double margin, uint64_t seed) {
  auto g = test::rng(seed);
  std::normal_distribution<float> d(0.0f, 0.3f);
  for (Eigen::Index r = 0; r < X.rows(); ++r)
    for (Eigen::Index c = 0; c < X.cols(); ++c)
      for (int tries = 0; tries < 1000; ++tries) {
        const Elem e = elem(X, s, p, r, c);
        if (std::fabs(e.u - e.lo) > margin && std::fabs(e.u - e.hi) > margin) break;
        X(r, c) = d(g);
      }
  return X;
}

TEST(FakeQuantSte, BackwardIsTheFiniteDifferenceOfTheSurrogate) {
  for (const QuantScheme& s : schemes()) {
    SCOPED_TRACE(s.describe());
    const RowMat X0 = with_positive_extreme(test::gaussian(12, 32, 5) * 0.3f);
    const QuantParams p = compute_params(X0, s);  // fixed parameters: constants of the backward pass
    const RowMat X = away_from_boundaries(X0, s, p, 0.01, 77);
    const RowMat G = test::gaussian(X.rows(), X.cols(), 6);
    const FakeQuantSte f = fake_quant_ste(X, s, &p);
    const RowMatrixXf grad = f.backward(G);
    // Surrogate of element (r, c) at x, frozen at X(r, c).
    auto surrogate = [&](Eigen::Index r, Eigen::Index c, double x) {
      const Elem e = elem(X, s, p, r, c);
      const bool in0 = e.u >= e.lo && e.u <= e.hi;
      const double d = in0 ? std::nearbyint(e.u) - e.u : 0.0;
      const double u = std::clamp(x / e.s, e.lo, e.hi);
      return e.s * (u + d);
    };
    int64_t n_in = 0, n_out = 0;
    for (Eigen::Index r = 0; r < X.rows(); ++r)
      for (Eigen::Index c = 0; c < X.cols(); ++c) {
        const Elem e = elem(X, s, p, r, c);
        // The surrogate reproduces the forward value at x0.
        ASSERT_NEAR(surrogate(r, c, X(r, c)), f.value(r, c), 1e-6 * (std::fabs(f.value(r, c)) + e.s)) << r << ", " << c;
        const double h = 1e-3 * e.s;  // moves u by 1e-3, below the 1e-2 margin
        const double fd = G(r, c) * (surrogate(r, c, X(r, c) + h) - surrogate(r, c, X(r, c) - h)) / (2 * h);
        ASSERT_NEAR(grad(r, c), fd, 1e-4 * (1 + std::fabs(fd))) << r << ", " << c;
        (f.pass(r, c) ? n_in : n_out)++;
      }
    EXPECT_GT(n_in, 0);  // both cases were exercised where the scheme clips
    if (s.symmetric && !s.narrow_range) {
      EXPECT_GT(n_out, 0);
    }
  }
}

TEST(FakeQuantSte, IntGridMatchesTheScheme) {
  const RowMat W = test::gaussian(16, 64, 21) * 0.05f;
  for (const QuantScheme& s : schemes()) {
    if (s.granularity == Granularity::PerTensor) continue;  // not a column-block grid
    SCOPED_TRACE(s.describe());
    IntGrid grid(s);
    const FakeQuantSte g = fake_quant_ste(W, grid);
    const FakeQuantSte f = fake_quant_ste(W, s);
    EXPECT_EQ(g.value, f.value);
    // The probed range is [(qmin - z)·s, (qmax - z)·s]; the masks agree except for elements on a boundary, where
    // the scheme tests x / s and the grid x against s·(q - z) (both round differently there).
    for (Eigen::Index r = 0; r < W.rows(); ++r)
      for (Eigen::Index c = 0; c < W.cols(); ++c) {
        const Elem e = elem(W, s, f.params, r, c);
        if (std::fabs(e.u - e.lo) < 1e-4 || std::fabs(e.u - e.hi) < 1e-4) continue;
        ASSERT_EQ(g.pass(r, c), f.pass(r, c)) << r << ", " << c;
      }
    // The grid recorded the codes of W: its tensor is the RTN result.
    const QuantizedTensor q = grid.to_tensor();
    EXPECT_EQ(q.dequantize(), f.value);
  }
}

// d of the Q4_0 block (row r, block b) of an encoding.
float q4_0_d(const std::vector<uint8_t>& bytes, int64_t cols, int64_t r, int64_t b) {
  const int64_t row_bytes = ggml::row_size(ggml::Type::Q4_0, cols);
  uint16_t h;
  std::memcpy(&h, bytes.data() + r * row_bytes + b * 18, 2);
  return fp16_to_fp32(h);
}

TEST(FakeQuantSte, GgmlQ4_0GridClipsAtItsBlockRange) {
  const RowMat W = test::gaussian(8, 128, 31) * 0.02f;
  ggml::GgmlGrid grid(ggml::Type::Q4_0);
  const FakeQuantSte f = fake_quant_ste(W, grid);
  // Values and bytes are ggml's own RTN.
  const std::vector<uint8_t> ref = ggml::quantize(ggml::Type::Q4_0, W.data(), W.rows(), W.cols());
  EXPECT_EQ(grid.encode(), ref);
  RowMatrixXf deq(W.rows(), W.cols());
  ggml::dequantize_rows(ggml::Type::Q4_0, ref.data(), W.rows(), W.cols(), deq.data());
  EXPECT_EQ(f.value, deq);
  // Q4_0 values are d·(q - 8), q in 0..15: the range is between -8d and 7d.
  int64_t outside = 0;
  for (Eigen::Index r = 0; r < W.rows(); ++r)
    for (Eigen::Index c = 0; c < W.cols(); ++c) {
      const float d = q4_0_d(ref, W.cols(), r, c / 32);
      const float a = -8.0f * d, b = 7.0f * d;
      const bool in = W(r, c) >= std::min(a, b) && W(r, c) <= std::max(a, b);
      ASSERT_EQ(f.pass(r, c), in ? 1 : 0) << r << ", " << c << " w " << W(r, c) << " d " << d;
      outside += !in;
    }
  EXPECT_GT(outside, 0);  // ggml's max-magnitude element maps to -8; same-signed opposite ones beyond 7d clip

  // Backward: finite differences of the surrogate clamp(w, lo, hi) + frozen residual, as for the schemes.
  const RowMat G = test::gaussian(W.rows(), W.cols(), 32);
  const RowMatrixXf grad = f.backward(G);
  for (Eigen::Index r = 0; r < W.rows(); ++r)
    for (Eigen::Index c = 0; c < W.cols(); ++c) {
      const double d = q4_0_d(ref, W.cols(), r, c / 32);
      const double lo = std::min(-8 * d, 7 * d), hi = std::max(-8 * d, 7 * d), w0 = W(r, c);
      if (std::fabs(w0 - lo) < 1e-2 * std::fabs(d) || std::fabs(w0 - hi) < 1e-2 * std::fabs(d)) continue;
      const double res = f.value(r, c) - std::clamp(w0, lo, hi);
      auto y = [&](double w) { return std::clamp(w, lo, hi) + res; };
      const double h = 1e-3 * std::fabs(d);
      const double fd = G(r, c) * (y(w0 + h) - y(w0 - h)) / (2 * h);
      ASSERT_NEAR(grad(r, c), fd, 1e-4 * (1 + std::fabs(fd))) << r << ", " << c;
    }
}

TEST(FakeQuantSte, KQuantSubBlocksClipOnlyAtTheirExtremeCodes) {
  // Q4_K: 8 sub-blocks of 32 per 256-column super-block, each with its own scale and min. An element whose
  // gradient is stopped must sit on an extreme value of its sub-block's grid, with the weight beyond it.
  const RowMat W = test::gaussian(4, 256, 41) * 0.02f;
  ggml::GgmlGrid grid(ggml::Type::Q4_K);
  const FakeQuantSte f = fake_quant_ste(W, grid);
  EXPECT_EQ(grid.encode(), ggml::quantize(ggml::Type::Q4_K, W.data(), W.rows(), W.cols()));
  for (Eigen::Index r = 0; r < W.rows(); ++r)
    for (Eigen::Index sb = 0; sb < 8; ++sb) {
      const auto vals = f.value.row(r).segment(sb * 32, 32);
      const float vmin = vals.minCoeff(), vmax = vals.maxCoeff();
      for (Eigen::Index j = 0; j < 32; ++j) {
        const Eigen::Index c = sb * 32 + j;
        if (f.pass(r, c)) continue;
        const float v = f.value(r, c), w = W(r, c);
        EXPECT_TRUE((v == vmax && w > v) || (v == vmin && w < v)) << r << ", " << c << " w " << w << " v " << v;
      }
    }
}

TEST(FakeQuantSte, FrozenGridParametersClipMovedWeights) {
  // Fit once, then move some weights far out: with refit = false the scales stay and those weights are clipped.
  const RowMat W = test::gaussian(8, 64, 51) * 0.02f;
  IntGrid grid(QuantScheme::per_group(4, 32));
  const FakeQuantSte f0 = fake_quant_ste(W, grid);
  RowMat W2 = W;
  W2(3, 5) = 1.0f;
  W2(6, 40) = -1.0f;
  const FakeQuantSte f1 = fake_quant_ste(W2, grid, {.importance = nullptr, .refit = false});
  EXPECT_EQ(f1.pass(3, 5), 0);
  EXPECT_EQ(f1.pass(6, 40), 0);
  const QuantParams& p = grid.params();
  EXPECT_FLOAT_EQ(f1.value(6, 40), static_cast<float>(-8 - p.zero_point(6, 1)) * p.scale(6, 1));
  // Every other element is quantized exactly as before.
  for (Eigen::Index r = 0; r < W.rows(); ++r)
    for (Eigen::Index c = 0; c < W.cols(); ++c)
      if (!((r == 3 && c == 5) || (r == 6 && c == 40))) {
        ASSERT_EQ(f1.value(r, c), f0.value(r, c));
        ASSERT_EQ(f1.pass(r, c), f0.pass(r, c));
      }
}

TEST(FakeQuantSte, Errors) {
  RowMat X = test::gaussian(4, 32, 1);
  const QuantScheme s = QuantScheme::per_group(4, 16);
  X(2, 7) = std::nanf("");
  EXPECT_THROW(fake_quant_ste(X, s), NumericError);
  IntGrid grid(s);
  EXPECT_THROW(fake_quant_ste(X, grid), NumericError);
  const RowMat Y = test::gaussian(4, 24, 2);
  EXPECT_THROW(fake_quant_ste(Y, s), InvalidArgument);     // 16 does not divide 24
  EXPECT_THROW(fake_quant_ste(Y, grid), InvalidArgument);  // nor the grid's block
  const QuantParams wrong(1, 1);
  EXPECT_THROW(fake_quant_ste(test::gaussian(4, 32, 3), s, &wrong), ShapeError);
  const PassMask m = PassMask::Ones(2, 3);
  EXPECT_THROW(ste_backward(m, RowMat::Zero(3, 2)), ShapeError);
}

}  // namespace
}  // namespace qk
