#pragma once
// The digits experiment: train the float MLP once, then measure test accuracy after post-training quantization
// (PTQ) and after quantization-aware training (QAT) from the float model, one row per key:
//
//   fp32                        the float model
//   ptq_int8_dynamic            W8A8, activations quantized per row at run time (int8 GEMM)
//   ptq_int8_static_<method>    W8A8, activation ranges fixed on the training set by minmax / percentile /
//                               entropy / mse (qk/calib)
//   ptq_int4, ptq_int2          weight-only, per-channel symmetric min/max (RTN)
//   qat_int<b>_ste              weight-only, fine-tuned through fake quantization on min/max parameters (STE)
//   qat_int<b>_lsq              weight-only, fine-tuned with a learned per-channel step (LSQ)
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "mlp.hpp"

namespace qat_mlp {

struct ExperimentOptions {
  std::filesystem::path data;  // digits.npy
  uint64_t seed = 1;           // split, initialisation and batch order
  int threads = 0;             // 0: qk::resolve_threads (QK_NUM_THREADS, else OpenMP's default)
  TrainOptions fp32{.epochs = 60, .batch = 32, .optimizer = Optimizer::adam, .lr = 2e-3f};
  // QAT fine-tuning from the float model: SGD with momentum, as LSQ trains (its gradient scale assumes SGD; Adam
  // would normalise it away).
  TrainOptions qat{.epochs = 30, .batch = 32, .optimizer = Optimizer::sgd, .lr = 0.02f, .momentum = 0.9f};
};

struct Row {
  std::string key;
  std::string weights, activations;  // what is quantized, for the table
  double accuracy = 0.0;             // on the test set, in [0, 1]
};

struct Report {
  int64_t train_size = 0, test_size = 0;
  double fp32_train_loss = 0.0;
  std::vector<Row> rows;
  // FNV-1a of every evaluated model's test logits (bytes): equal reports come from equal computations.
  uint64_t fingerprint = 0;
  // The accuracy of a key; qk::InvalidArgument when there is none.
  double accuracy(std::string_view key) const;
};

Report run_experiment(const ExperimentOptions& o);

}  // namespace qat_mlp
