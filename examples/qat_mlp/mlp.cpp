#include "mlp.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>

#include <qk/core/error.hpp>
#include <qk/linalg/sgemm.hpp>
#include <qk/methods/qat.hpp>

namespace qat_mlp {
namespace {

using qk::linalg::SgemmMutView;
using qk::linalg::SgemmView;

// C[m, n] = A[m, k] · B[n, k]ᵀ
void mm_abt(const Matrix& A, const Matrix& B, Matrix& C, int threads) {
  C.resize(A.rows(), B.rows());
  qk::linalg::sgemm(A.rows(), B.rows(), A.cols(), 1.0f, SgemmView{A.data(), A.cols(), 1},
                     SgemmView{B.data(), 1, B.cols()}, 0.0f, SgemmMutView{C.data(), C.cols(), 1}, threads);
}
// C[m, n] = A[k, m]ᵀ · B[k, n]
void mm_atb(const Matrix& A, const Matrix& B, Matrix& C, int threads) {
  C.resize(A.cols(), B.cols());
  qk::linalg::sgemm(A.cols(), B.cols(), A.rows(), 1.0f, SgemmView{A.data(), 1, A.cols()},
                     SgemmView{B.data(), B.cols(), 1}, 0.0f, SgemmMutView{C.data(), C.cols(), 1}, threads);
}
// C[m, n] = A[m, k] · B[k, n]
void mm_ab(const Matrix& A, const Matrix& B, Matrix& C, int threads) {
  C.resize(A.rows(), B.cols());
  qk::linalg::sgemm(A.rows(), B.cols(), A.cols(), 1.0f, SgemmView{A.data(), A.cols(), 1},
                     SgemmView{B.data(), B.cols(), 1}, 0.0f, SgemmMutView{C.data(), C.cols(), 1}, threads);
}

// Mean softmax cross-entropy of the logits z against the labels; dz = d(mean loss)/dz.
double softmax_xent(const Matrix& z, const std::vector<int>& y, Matrix& dz) {
  dz.resize(z.rows(), z.cols());
  double loss = 0.0;
  const float inv_n = 1.0f / static_cast<float>(z.rows());
  for (Eigen::Index r = 0; r < z.rows(); ++r) {
    const float mx = z.row(r).maxCoeff();
    double sum = 0.0;
    for (Eigen::Index c = 0; c < z.cols(); ++c) sum += std::exp(static_cast<double>(z(r, c) - mx));
    const int label = y[static_cast<size_t>(r)];
    loss += std::log(sum) - static_cast<double>(z(r, label) - mx);
    for (Eigen::Index c = 0; c < z.cols(); ++c) {
      const double p = std::exp(static_cast<double>(z(r, c) - mx)) / sum;
      dz(r, c) = static_cast<float>(p - (c == label ? 1.0 : 0.0)) * inv_n;
    }
  }
  return loss / static_cast<double>(z.rows());
}

// SGD with momentum (m = μ·m + g, p -= lr·m) or Adam (Kingma & Ba 2015, β1 0.9, β2 0.999, ε 1e-8) over the
// registered parameters. `positive` parameters (LSQ steps) are kept above 1e-8 after each update.
class Updater {
 public:
  Updater(Optimizer kind, float momentum) : kind_(kind), momentum_(momentum) {}
  void add(float* p, int64_t n, bool positive = false) {
    params_.push_back({p, n, positive});
    m_.emplace_back(static_cast<size_t>(n), 0.0f);
    v_.emplace_back(static_cast<size_t>(n), 0.0f);
  }
  // grads: one pointer per registered parameter, in registration order.
  void step(const std::vector<const float*>& grads, float lr) {
    ++t_;
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    const float c1 = static_cast<float>(1.0 - std::pow(b1, t_)), c2 = static_cast<float>(1.0 - std::pow(b2, t_));
    for (size_t i = 0; i < params_.size(); ++i) {
      const Param& p = params_[i];
      const float* g = grads[i];
      float* m = m_[i].data();
      float* v = v_[i].data();
      for (int64_t j = 0; j < p.n; ++j) {
        if (kind_ == Optimizer::sgd) {
          m[j] = momentum_ * m[j] + g[j];
          p.value[j] -= lr * m[j];
        } else {
          m[j] = static_cast<float>(b1) * m[j] + static_cast<float>(1 - b1) * g[j];
          v[j] = static_cast<float>(b2) * v[j] + static_cast<float>(1 - b2) * g[j] * g[j];
          p.value[j] -= lr * (m[j] / c1) / (std::sqrt(v[j] / c2) + static_cast<float>(eps));
        }
        if (p.positive) p.value[j] = std::max(p.value[j], 1e-8f);
      }
    }
  }

 private:
  struct Param {
    float* value;
    int64_t n;
    bool positive;
  };
  Optimizer kind_;
  float momentum_;
  int t_ = 0;
  std::vector<Param> params_;
  std::vector<std::vector<float>> m_, v_;
};

// The weight a layer computes with and what its backward pass needs.
struct QuantizedWeight {
  Matrix value;
  qk::PassMask pass;  // ste
};

QuantizedWeight quantize_weight(const Matrix& w, const TrainOptions& o, const qk::LsqParams* step) {
  switch (o.quant) {
    case WeightQuant::none:
      return {w, {}};
    case WeightQuant::ste: {
      qk::FakeQuantSte f = qk::fake_quant_ste(w, weight_scheme(o.bits));
      return {std::move(f.value), std::move(f.pass)};
    }
    case WeightQuant::lsq:
      return {qk::lsq_forward(w, *step, weight_scheme(o.bits)), {}};
  }
  return {w, {}};
}

// dL/dw (and dL/dstep for LSQ) from dL/d(quantized weight).
void weight_backward(const Matrix& w, const QuantizedWeight& q, const Matrix& grad_q, const TrainOptions& o,
                     const qk::LsqParams* step, Matrix& grad_w, Matrix& grad_step) {
  switch (o.quant) {
    case WeightQuant::none:
      grad_w = grad_q;
      return;
    case WeightQuant::ste:
      grad_w = qk::ste_backward(q.pass, grad_q);
      return;
    case WeightQuant::lsq: {
      qk::LsqGrad g = qk::lsq_backward(w, grad_q, *step, weight_scheme(o.bits));
      grad_w = std::move(g.x);
      grad_step = std::move(g.step);
      return;
    }
  }
}

}  // namespace

Mlp make_mlp(int64_t in, int64_t hidden_units, int64_t out, Rng& rng) {
  auto layer = [&](int64_t n_out, int64_t n_in) {
    Layer l{Matrix(n_out, n_in), Eigen::VectorXf::Zero(n_out)};
    const double a = std::sqrt(6.0 / static_cast<double>(n_in));
    for (Eigen::Index r = 0; r < n_out; ++r)
      for (Eigen::Index c = 0; c < n_in; ++c) l.w(r, c) = static_cast<float>(rng.uniform(-a, a));
    return l;
  };
  Mlp m;
  m.l1 = layer(hidden_units, in);
  m.l2 = layer(out, hidden_units);
  return m;
}

void linear(const Matrix& x, const Matrix& w, const Eigen::VectorXf& b, Matrix& y, int threads) {
  if (x.cols() != w.cols() || b.size() != w.rows())
    qk::fail<qk::ShapeError>("linear: input [{}, {}], weight [{}, {}], bias {}", x.rows(), x.cols(), w.rows(),
                             w.cols(), b.size());
  mm_abt(x, w, y, threads);
  y.rowwise() += b.transpose();
}

Matrix hidden(const Mlp& m, const Matrix& x, int threads) {
  Matrix h;
  linear(x, m.l1.w, m.l1.b, h, threads);
  return h.cwiseMax(0.0f);
}

Matrix forward(const Mlp& m, const Matrix& x, int threads) {
  Matrix z;
  linear(hidden(m, x, threads), m.l2.w, m.l2.b, z, threads);
  return z;
}

double accuracy(const Matrix& logits, const std::vector<int>& labels) {
  if (static_cast<size_t>(logits.rows()) != labels.size() || labels.empty())
    qk::fail<qk::ShapeError>("accuracy: {} rows of logits, {} labels", logits.rows(), labels.size());
  int64_t hit = 0;
  for (Eigen::Index r = 0; r < logits.rows(); ++r) {
    Eigen::Index best;
    logits.row(r).maxCoeff(&best);
    hit += best == labels[static_cast<size_t>(r)];
  }
  return static_cast<double>(hit) / static_cast<double>(labels.size());
}

Trained train(const Mlp& init, const Dataset& data, const TrainOptions& o, Rng& rng) {
  if (o.epochs < 1 || o.batch < 1) qk::fail<qk::InvalidArgument>("train: {} epochs of batch {}", o.epochs, o.batch);
  Trained t{init, std::nullopt, std::nullopt, 0.0};
  Mlp& m = t.model;
  const qk::QuantScheme scheme = weight_scheme(o.bits);
  if (o.quant == WeightQuant::lsq) {
    t.step1 = qk::lsq_init(m.l1.w, scheme);
    t.step2 = qk::lsq_init(m.l2.w, scheme);
  }
  Updater up(o.optimizer, o.momentum);
  up.add(m.l1.w.data(), m.l1.w.size());
  up.add(m.l1.b.data(), m.l1.b.size());
  up.add(m.l2.w.data(), m.l2.w.size());
  up.add(m.l2.b.data(), m.l2.b.size());
  if (t.step1) {
    up.add(t.step1->step.data(), t.step1->step.size(), true);
    up.add(t.step2->step.data(), t.step2->step.size(), true);
  }

  const int64_t n = data.size();
  const int64_t per_epoch = (n + o.batch - 1) / o.batch, total = per_epoch * o.epochs;
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  Matrix xb, h_pre, h, z, dz, dh, gq1, gq2, gw1, gw2, gs1, gs2;
  Eigen::VectorXf gb1, gb2;
  std::vector<int> yb;
  int64_t step = 0;
  for (int epoch = 0; epoch < o.epochs; ++epoch) {
    for (int64_t i = n - 1; i > 0; --i)
      std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(rng.below(static_cast<uint64_t>(i + 1)))]);
    double loss_sum = 0.0;
    for (int64_t b0 = 0; b0 < n; b0 += o.batch, ++step) {
      const int64_t bs = std::min(o.batch, n - b0);
      xb.resize(bs, data.x.cols());
      yb.resize(static_cast<size_t>(bs));
      for (int64_t i = 0; i < bs; ++i) {
        const int64_t r = order[static_cast<size_t>(b0 + i)];
        xb.row(i) = data.x.row(r);
        yb[static_cast<size_t>(i)] = data.y[static_cast<size_t>(r)];
      }
      const QuantizedWeight q1 = quantize_weight(m.l1.w, o, t.step1 ? &*t.step1 : nullptr);
      const QuantizedWeight q2 = quantize_weight(m.l2.w, o, t.step2 ? &*t.step2 : nullptr);
      linear(xb, q1.value, m.l1.b, h_pre, o.threads);
      h = h_pre.cwiseMax(0.0f);
      linear(h, q2.value, m.l2.b, z, o.threads);
      loss_sum += softmax_xent(z, yb, dz) * static_cast<double>(bs);
      // Backward: layer 2, ReLU, layer 1, then through the quantizers.
      mm_atb(dz, h, gq2, o.threads);
      gb2 = dz.colwise().sum().transpose();
      mm_ab(dz, q2.value, dh, o.threads);
      dh = (h_pre.array() > 0.0f).select(dh, 0.0f);
      mm_atb(dh, xb, gq1, o.threads);
      gb1 = dh.colwise().sum().transpose();
      weight_backward(m.l1.w, q1, gq1, o, t.step1 ? &*t.step1 : nullptr, gw1, gs1);
      weight_backward(m.l2.w, q2, gq2, o, t.step2 ? &*t.step2 : nullptr, gw2, gs2);
      const float lr = static_cast<float>(0.5 * o.lr *
                                          (1.0 + std::cos(std::numbers::pi * static_cast<double>(step) /
                                                          static_cast<double>(total))));
      std::vector<const float*> grads = {gw1.data(), gb1.data(), gw2.data(), gb2.data()};
      if (t.step1) {
        grads.push_back(gs1.data());
        grads.push_back(gs2.data());
      }
      up.step(grads, lr);
    }
    t.final_loss = loss_sum / static_cast<double>(n);
  }
  return t;
}

}  // namespace qat_mlp
