// LSQ and LSQ+ (qk/methods/lsq.hpp): the forward pass against the core's quantizer, the initialisations and the
// gradient scale against the papers' formulas, the backward pass against finite differences, and a descent on
// the step that reaches the MSE-optimal step.
//
// Finite differences: the quantizer is piecewise constant in x, s and b, so its true derivatives are 0 almost
// everywhere; LSQ defines the gradient through the straight-through estimator (round() has derivative 1, its value
// is kept). That is the derivative of the surrogate in which the rounding residual d = round(u0) - u0 is frozen at
// the evaluation point:
//     y~(x, s, b) = s · (clamp((x - b) / s, qn, qp) + d·[u0 inside]) + b,
// equal to the quantizer at (x0, s0, b0) and smooth away from the clipping boundaries. Its derivatives are
// LSQ's eq. 3 / 5 and LSQ+'s offset gradient exactly; the tests check lsq_backward against central differences of
// sum(G ⊙ y~) (times the gradient scale for s and b) at points at least 2% of a step away from the boundaries.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "qk/core/quantize.hpp"
#include "qk/methods/lsq.hpp"
#include "test_util.hpp"

namespace qk {
namespace {

using test::RowMat;

std::vector<QuantScheme> schemes() {
  std::vector<QuantScheme> v;
  for (int bits : {2, 3, 4, 8}) {
    v.push_back(QuantScheme::per_tensor(bits));
    v.push_back(QuantScheme::per_channel(bits));
    v.push_back(QuantScheme::per_group(bits, 8));
    v.push_back(QuantScheme::per_tensor(bits, false, false));   // LSQ+ unsigned
    v.push_back(QuantScheme::per_channel(bits, false, true));   // LSQ+ signed codes
    v.push_back(QuantScheme::per_group(bits, 8, false, false));
    v.push_back(QuantScheme::per_channel(bits, true, false));   // unsigned symmetric (GPTQ "sym")
  }
  return v;
}

Eigen::Index prow(const QuantScheme& s, Eigen::Index r) { return s.granularity == Granularity::PerTensor ? 0 : r; }

TEST(Lsq, CodeRangesAndGradientScale) {
  EXPECT_EQ(lsq_codes(QuantScheme::per_channel(4)).qn, -8);
  EXPECT_EQ(lsq_codes(QuantScheme::per_channel(4)).qp, 7);
  EXPECT_EQ(lsq_codes(QuantScheme::per_channel(2)).qn, -2);
  EXPECT_EQ(lsq_codes(QuantScheme::per_channel(2)).qp, 1);
  EXPECT_EQ(lsq_codes(QuantScheme::per_channel(4, true, false)).qn, -8);  // zero-point 8 of unsigned sym codes
  EXPECT_EQ(lsq_codes(QuantScheme::per_channel(4, true, false)).qp, 7);
  EXPECT_EQ(lsq_codes(QuantScheme::per_tensor(3, false, false)).qn, 0);  // LSQ's unsigned activations
  EXPECT_EQ(lsq_codes(QuantScheme::per_tensor(3, false, false)).qp, 7);
  // g = 1 / sqrt(N · Q_P)
  EXPECT_FLOAT_EQ(lsq_grad_scale(8192, QuantScheme::per_tensor(4)), static_cast<float>(1.0 / std::sqrt(8192.0 * 7)));
  EXPECT_FLOAT_EQ(lsq_grad_scale(100, QuantScheme::per_tensor(8, false, false)),
                  static_cast<float>(1.0 / std::sqrt(100.0 * 255)));
  EXPECT_THROW(lsq_grad_scale(0, QuantScheme::per_tensor(4)), InvalidArgument);
}

TEST(Lsq, InitialisationsFollowThePapers) {
  const RowMat X = test::gaussian(6, 32, 3) * 0.2f;
  for (const QuantScheme& s : schemes()) {
    SCOPED_TRACE(s.describe());
    const LsqParams p = lsq_init(X, s);
    const Eigen::Index span = s.span(X.cols());
    const double qp = lsq_codes(s).qp;
    for (Eigen::Index r = 0; r < p.step.rows(); ++r)
      for (Eigen::Index g = 0; g < p.step.cols(); ++g) {
        double sum = 0;
        int64_t n = 0;
        for (Eigen::Index i = 0; i < X.rows(); ++i)
          for (Eigen::Index c = g * span; c < (g + 1) * span; ++c)
            if (prow(s, i) == r) sum += std::fabs(X(i, c)), ++n;
        EXPECT_NEAR(p.step(r, g), 2.0 * (sum / n) / std::sqrt(qp), 1e-6);  // s = 2 mean|x| / sqrt(Q_P)
        EXPECT_EQ(p.offset(r, g), 0.0f);
      }
    // LSQ+ min-max: the core's parameters, b = -z·s.
    const LsqParams m = lsq_init_minmax(X, s);
    const QuantParams q = compute_params(X, s);
    EXPECT_EQ(m.step, q.scale);
    for (Eigen::Index r = 0; r < q.rows(); ++r)
      for (Eigen::Index g = 0; g < q.cols(); ++g)
        EXPECT_FLOAT_EQ(m.offset(r, g), s.symmetric ? 0.0f : -static_cast<float>(q.zero_point(r, g)) * q.scale(r, g));
  }
  // An all-zero group gets step 1, never 0.
  EXPECT_EQ(lsq_init(RowMat::Zero(2, 8), QuantScheme::per_channel(4)).step(1, 0), 1.0f);
}

TEST(Lsq, ForwardIsTheCoresQuantizer) {
  const RowMat X = test::gaussian(10, 32, 7) * 0.3f;
  for (const QuantScheme& s : schemes()) {
    SCOPED_TRACE(s.describe());
    const LsqParams p = lsq_init_minmax(X, s);
    const RowMatrixXf y = lsq_forward(X, p, s);
    const RowMatrixXf ref = fake_quant(X, s);
    if (s.symmetric) {
      EXPECT_EQ(y, ref);  // same quotient, clamp and rounding: bit-identical
    } else {
      // (x - b) / s = x / s + z and q·s + b = (q - z)·s up to float rounding: the values agree to a few ulps.
      const QuantParams q = compute_params(X, s);
      for (Eigen::Index r = 0; r < X.rows(); ++r)
        for (Eigen::Index c = 0; c < X.cols(); ++c)
          ASSERT_NEAR(y(r, c), ref(r, c), 1e-6f * q.scale(prow(s, r), c / s.span(X.cols())) * 64) << r << ", " << c;
    }
    // The export back to QuantParams gives the same quantizer.
    const QuantParams back = lsq_to_params(p, s);
    EXPECT_EQ(back.scale, compute_params(X, s).scale);
    EXPECT_EQ(back.zero_point, compute_params(X, s).zero_point);
  }
}

// Points at least `margin` (in codes) away from the clipping boundaries of their group.
RowMat away_from_boundaries(RowMat X, const LsqParams& p, const QuantScheme& s, double margin, uint64_t seed) {
  auto g = test::rng(seed);
  std::normal_distribution<float> d(0.0f, 0.4f);
  const LsqCodes k = lsq_codes(s);
  const Eigen::Index span = s.span(X.cols());
  for (Eigen::Index r = 0; r < X.rows(); ++r)
    for (Eigen::Index c = 0; c < X.cols(); ++c)
      for (int t = 0; t < 1000; ++t) {
        const double u = (X(r, c) - p.offset(prow(s, r), c / span)) / p.step(prow(s, r), c / span);
        if (std::fabs(u - k.qn) > margin && std::fabs(u - k.qp) > margin) break;
        X(r, c) = d(g);
      }
  return X;
}

TEST(Lsq, BackwardIsTheFiniteDifferenceOfTheSurrogate) {
  for (const QuantScheme& s : schemes()) {
    SCOPED_TRACE(s.describe());
    const RowMat X0 = test::gaussian(6, 32, 9) * 0.3f;
    // LSQ's initial step, narrowed so that elements fall outside the range in every scheme.
    LsqParams p = lsq_init(X0, s);
    p.step *= s.bits >= 8 ? 1.0f / 16 : 0.5f;
    if (!s.symmetric) p.offset.setConstant(-0.05f);
    for (Eigen::Index i = 0; i < p.offset.size(); ++i) p.offset.data()[i] *= 1.0f + 0.1f * static_cast<float>(i % 3);
    if (s.symmetric) p.offset.setZero();
    const RowMat X = away_from_boundaries(X0, p, s, 0.02, 10);
    const RowMat G = test::gaussian(X.rows(), X.cols(), 12);
    const LsqGrad grad = lsq_backward(X, G, p, s);
    const LsqCodes k = lsq_codes(s);
    const Eigen::Index span = s.span(X.cols());
    const int64_t n = s.granularity == Granularity::PerTensor ? X.size() : span;
    const double gscale = lsq_grad_scale(n, s);

    // The surrogate of element (r, c), frozen at (x0, s0, b0).
    auto residual = [&](Eigen::Index r, Eigen::Index c) {
      const double u = (X(r, c) - p.offset(prow(s, r), c / span)) / p.step(prow(s, r), c / span);
      return (u >= k.qn && u <= k.qp) ? std::nearbyint(u) - u : 0.0;
    };
    auto y = [&](double x, double st, double b, double d) { return st * (std::clamp((x - b) / st, 1.0 * k.qn, 1.0 * k.qp) + d) + b; };
    const RowMatrixXf fwd = lsq_forward(X, p, s);
    int64_t clipped = 0, inside = 0;
    for (Eigen::Index r = 0; r < X.rows(); ++r)
      for (Eigen::Index c = 0; c < X.cols(); ++c) {
        const double st = p.step(prow(s, r), c / span), b = p.offset(prow(s, r), c / span), d = residual(r, c);
        ASSERT_NEAR(y(X(r, c), st, b, d), fwd(r, c), 1e-6 * (std::fabs(fwd(r, c)) + st));
        const double h = 1e-3 * st;
        const double fd = G(r, c) * (y(X(r, c) + h, st, b, d) - y(X(r, c) - h, st, b, d)) / (2 * h);
        ASSERT_NEAR(grad.x(r, c), fd, 1e-4 * (1 + std::fabs(fd))) << "dx " << r << ", " << c;
        (grad.x(r, c) == 0.0f && G(r, c) != 0.0f ? clipped : inside)++;
      }
    EXPECT_GT(clipped, 0);
    EXPECT_GT(inside, 0);
    // Step and offset of every group: differentiate the sum over the group's elements.
    for (Eigen::Index pr = 0; pr < p.step.rows(); ++pr)
      for (Eigen::Index g = 0; g < p.step.cols(); ++g) {
        const double st = p.step(pr, g), b = p.offset(pr, g);
        auto loss = [&](double st2, double b2) {
          double L = 0;
          for (Eigen::Index r = 0; r < X.rows(); ++r) {
            if (prow(s, r) != pr) continue;
            for (Eigen::Index c = g * span; c < (g + 1) * span; ++c) L += G(r, c) * y(X(r, c), st2, b2, residual(r, c));
          }
          return L;
        };
        const double hs = 1e-4 * st;  // moves u by at most |u|·1e-4 < 1e-3, below the 2e-2 margin
        const double fd_s = gscale * (loss(st + hs, b) - loss(st - hs, b)) / (2 * hs);
        EXPECT_NEAR(grad.step(pr, g), fd_s, 2e-4 * (1 + std::fabs(fd_s))) << "ds [" << pr << ", " << g << "]";
        const double hb = 1e-3 * st;
        const double fd_b = gscale * (loss(st, b + hb) - loss(st, b - hb)) / (2 * hb);
        if (s.symmetric) {
          EXPECT_EQ(grad.offset(pr, g), 0.0f);
        } else {
          EXPECT_NEAR(grad.offset(pr, g), fd_b, 2e-4 * (1 + std::fabs(fd_b))) << "db [" << pr << ", " << g << "]";
        }
      }
  }
}

TEST(Lsq, OptionsScaleAndFreezeTheOffset) {
  const QuantScheme s = QuantScheme::per_tensor(4, false, false);
  const RowMat X = test::gaussian(8, 16, 13);
  const RowMat G = test::gaussian(8, 16, 14);
  LsqParams p = lsq_init(X, s);
  p.offset(0, 0) = -0.3f;
  const LsqGrad a = lsq_backward(X, G, p, s);
  const LsqGrad b = lsq_backward(X, G, p, s, {.grad_scale = 1.0f, .learn_offset = false});
  EXPECT_NEAR(b.step(0, 0) * lsq_grad_scale(X.size(), s), a.step(0, 0), 1e-6 * (1 + std::fabs(a.step(0, 0))));
  EXPECT_NE(a.offset(0, 0), 0.0f);
  EXPECT_EQ(b.offset(0, 0), 0.0f);
  EXPECT_EQ(a.x, b.x);
}

TEST(Lsq, DescentOnTheStepReachesTheMseOptimalStep) {
  // Minimise mean (Q(x) - x)² over the step of a 3-bit quantizer of Gaussian data with LSQ's gradient, from a
  // step 4x too large. The MSE-optimal step is found by a fine grid search; the descent must reach its loss.
  const QuantScheme s = QuantScheme::per_tensor(3);
  const RowMat X = test::gaussian(64, 64, 15);
  auto mse = [&](const LsqParams& p) { return (lsq_forward(X, p, s) - X).squaredNorm() / static_cast<double>(X.size()); };
  LsqParams best{RowMatrixXf::Constant(1, 1, 0.01f), RowMatrixXf::Zero(1, 1)};
  double best_mse = mse(best);
  for (float st = 0.01f; st < 2.0f; st += 0.001f) {
    const LsqParams q{RowMatrixXf::Constant(1, 1, st), RowMatrixXf::Zero(1, 1)};
    if (const double m = mse(q); m < best_mse) best_mse = m, best = q;
  }
  LsqParams p = lsq_init(X, s);
  p.step *= 4.0f;
  const double start = mse(p);
  for (int it = 0; it < 300; ++it) {
    const RowMatrixXf y = lsq_forward(X, p, s);
    const RowMatrixXf G = 2.0f * (y - X) / static_cast<float>(X.size());  // dL/dy of the mean square error
    const LsqGrad g = lsq_backward(X, G, p, s, {.grad_scale = 1.0f});
    p.step(0, 0) -= 0.05f * g.step(0, 0);
  }
  EXPECT_LT(mse(p), 1.02 * best_mse) << "step " << p.step(0, 0) << " vs the grid's " << best.step(0, 0);
  EXPECT_LT(mse(p), 0.25 * start);
  // The found step is 2·mean|x|/sqrt(Q_P)'s neighbourhood: LSQ's initialisation is a good start, not the optimum.
  EXPECT_NEAR(p.step(0, 0), best.step(0, 0), 0.05 * best.step(0, 0));
}

TEST(Lsq, Errors) {
  const QuantScheme s = QuantScheme::per_channel(4);
  RowMat X = test::gaussian(4, 8, 1);
  LsqParams p = lsq_init(X, s);
  LsqParams bad = p;
  bad.step(2, 0) = 0.0f;
  EXPECT_THROW(lsq_forward(X, bad, s), InvalidArgument);
  bad = p;
  bad.offset(1, 0) = 0.5f;  // symmetric schemes have no offset
  EXPECT_THROW(lsq_forward(X, bad, s), InvalidArgument);
  EXPECT_THROW(lsq_forward(X, p, QuantScheme::per_tensor(4)), ShapeError);
  EXPECT_THROW(lsq_backward(X, RowMat::Zero(4, 7), p, s), ShapeError);
  X(1, 3) = std::numeric_limits<float>::infinity();
  EXPECT_THROW(lsq_forward(X, p, s), NumericError);
  EXPECT_THROW(lsq_backward(X, RowMat::Zero(4, 8), p, s), NumericError);
}

}  // namespace
}  // namespace qk
