// ggml block encodings: the type table, row and matrix entry points, and the decoders.
// Decoders follow ggml/src/ggml-quants.c dequantize_row_<type> (llama.cpp c392e50), keeping its float operations
// (products in the same order, no fused multiply-add) so the floats are identical.
// Bit-exactness with ggml needs every a*b+c rounded twice, as ggml's baseline build does: CMake compiles the
// ggml sources with -ffp-contract=off so FMA-enabled builds (-march=native) cannot fuse them.
#include <algorithm>
#include <array>
#include <iterator>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstring>

#include <omp.h>

#include "ggml_internal.hpp"
#include "qk/core/error.hpp"
#include "qk/core/threads.hpp"
#include "qk/detail/omp.hpp"
#include "qk/io/gguf.hpp"

namespace qk::ggml {
namespace {

// What qk's encoders do with each type (is it a weight type of GGUF files; does its encoder take an importance
// vector); names and block sizes come from io's ggml type table (qk/io/gguf.hpp), the only one.
struct Capability {
  Type type;
  bool storage, uses_importance;
};
constexpr Capability kCapabilities[] = {
    {Type::Q4_0, true, true},  {Type::Q4_1, true, true},  {Type::Q5_0, true, true},  {Type::Q5_1, true, true},
    {Type::Q8_0, true, false}, {Type::Q2_K, true, true},  {Type::Q3_K, true, true},  {Type::Q4_K, true, true},
    {Type::Q5_K, true, true},  {Type::Q6_K, true, true},  {Type::Q8_K, false, false}, {Type::IQ4_NL, true, true},
};
constexpr size_t kTypeCount = std::size(kCapabilities);

const std::array<TypeInfo, kTypeCount>& table() {
  static const std::array<TypeInfo, kTypeCount> t = [] {
    std::array<TypeInfo, kTypeCount> out{};
    for (size_t i = 0; i < kTypeCount; ++i) {
      const Capability& c = kCapabilities[i];
      const io::GgmlTypeInfo* g = io::ggml_type_info(static_cast<int>(c.type));
      out[i] = TypeInfo{c.type, g->ggml_name, g->block_size, g->type_size,
                        8.0 * g->type_size / g->block_size, c.storage, c.uses_importance};
    }
    return out;
  }();
  return t;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

void check_shape(Type t, int64_t rows, int64_t cols) {
  const TypeInfo& ti = info(t);
  if (rows < 0) fail<InvalidArgument>("ggml {}: row count must be >= 0, got {}", ti.name, rows);
  if (cols <= 0 || cols % ti.block_elems != 0)
    fail<InvalidArgument>("ggml {}: row length {} is not a positive multiple of the block size {}", ti.name, cols,
                          ti.block_elems);
}

}  // namespace

std::span<const TypeInfo> types() { return table(); }

const TypeInfo& info(Type t) {
  for (const TypeInfo& ti : table())
    if (ti.type == t) return ti;
  fail<InvalidArgument>("ggml type id {} is not supported", static_cast<uint32_t>(t));
}

std::optional<Type> type_from_name(std::string_view name) {
  for (const TypeInfo& ti : table())
    if (iequals(ti.name, name)) return ti.type;
  return std::nullopt;
}

std::optional<Type> type_from_id(uint32_t id) {
  for (const TypeInfo& ti : table())
    if (static_cast<uint32_t>(ti.type) == id) return ti.type;
  return std::nullopt;
}

int64_t row_size(Type t, int64_t cols) {
  check_shape(t, 0, cols);
  const TypeInfo& ti = info(t);
  return cols / ti.block_elems * ti.block_bytes;
}

namespace detail {

void quantize_row(Type t, const float* x, int64_t n, void* y, const float* qw) {
  const int64_t nb = n / info(t).block_elems;
  // The 32-element types' weighted path takes sigma2 = mean(x^2) over the whole row (quantize_row_<t>_impl).
  float sigma2 = 0.0f;
  if (qw && (t == Type::Q4_0 || t == Type::Q4_1 || t == Type::Q5_0 || t == Type::Q5_1)) {
    float sum_x2 = 0;
    for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
    sigma2 = sum_x2 / static_cast<float>(n);
  }
  switch (t) {
    case Type::Q4_0: {
      auto* b = static_cast<BlockQ4_0*>(y);
      for (int64_t i = 0; i < nb; ++i) encode_q4_0(x + 32 * i, qw ? qw + 32 * i : nullptr, sigma2, b + i, nullptr);
      break;
    }
    case Type::Q4_1: {
      auto* b = static_cast<BlockQ4_1*>(y);
      for (int64_t i = 0; i < nb; ++i) encode_q4_1(x + 32 * i, qw ? qw + 32 * i : nullptr, sigma2, b + i, nullptr);
      break;
    }
    case Type::Q5_0: {
      auto* b = static_cast<BlockQ5_0*>(y);
      for (int64_t i = 0; i < nb; ++i) encode_q5_0(x + 32 * i, qw ? qw + 32 * i : nullptr, sigma2, b + i, nullptr);
      break;
    }
    case Type::Q5_1: {
      auto* b = static_cast<BlockQ5_1*>(y);
      for (int64_t i = 0; i < nb; ++i) encode_q5_1(x + 32 * i, qw ? qw + 32 * i : nullptr, sigma2, b + i, nullptr);
      break;
    }
    case Type::Q8_0: {
      auto* b = static_cast<BlockQ8_0*>(y);
      for (int64_t i = 0; i < nb; ++i) encode_q8_0(x + 32 * i, b + i, nullptr);
      break;
    }
    case Type::IQ4_NL: {
      auto* b = static_cast<BlockIQ4_NL*>(y);
      for (int64_t i = 0; i < nb; ++i) encode_iq4_nl(x + 32 * i, qw ? qw + 32 * i : nullptr, b + i, nullptr);
      break;
    }
    case Type::Q2_K: {
      auto* b = static_cast<BlockQ2_K*>(y);
      for (int64_t i = 0; i < nb; ++i) encode_q2_K(x + QK_K * i, qw ? qw + QK_K * i : nullptr, b + i);
      break;
    }
    case Type::Q3_K: {
      auto* b = static_cast<BlockQ3_K*>(y);
      for (int64_t i = 0; i < nb; ++i) encode_q3_K(x + QK_K * i, qw ? qw + QK_K * i : nullptr, b + i);
      break;
    }
    case Type::Q4_K: {
      auto* b = static_cast<BlockQ4_K*>(y);
      int64_t i = 0;
      for (; i + 1 < nb; i += 2) encode_q4_K_pair(x + QK_K * i, qw ? qw + QK_K * i : nullptr, b + i);
      for (; i < nb; ++i) encode_q4_K(x + QK_K * i, qw ? qw + QK_K * i : nullptr, b + i);
      break;
    }
    case Type::Q5_K: {
      auto* b = static_cast<BlockQ5_K*>(y);
      int64_t i = 0;
      for (; i + 1 < nb; i += 2) encode_q5_K_pair(x + QK_K * i, qw ? qw + QK_K * i : nullptr, b + i);
      for (; i < nb; ++i) encode_q5_K(x + QK_K * i, qw ? qw + QK_K * i : nullptr, b + i);
      break;
    }
    case Type::Q6_K: {
      auto* b = static_cast<BlockQ6_K*>(y);
      for (int64_t i = 0; i < nb; ++i) encode_q6_K(x + QK_K * i, qw ? qw + QK_K * i : nullptr, b + i);
      break;
    }
    case Type::Q8_K: {
      auto* b = static_cast<BlockQ8_K*>(y);
      for (int64_t i = 0; i < nb; ++i) encode_q8_K(x + QK_K * i, b + i);
      break;
    }
  }
}

void dequantize_row(Type t, const void* vx, int64_t n, float* y) {
  const int64_t nb = n / info(t).block_elems;
  switch (t) {
    case Type::Q4_0: {
      const auto* x = static_cast<const BlockQ4_0*>(vx);
      for (int64_t i = 0; i < nb; ++i, y += 32) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < 16; ++j) {
          y[j] = static_cast<float>((x[i].qs[j] & 0x0F) - 8) * d;
          y[j + 16] = static_cast<float>((x[i].qs[j] >> 4) - 8) * d;
        }
      }
      break;
    }
    case Type::Q4_1: {
      const auto* x = static_cast<const BlockQ4_1*>(vx);
      for (int64_t i = 0; i < nb; ++i, y += 32) {
        const float d = h2f(x[i].d), m = h2f(x[i].m);
        for (int j = 0; j < 16; ++j) {
          y[j] = static_cast<float>(x[i].qs[j] & 0x0F) * d + m;
          y[j + 16] = static_cast<float>(x[i].qs[j] >> 4) * d + m;
        }
      }
      break;
    }
    case Type::Q5_0: {
      const auto* x = static_cast<const BlockQ5_0*>(vx);
      for (int64_t i = 0; i < nb; ++i, y += 32) {
        const float d = h2f(x[i].d);
        uint32_t qh;
        std::memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < 16; ++j) {
          const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
          y[j] = static_cast<float>(((x[i].qs[j] & 0x0F) | h0) - 16) * d;
          y[j + 16] = static_cast<float>(((x[i].qs[j] >> 4) | h1) - 16) * d;
        }
      }
      break;
    }
    case Type::Q5_1: {
      const auto* x = static_cast<const BlockQ5_1*>(vx);
      for (int64_t i = 0; i < nb; ++i, y += 32) {
        const float d = h2f(x[i].d), m = h2f(x[i].m);
        uint32_t qh;
        std::memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < 16; ++j) {
          const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
          y[j] = static_cast<float>((x[i].qs[j] & 0x0F) | h0) * d + m;
          y[j + 16] = static_cast<float>((x[i].qs[j] >> 4) | h1) * d + m;
        }
      }
      break;
    }
    case Type::Q8_0: {
      const auto* x = static_cast<const BlockQ8_0*>(vx);
      for (int64_t i = 0; i < nb; ++i, y += 32) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
      }
      break;
    }
    case Type::IQ4_NL: {
      const auto* x = static_cast<const BlockIQ4_NL*>(vx);
      for (int64_t i = 0; i < nb; ++i, y += 32) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < 16; ++j) {
          y[j] = d * static_cast<float>(kIQ4NLValues[x[i].qs[j] & 0xF]);
          y[j + 16] = d * static_cast<float>(kIQ4NLValues[x[i].qs[j] >> 4]);
        }
      }
      break;
    }
    case Type::Q2_K: {
      const auto* x = static_cast<const BlockQ2_K*>(vx);
      for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d), min = h2f(x[i].dmin);
        const uint8_t* q = x[i].qs;
        int is = 0;
        for (int n = 0; n < QK_K; n += 128, q += 32) {
          for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; ++half) {
              const uint8_t sc = x[i].scales[is++];
              const float dl = d * static_cast<float>(sc & 0xF), ml = min * static_cast<float>(sc >> 4);
              for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l + 16 * half] >> shift) & 3) - ml;
            }
          }
        }
      }
      break;
    }
    case Type::Q3_K: {
      const auto* x = static_cast<const BlockQ3_K*>(vx);
      for (int64_t i = 0; i < nb; ++i) {
        const float d_all = h2f(x[i].d);
        const uint8_t* q = x[i].qs;
        const uint8_t* hm = x[i].hmask;
        uint8_t m = 1;
        int is = 0;
        for (int n = 0; n < QK_K; n += 128, q += 32) {
          for (int shift = 0; shift < 8; shift += 2, m = static_cast<uint8_t>(m << 1)) {
            for (int half = 0; half < 2; ++half) {
              const float dl = d_all * static_cast<float>(detail::scale_q3_K(is++, x[i].scales));
              for (int l = 0; l < 16; ++l) {
                const int k = l + 16 * half;
                const int v = ((q[k] >> shift) & 3) - ((hm[k] & m) ? 0 : 4);
                *y++ = dl * static_cast<float>(v);
              }
            }
          }
        }
      }
      break;
    }
    case Type::Q4_K: {
      const auto* x = static_cast<const BlockQ4_K*>(vx);
      for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d), min = h2f(x[i].dmin);
        const uint8_t* q = x[i].qs;
        for (int j = 0, is = 0; j < QK_K; j += 64, q += 32, is += 2) {
          uint8_t sc, m;
          scale_min_k4(is, x[i].scales, &sc, &m);
          const float d1 = d * static_cast<float>(sc), m1 = min * static_cast<float>(m);
          scale_min_k4(is + 1, x[i].scales, &sc, &m);
          const float d2 = d * static_cast<float>(sc), m2 = min * static_cast<float>(m);
          for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
          for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
        }
      }
      break;
    }
    case Type::Q5_K: {
      const auto* x = static_cast<const BlockQ5_K*>(vx);
      for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d), min = h2f(x[i].dmin);
        const uint8_t* ql = x[i].qs;
        const uint8_t* qh = x[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0, is = 0; j < QK_K; j += 64, ql += 32, is += 2) {
          uint8_t sc, m;
          scale_min_k4(is, x[i].scales, &sc, &m);
          const float d1 = d * static_cast<float>(sc), m1 = min * static_cast<float>(m);
          scale_min_k4(is + 1, x[i].scales, &sc, &m);
          const float d2 = d * static_cast<float>(sc), m2 = min * static_cast<float>(m);
          for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
          for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
          u1 = static_cast<uint8_t>(u1 << 2);
          u2 = static_cast<uint8_t>(u2 << 2);
        }
      }
      break;
    }
    case Type::Q6_K: {
      const auto* x = static_cast<const BlockQ6_K*>(vx);
      for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d);
        const uint8_t* ql = x[i].ql;
        const uint8_t* qh = x[i].qh;
        const int8_t* sc = x[i].scales;
        for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
            y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
            y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
            y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
          }
        }
      }
      break;
    }
    case Type::Q8_K: {
      const auto* x = static_cast<const BlockQ8_K*>(vx);
      for (int64_t i = 0; i < nb; ++i)
        for (int j = 0; j < QK_K; ++j) *y++ = x[i].d * static_cast<float>(x[i].qs[j]);
      break;
    }
  }
}

bool encoded_row_finite(Type t, const float* x, int64_t n, const void* y) noexcept {
  // Every scale of a block is at most about its largest |x|, so blocks inside the fp16 range cannot overflow; only
  // blocks beyond it are decoded (one at a time, on the stack: nothing here allocates or throws).
  const TypeInfo& ti = info(t);
  const int64_t B = ti.block_elems;
  float d[256];
  if (B <= 0 || B > 256) return true;
  for (int64_t b0 = 0; b0 + B <= n; b0 += B) {
    float amax = 0;
    for (int64_t j = 0; j < B; ++j) amax = std::max(amax, std::fabs(x[b0 + j]));
    if (amax <= 65504.0f) continue;
    dequantize_row(t, static_cast<const uint8_t*>(y) + b0 / B * ti.block_bytes, B, d);
    float dmax = 0;
    for (int64_t j = 0; j < B; ++j) {
      if (!std::isfinite(d[j])) return false;
      dmax = std::max(dmax, std::fabs(d[j]));
    }
    // beyond the scales' range some encoders give up and write zeros (q3_K, q6_K at 1e38): as wrong as an Inf
    if (dmax < 0.5f * amax) return false;
  }
  return true;
}

}  // namespace detail

void quantize_rows(Type t, const float* src, int64_t rows, int64_t cols, void* dst, const float* importance,
                   int threads) {
  check_shape(t, rows, cols);
  const TypeInfo& ti = info(t);
  if (rows == 0) return;
  if (!src || !dst) fail<InvalidArgument>("ggml {}: null source or destination", ti.name);
  const float* qw = ti.uses_importance ? importance : nullptr;
  if (qw) {
    for (int64_t j = 0; j < cols; ++j)
      if (!std::isfinite(qw[j]) || qw[j] < 0.0f)
        fail<InvalidArgument>("ggml {}: importance[{}] = {} is not a finite non-negative weight", ti.name, j, qw[j]);
  }
  const int64_t rs = row_size(t, cols);
  const int nt = resolve_threads(threads);
  // Work per row varies little; small problems stay on one thread.
  const bool parallel = nt > 1 && rows > 1 && rows * cols >= (int64_t{1} << 15);
  std::atomic<int64_t> bad{-1}, overflow{-1};
  qk::detail::FirstException errors;  // nothing may leave the region (qk/detail/omp.hpp)
#pragma omp parallel for schedule(dynamic, 4) num_threads(nt) if (parallel)
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = src + r * cols;
    bool finite = true;
    for (int64_t j = 0; j < cols; ++j) finite &= std::isfinite(x[j]);
    if (!finite) {
      int64_t expected = -1;
      bad.compare_exchange_strong(expected, r);
      continue;
    }
    errors.run([&] {
      uint8_t* y = static_cast<uint8_t*>(dst) + r * rs;
      detail::quantize_row(t, x, cols, y, qw);
      if (!detail::encoded_row_finite(t, x, cols, y)) {
        int64_t expected = -1;
        overflow.compare_exchange_strong(expected, r);
      }
    });
  }
  errors.rethrow();
  if (const int64_t r = bad.load(); r >= 0) {
    const float* x = src + r * cols;
    int64_t j = 0;
    while (j < cols && std::isfinite(x[j])) ++j;
    fail<NumericError>("ggml {}: non-finite value {} at row {}, column {}", ti.name, x[j], r, j);
  }
  if (const int64_t r = overflow.load(); r >= 0) {
    float amax = 0;
    for (int64_t j = 0; j < cols; ++j) amax = std::max(amax, std::fabs(src[r * cols + j]));
    fail<NumericError>("ggml {}: row {}: weights up to {} are beyond what the type's fp16 scales can encode", ti.name,
                       r, amax);
  }
}

std::vector<uint8_t> quantize(Type t, const float* src, int64_t rows, int64_t cols, const float* importance,
                              int threads) {
  check_shape(t, rows, cols);
  std::vector<uint8_t> out(static_cast<size_t>(rows * row_size(t, cols)));
  quantize_rows(t, src, rows, cols, out.data(), importance, threads);
  return out;
}

void dequantize_rows(Type t, const void* src, int64_t rows, int64_t cols, float* dst, int threads) {
  check_shape(t, rows, cols);
  if (rows == 0) return;
  if (!src || !dst) fail<InvalidArgument>("ggml {}: null source or destination", info(t).name);
  const int64_t rs = row_size(t, cols);
  const int nt = resolve_threads(threads);
  const bool parallel = nt > 1 && rows > 1 && rows * cols >= (int64_t{1} << 18);
#pragma omp parallel for schedule(static) num_threads(nt) if (parallel)
  for (int64_t r = 0; r < rows; ++r)  // the decoders throw nothing (types and shapes were checked)
    detail::dequantize_row(t, static_cast<const uint8_t*>(src) + r * rs, cols, dst + r * cols);
}

}  // namespace qk::ggml
