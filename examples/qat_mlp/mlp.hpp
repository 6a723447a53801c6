#pragma once
// A two-layer perceptron (64-128-10, ReLU, softmax cross-entropy) trained with mini-batch SGD (momentum) or Adam,
// with optional quantization-aware training of its two weight matrices through qk's primitives
// (qk/methods/qat.hpp): the straight-through estimator on min/max parameters, or LSQ's learned step.
//
// Weights are qk's [out_features, in_features]; a layer computes y = x · Wᵀ + b on row-major batches. Every matrix
// product goes through qk::linalg::sgemm, which splits work over output blocks only, so results are the same
// bytes on any thread count.
#include <cstdint>
#include <optional>
#include <vector>

#include <Eigen/Core>

#include <qk/core/scheme.hpp>
#include <qk/methods/lsq.hpp>

#include "digits.hpp"
#include "rng.hpp"

namespace qat_mlp {

using Matrix = qk::RowMatrixXf;

struct Layer {
  Matrix w;            // [out, in]
  Eigen::VectorXf b;   // [out]
};

struct Mlp {
  Layer l1, l2;
};

// He-uniform weights (U(-sqrt(6 / fan_in), +sqrt(6 / fan_in))), zero biases.
Mlp make_mlp(int64_t in, int64_t hidden, int64_t out, Rng& rng);

// y = x · wᵀ + b.
void linear(const Matrix& x, const Matrix& w, const Eigen::VectorXf& b, Matrix& y, int threads);
// The float forward pass with the given weights (the model's own, or quantized ones): logits [n, 10].
Matrix forward(const Mlp& m, const Matrix& x, int threads);
// ReLU activations of the hidden layer, [n, hidden].
Matrix hidden(const Mlp& m, const Matrix& x, int threads);
// Share of rows whose largest logit is the label (ties: the first).
double accuracy(const Matrix& logits, const std::vector<int>& labels);

enum class Optimizer { sgd, adam };
enum class WeightQuant {
  none,  // float weights
  ste,   // fake-quantized with per-channel min/max parameters recomputed every step; STE backward
  lsq,   // fake-quantized with a learned per-channel step (LSQ), initialised as LSQ does
};

// The weight scheme of the example: per output channel, signed symmetric codes (int4: -8..7, int2: -2..1).
inline qk::QuantScheme weight_scheme(int bits) { return qk::QuantScheme::per_channel(bits); }

struct TrainOptions {
  int epochs = 60;
  int64_t batch = 32;
  Optimizer optimizer = Optimizer::adam;
  float lr = 1e-3f;        // peak learning rate; cosine decay to 0 over the run
  float momentum = 0.9f;   // SGD
  WeightQuant quant = WeightQuant::none;
  int bits = 4;            // QAT weight bits
  int threads = 0;
};

struct Trained {
  Mlp model;                       // the float (shadow) weights
  std::optional<qk::LsqParams> step1, step2;  // learned steps (WeightQuant::lsq)
  double final_loss = 0.0;         // mean training loss of the last epoch
};

// Trains from `init` on `data`; the batch order comes from `rng`.
Trained train(const Mlp& init, const Dataset& data, const TrainOptions& o, Rng& rng);

}  // namespace qat_mlp
