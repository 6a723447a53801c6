// Entry points of the ggml block products (qk/kernels/ggml_dot.hpp): Q8_0 activation quantization, argument
// checks, the activations unpacked once for the SIMD paths, the split over N and the choice of path. Compiled
// without ISA flags.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include <omp.h>

#include "ggml_dot_internal.hpp"
#include "qk/core/error.hpp"
#include "qk/core/half.hpp"
#include "qk/core/threads.hpp"
#include "qk/kernels/ggml_dot.hpp"

namespace qk::kernels {
namespace {

const detail::GgmlDotTable& table_for(Isa isa) {
  switch (isa) {
    case Isa::avx512vnni: return detail::ggml_dot_avx512vnni();
    case Isa::avx2:
    case Isa::avxvnni:
    case Isa::avx512: return detail::ggml_dot_avx2();
    case Isa::scalar: break;
  }
  return detail::ggml_dot_scalar();
}

const detail::GgmlDotTable& table(const Exec& ex) {
  if (ex.isa) {
    if (!cpu_supports(*ex.isa)) fail<InvalidArgument>("kernel path '{}' is not supported by this CPU", isa_name(*ex.isa));
    return table_for(*ex.isa);
  }
  return table_for(active_isa());
}

// Below this many multiply-adds a product runs on the calling thread.
constexpr int64_t kMinParallelMacs = int64_t{1} << 20;
// Rows of W a thread's range is rounded to (the SIMD kernels' widest register block).
constexpr int64_t kRowQuantum = 4;

}  // namespace

void quantize_row_q8_0(const float* x, int64_t k, ggml::BlockQ8_0* y, Q8Rounding r) {
  quantize_rows_q8_0(x, 1, k, k, y, r);
}

void quantize_rows_q8_0(const float* x, int64_t m, int64_t k, int64_t ldx, ggml::BlockQ8_0* y, Q8Rounding mode) {
  if (m < 0 || k <= 0 || k % 32 != 0) fail<InvalidArgument>("quantize_rows_q8_0: K = {} is not a positive multiple of 32 (M = {})", k, m);
  if (ldx < k) fail<InvalidArgument>("quantize_rows_q8_0: leading dimension {} < K = {}", ldx, k);
  if (m > 0 && (!x || !y)) fail<InvalidArgument>("quantize_rows_q8_0: null pointer");
  const int64_t nb = k / 32;
  for (int64_t r = 0; r < m; ++r) {
    const float* xr = x + r * ldx;
    for (int64_t b = 0; b < nb; ++b) {
      const float* v = xr + 32 * b;
      float amax = 0.0f;
      for (int j = 0; j < 32; ++j) {
        if (!std::isfinite(v[j])) fail<NumericError>("quantize_rows_q8_0: non-finite value at row {} column {}", r, 32 * b + j);
        amax = std::max(amax, std::fabs(v[j]));
      }
      const float d = amax / 127.0f;
      ggml::BlockQ8_0& out = y[r * nb + b];
      out.d = fp32_to_fp16(d);
      if (mode == Q8Rounding::reference) {  // quantize_row_q8_0_ref: roundf(x * (1 / d))
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 32; ++j) out.qs[j] = static_cast<int8_t>(std::round(v[j] * id));
      } else {  // the AVX2 quantize_row_q8_0: x * (127 / amax), rounded to nearest even (the default FP mode)
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        for (int j = 0; j < 32; ++j) out.qs[j] = static_cast<int8_t>(std::nearbyint(v[j] * id));
      }
    }
  }
}

std::string ggml_kernel_name(ggml::Type wtype, Isa isa) {
  const detail::GgmlDotTable& t = table_for(isa);
  if (wtype == ggml::Type::Q4_0) return t.q4_0_name;
  if (wtype == ggml::Type::Q8_0) return t.q8_0_name;
  fail<InvalidArgument>("ggml_gemm: no kernel for weight type {}", ggml::info(wtype).name);
}

void ggml_gemm(ggml::Type wtype, const void* w, int64_t n, int64_t k, const ggml::BlockQ8_0* a, int64_t m, float* y,
               int64_t ldy, const Exec& ex) {
  if (wtype != ggml::Type::Q4_0 && wtype != ggml::Type::Q8_0)
    fail<InvalidArgument>("ggml_gemm: no kernel for weight type {} (Q4_0 and Q8_0 have one)", ggml::info(wtype).name);
  if (n <= 0 || k <= 0 || k % 32 != 0)
    fail<ShapeError>("ggml_gemm: weights [{}, {}]: N must be positive and K a positive multiple of 32", n, k);
  if (m < 0) fail<ShapeError>("ggml_gemm: M must be >= 0, got {}", m);
  if (ldy < n) fail<InvalidArgument>("ggml_gemm: leading dimension {} of Y is smaller than N = {}", ldy, n);
  if (!w || (m > 0 && (!a || !y))) fail<InvalidArgument>("ggml_gemm: null pointer");
  const detail::GgmlDotTable& t = table(ex);
  const detail::GgmlDotFn fn = wtype == ggml::Type::Q4_0 ? t.q4_0 : t.q8_0;
  if (m == 0) return;

  detail::GgmlDotProblem p;
  p.w = static_cast<const uint8_t*>(w);
  p.row_bytes = ggml::row_size(wtype, k);
  p.k = k;
  p.nb = k / 32;
  p.m = m;
  p.a = a;
  p.y = y;
  p.ldy = ldy;

  // The activations once, unpacked (codes contiguous, scales as float); checks the code range.
  std::vector<int8_t> qa;
  std::vector<float> da;
  const int64_t blocks = m * p.nb;
  for (int64_t i = 0; i < blocks; ++i)
    for (int j = 0; j < 32; ++j)
      if (a[i].qs[j] == -128)
        fail<InvalidArgument>("ggml_gemm: activation row {} block {} holds the code -128 (codes must lie in -127..127)",
                              i / p.nb, i % p.nb);
  if (t.needs_panel) {
    qa.resize(static_cast<size_t>(m * k));
    da.resize(static_cast<size_t>(blocks));
    for (int64_t i = 0; i < blocks; ++i) {
      for (int j = 0; j < 32; ++j) qa[static_cast<size_t>(i * 32 + j)] = a[i].qs[j];
      da[static_cast<size_t>(i)] = fp16_to_fp32(a[i].d);
    }
    p.qa = qa.data();
    p.da = da.data();
  }
  std::shared_ptr<const void> work;
  if (t.prepare) {
    work = t.prepare(p, wtype == ggml::Type::Q4_0);
    p.work = work.get();
  }

  // Each thread takes one contiguous range of rows of W (a multiple of kRowQuantum but the last): every output
  // is computed by exactly one thread, in the same order whatever the thread count.
  const int nt = resolve_threads(ex.threads);
  const int64_t units = (n + kRowQuantum - 1) / kRowQuantum;
  if (nt <= 1 || units < 2 || m * n * k < kMinParallelMacs) {
    fn(p, 0, n);
    return;
  }
  const int parts = static_cast<int>(std::min<int64_t>(nt, units));
#pragma omp parallel for num_threads(parts) schedule(static, 1)
  for (int i = 0; i < parts; ++i) {
    const int64_t b = std::min(n, units * i / parts * kRowQuantum);
    const int64_t e = std::min(n, units * (i + 1) / parts * kRowQuantum);
    if (b < e) fn(p, b, e);
  }
}

void ggml_linear(ggml::Type wtype, const void* w, int64_t n, int64_t k, const float* x, int64_t m, int64_t ldx,
                 float* y, int64_t ldy, const Exec& ex, Q8Rounding r) {
  if (k <= 0 || k % 32 != 0) fail<ShapeError>("ggml_linear: K = {} is not a positive multiple of 32", k);
  std::vector<ggml::BlockQ8_0> a(static_cast<size_t>(std::max<int64_t>(m, 0) * (k / 32)));
  quantize_rows_q8_0(x, m, k, ldx, a.data(), r);
  ggml_gemm(wtype, w, n, k, a.data(), m, y, ldy, ex);
}

}  // namespace qk::kernels
