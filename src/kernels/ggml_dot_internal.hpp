#pragma once
// Private to src/kernels: what ggml_dot.cpp hands each path's ggml block product (qk/kernels/ggml_dot.hpp).
#include <cstdint>
#include <memory>

#include "qk/formats/ggml.hpp"
#include "qk/kernels/isa.hpp"

namespace qk::kernels::detail {

struct GgmlDotProblem {
  const uint8_t* w = nullptr;  // N rows of row_bytes
  int64_t row_bytes = 0;
  int64_t k = 0, nb = 0;  // nb = k / 32 blocks per row
  int64_t m = 0;
  const ggml::BlockQ8_0* a = nullptr;  // [m][nb] blocks (what the scalar oracle reads)
  // The same activations unpacked once for the SIMD paths (empty for the scalar path):
  const int8_t* qa = nullptr;   // [m][k] codes
  const float* da = nullptr;    // [m][nb] scales as float
  float* y = nullptr;
  int64_t ldy = 0;
  // What the path's prepare function built from the activations before the threads start (nullptr if none).
  const void* work = nullptr;
};

// Computes y[0..m, n0..n1). Never throws (it runs inside an OpenMP region).
using GgmlDotFn = void (*)(const GgmlDotProblem&, int64_t n0, int64_t n1);
// Builds a path's own form of the activations once per call, outside the parallel region (it may allocate).
using GgmlPrepFn = std::shared_ptr<const void> (*)(const GgmlDotProblem&, bool q4);

struct GgmlDotTable {
  Isa isa;
  bool needs_panel;  // reads qa / da
  GgmlPrepFn prepare;  // nullptr: none
  const char* q4_0_name;
  GgmlDotFn q4_0;
  const char* q8_0_name;
  GgmlDotFn q8_0;
};

const GgmlDotTable& ggml_dot_scalar();
const GgmlDotTable& ggml_dot_avx2();
const GgmlDotTable& ggml_dot_avx512vnni();

}  // namespace qk::kernels::detail
