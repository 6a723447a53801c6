#pragma once
// Inference of the MLP with quantized layers, on qk's kernels (qk/kernels/gemm.hpp):
//  - W8A8 dynamic: int8 per-channel weights; each row of activations quantized at run time (uint8, zero-point 128,
//    scale max|x|/127), multiplied through the int8 GEMM (linear_w8a8_dynamic);
//  - W8A8 static: the same weights; each layer's input quantized with one scale and zero-point fixed beforehand by
//    a calibration observer (qk/calib) on the training set's activations (linear_w8a8_static);
//  - weight-only: any QuantizedTensor per layer, float activations; 4-bit weights run through the int4 kernel
//    (gemm_w4_f32, fp16 scales), other widths are dequantized and multiplied in float.
#include <string>
#include <string_view>

#include <qk/core/quantize.hpp>

#include "mlp.hpp"

namespace qat_mlp {

Matrix logits_w8a8_dynamic(const Mlp& m, const Matrix& x, int threads);

struct StaticRanges {
  std::string method;     // calibration method (qk::calib::make_observer name)
  float scale1 = 1.0f;    // input of layer 1 (the pixels)
  int zero1 = 0;
  float scale2 = 1.0f;    // input of layer 2 (the ReLU activations)
  int zero2 = 0;
};
// Observes the float model's layer inputs on x (the training set) with the named calibrator, for unsigned
// asymmetric 8-bit codes (both inputs are non-negative, so the ranges are [0, hi] and the zero-points 0).
StaticRanges calibrate(const Mlp& m, const Matrix& x, std::string_view method, int threads);
Matrix logits_w8a8_static(const Mlp& m, const StaticRanges& r, const Matrix& x, int threads);

struct QuantizedMlp {
  qk::QuantizedTensor w1, w2;
  Eigen::VectorXf b1, b2;
};
// Weight-only quantization of m's weights with the given parameters per layer (nullptr: min/max, qk::quantize).
QuantizedMlp quantize_weights(const Mlp& m, const qk::QuantScheme& s, const qk::QuantParams* p1 = nullptr,
                              const qk::QuantParams* p2 = nullptr);
Matrix logits_weight_only(const QuantizedMlp& q, const Matrix& x, int threads);

}  // namespace qat_mlp
