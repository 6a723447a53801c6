// GgmlGrid: GPTQ/AWQ/RTN onto ggml block types (see include/qk/formats/ggml.hpp).
//
// fit() runs the type's own encoder (ggml_encode_legacy.cpp, ggml_encode_k.cpp) on each row's block of the current weights, which fixes the
// block's fp16 scales (and its sub-block scale codes for the K-quants); quantize_column() then rounds a column with
// the final rounding rule of ggml's quantizer for that type (ggml-quants.c, llama.cpp c392e50):
//   Q4_0 / Q5_0   q = min(2^b - 1, trunc(x * id + 2^(b-1) + 0.5)), id = 1/d before fp16 rounding
//   Q4_1 / Q5_1   q = min(2^b - 1, trunc((x - min) * id + 0.5))
//   Q8_0          q = round(x * id)
//   IQ4_NL        q = nearest table entry to x * id
//   Q2_K..Q6_K    q = nearest_int((x + dmin * m) / (d * sc)) with the stored (rounded) d, dmin, sc, m; a sub-block
//                 whose scale is 0 keeps the codes of the fit
// so that, with unchanged weights, the bytes are those of the direct encoder. Out-of-range values (after GPTQ
// updates) are clamped to the representable codes. The returned values are computed with the same float
// operations as dequantize_rows, so decoding encode() reproduces them exactly.
// Bit-exactness with ggml needs every a*b+c rounded twice, as ggml's baseline build does: CMake compiles the
// ggml sources with -ffp-contract=off so FMA-enabled builds (-march=native) cannot fuse them.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "ggml_internal.hpp"
#include "qk/core/error.hpp"
#include "qk/core/threads.hpp"


namespace qk::ggml {
namespace {

using detail::h2f;

int sub_blocks(Type t) {
  switch (t) {
    case Type::Q4_K:
    case Type::Q5_K:
      return 8;
    case Type::Q2_K:
    case Type::Q3_K:
    case Type::Q6_K:
      return 16;
    default:
      return 1;
  }
}

// ---- code access inside one block (element e of the block; codes as ggml's L values)
template <Type T>
int get_code(const uint8_t* b, int e) {
  if constexpr (T == Type::Q4_0 || T == Type::IQ4_NL || T == Type::Q4_1) {
    constexpr int qs = T == Type::Q4_1 ? 4 : 2;
    return (b[qs + e % 16] >> (4 * (e / 16))) & 0xF;
  } else if constexpr (T == Type::Q5_0 || T == Type::Q5_1) {
    constexpr int qh = T == Type::Q5_1 ? 4 : 2, qs = qh + 4;
    const int lo = (b[qs + e % 16] >> (4 * (e / 16))) & 0xF;
    return lo | (((b[qh + e / 8] >> (e % 8)) & 1) << 4);
  } else if constexpr (T == Type::Q8_0) {
    return static_cast<int8_t>(b[2 + e]);
  } else if constexpr (T == Type::Q4_K || T == Type::Q5_K) {
    constexpr int qs = T == Type::Q5_K ? 48 : 16;
    int q = (b[qs + (e / 64) * 32 + e % 32] >> (4 * ((e % 64) / 32))) & 0xF;
    if constexpr (T == Type::Q5_K) q |= ((b[16 + e % 32] >> (e / 32)) & 1) << 4;
    return q;
  } else if constexpr (T == Type::Q6_K) {
    const int n = e / 128, l = e % 32, part = (e % 128) / 32;
    const int lo = (b[n * 64 + l + (part & 1) * 32] >> (4 * (part >> 1))) & 0xF;
    const int hi = (b[128 + n * 32 + l] >> (2 * part)) & 3;
    return lo | (hi << 4);
  } else if constexpr (T == Type::Q3_K || T == Type::Q2_K) {
    constexpr int qs = T == Type::Q3_K ? 32 : 16;
    int q = (b[qs + (e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
    if constexpr (T == Type::Q3_K) q |= ((b[e % 32] >> (e / 32)) & 1) << 2;
    return q;
  } else {
    static_assert(T != T, "unsupported type");
  }
}

inline void put_bits(uint8_t& byte, int shift, int width, int v) {
  const int mask = ((1 << width) - 1) << shift;
  byte = static_cast<uint8_t>((byte & ~mask) | ((v << shift) & mask));
}

template <Type T>
void set_code(uint8_t* b, int e, int q) {
  if constexpr (T == Type::Q4_0 || T == Type::IQ4_NL || T == Type::Q4_1) {
    constexpr int qs = T == Type::Q4_1 ? 4 : 2;
    put_bits(b[qs + e % 16], 4 * (e / 16), 4, q);
  } else if constexpr (T == Type::Q5_0 || T == Type::Q5_1) {
    constexpr int qh = T == Type::Q5_1 ? 4 : 2, qs = qh + 4;
    put_bits(b[qs + e % 16], 4 * (e / 16), 4, q & 0xF);
    put_bits(b[qh + e / 8], e % 8, 1, q >> 4);
  } else if constexpr (T == Type::Q8_0) {
    b[2 + e] = static_cast<uint8_t>(static_cast<int8_t>(q));
  } else if constexpr (T == Type::Q4_K || T == Type::Q5_K) {
    constexpr int qs = T == Type::Q5_K ? 48 : 16;
    put_bits(b[qs + (e / 64) * 32 + e % 32], 4 * ((e % 64) / 32), 4, q & 0xF);
    if constexpr (T == Type::Q5_K) put_bits(b[16 + e % 32], e / 32, 1, q >> 4);
  } else if constexpr (T == Type::Q6_K) {
    const int n = e / 128, l = e % 32, part = (e % 128) / 32;
    put_bits(b[n * 64 + l + (part & 1) * 32], 4 * (part >> 1), 4, q & 0xF);
    put_bits(b[128 + n * 32 + l], 2 * part, 2, q >> 4);
  } else if constexpr (T == Type::Q3_K || T == Type::Q2_K) {
    constexpr int qs = T == Type::Q3_K ? 32 : 16;
    put_bits(b[qs + (e / 128) * 32 + e % 32], 2 * ((e % 128) / 32), 2, q & 3);
    if constexpr (T == Type::Q3_K) put_bits(b[e % 32], e / 32, 1, q >> 2);
  } else {
    static_assert(T != T, "unsupported type");
  }
}

// Value of code q with decode parameters (dl, ml): the expressions of dequantize_row.
template <Type T>
float value(int q, float dl, float ml) {
  if constexpr (T == Type::Q4_0) return static_cast<float>(q - 8) * dl;
  else if constexpr (T == Type::Q5_0) return static_cast<float>(q - 16) * dl;
  else if constexpr (T == Type::Q4_1 || T == Type::Q5_1) return static_cast<float>(q) * dl + ml;
  else if constexpr (T == Type::Q8_0) return static_cast<float>(q) * dl;
  else if constexpr (T == Type::IQ4_NL) return dl * static_cast<float>(kIQ4NLValues[q]);
  else if constexpr (T == Type::Q4_K || T == Type::Q5_K || T == Type::Q2_K) return dl * static_cast<float>(q) - ml;
  else if constexpr (T == Type::Q6_K) return dl * static_cast<float>(q - 32);
  else if constexpr (T == Type::Q3_K) return dl * static_cast<float>(q - 4);
  else static_assert(T != T, "unsupported type");
}

// trunc(t) clamped to [0, hi] (for t in [0, hi + 1) this is what ggml's integer conversion gives).
inline int trunc_clamp(float t, int hi) {
  if (!(t > 0.0f)) return 0;
  if (t >= static_cast<float>(hi)) return hi;
  return static_cast<int>(t);
}

// nearest_int is exact for |x| < 2^22; larger arguments only occur far outside the grid and clamp anyway.
inline int nearest_clamped(float x, int lo, int hi) {
  x = std::max(-4194303.0f, std::min(4194303.0f, x));
  return std::max(lo, std::min(hi, detail::nearest_int(x)));
}

// The code for value x under rounding parameters (a, b); kKeep = keep the fitted code (zero sub-block scale).
constexpr int kKeep = -1000;  // below every code (Q8_0's are signed)
template <Type T>
int round_code(float x, float a, float b) {
  if constexpr (T == Type::Q4_0) return trunc_clamp(x * a + 8.5f, 15);
  else if constexpr (T == Type::Q5_0) return trunc_clamp(x * a + 16.5f, 31);
  else if constexpr (T == Type::Q4_1) return trunc_clamp((x - b) * a + 0.5f, 15);
  else if constexpr (T == Type::Q5_1) return trunc_clamp((x - b) * a + 0.5f, 31);
  else if constexpr (T == Type::Q8_0) {
    return detail::round_half_away(std::max(-128.0f, std::min(127.0f, x * a)));
  } else if constexpr (T == Type::IQ4_NL) return detail::nearest_index(kIQ4NLValues, a * x);
  else if constexpr (T == Type::Q4_K) return a == 0.0f ? kKeep : nearest_clamped((x + b) / a, 0, 15);
  else if constexpr (T == Type::Q5_K) return a == 0.0f ? kKeep : nearest_clamped((x + b) / a, 0, 31);
  else if constexpr (T == Type::Q2_K) return a == 0.0f ? kKeep : nearest_clamped((x + b) / a, 0, 3);
  else if constexpr (T == Type::Q6_K) return a == 0.0f ? kKeep : nearest_clamped(x / a, -32, 31) + 32;
  else if constexpr (T == Type::Q3_K) return a == 0.0f ? kKeep : nearest_clamped(x / a, -4, 3) + 4;
  else static_assert(T != T, "unsupported type");
}

template <Type T>
void quantize_column_t(int64_t rows, int64_t row_bytes, int64_t block_bytes, int64_t B, int nsub, int64_t nblocks,
                       int64_t c, const float* w, int64_t w_stride, float* out, int64_t out_stride, uint8_t* bytes,
                       const float* A, const float* Bp, const float* DL, const float* ML) {
  const int64_t blk = c / B;
  const int e = static_cast<int>(c % B);
  const int sub = static_cast<int>(e / (B / nsub));
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* b = bytes + r * row_bytes + blk * block_bytes;
    const int64_t p = (r * nblocks + blk) * nsub + sub;
    const float x = w[r * w_stride];
    int q = round_code<T>(x, A[p], Bp[p]);
    if (q == kKeep)
      q = get_code<T>(b, e);
    else
      set_code<T>(b, e, q);
    out[r * out_stride] = value<T>(q, DL[p], ML[p]);
  }
}

}  // namespace

GgmlGrid::GgmlGrid(Type t) : type_(t) {
  const TypeInfo& ti = info(t);
  if (!ti.storage) fail<InvalidArgument>("ggml {} is an activation type; GgmlGrid needs a weight type", ti.name);
  nsub_ = sub_blocks(t);
}

int64_t GgmlGrid::block_size() const { return info(type_).block_elems; }

const char* GgmlGrid::name() const { return info(type_).name.data(); }

void GgmlGrid::reset(int64_t rows, int64_t cols) {
  const TypeInfo& ti = info(type_);
  if (rows <= 0) fail<InvalidArgument>("GgmlGrid {}: row count must be positive, got {}", ti.name, rows);
  row_bytes_ = row_size(type_, cols);  // checks cols against the block
  rows_ = rows;
  cols_ = cols;
  nblocks_ = cols / ti.block_elems;
  bytes_.assign(static_cast<size_t>(rows * row_bytes_), 0);
  fitted_.assign(static_cast<size_t>(nblocks_), 0);
  const size_t np = static_cast<size_t>(rows * nblocks_ * nsub_);
  row_sigma2_.clear();
  a_.assign(np, 0.0f);
  b_.assign(np, 0.0f);
  dl_.assign(np, 0.0f);
  ml_.assign(np, 0.0f);
}

void GgmlGrid::set_row_statistics(const float* W) {
  if (rows_ == 0) fail<InvalidArgument>("GgmlGrid {}: set_row_statistics before reset", info(type_).name);
  if (!W) fail<InvalidArgument>("GgmlGrid {}: set_row_statistics needs the weight", info(type_).name);
  row_sigma2_.assign(static_cast<size_t>(rows_), 0.0f);
  for (int64_t r = 0; r < rows_; ++r) {  // quantize_row_<t>_impl: sum_x2 / n_per_row
    const float* x = W + r * cols_;
    float sum_x2 = 0;
    for (int64_t j = 0; j < cols_; ++j) sum_x2 += x[j] * x[j];
    row_sigma2_[static_cast<size_t>(r)] = sum_x2 / static_cast<float>(cols_);
  }
}

void GgmlGrid::fit(int64_t c0, const Eigen::Ref<const Eigen::MatrixXf>& W, const float* importance) {
  const TypeInfo& ti = info(type_);
  const int64_t B = ti.block_elems;
  if (rows_ == 0) fail<InvalidArgument>("GgmlGrid {}: fit before reset", ti.name);
  if (c0 < 0 || c0 % B != 0 || c0 >= cols_)
    fail<InvalidArgument>("GgmlGrid {}: block start {} is not a multiple of {} inside [0, {})", ti.name, c0, B, cols_);
  if (W.rows() != rows_ || W.cols() != B)
    fail<ShapeError>("GgmlGrid {}: fit expects a {}x{} block, got {}x{}", ti.name, rows_, B, W.rows(), W.cols());
  const float* qw = ti.uses_importance ? importance : nullptr;
  if (qw)
    for (int64_t j = 0; j < B; ++j)
      if (!std::isfinite(qw[j]) || qw[j] < 0.0f)
        fail<InvalidArgument>("GgmlGrid {}: importance[{}] = {} is not a finite non-negative weight", ti.name, c0 + j,
                              qw[j]);
  if (!W.allFinite()) fail<NumericError>("GgmlGrid {}: non-finite weight in columns [{}, {})", ti.name, c0, c0 + B);
  const int64_t blk = c0 / B;
  const int64_t bb = ti.block_bytes;
  const bool parallel = rows_ > 1 && rows_ * B >= (int64_t{1} << 15);
  const int nt = resolve_threads(0);
  std::atomic<int64_t> overflow{-1};
#pragma omp parallel for schedule(static) num_threads(nt) if (parallel)
  for (int64_t r = 0; r < rows_; ++r) {  // the encoders throw nothing
    float x[QK_K];
    for (int64_t j = 0; j < B; ++j) x[j] = W(r, j);
    uint8_t* blockp = bytes_.data() + r * row_bytes_ + blk * bb;
    const int64_t p0 = (r * nblocks_ + blk) * nsub_;
    detail::LegacyAux aux;
    float sigma2 = 0.0f;
    if (qw) {  // the 32-element types' weighted path: sigma2 = mean(x^2) over the row, else over the block
      if (!row_sigma2_.empty()) {
        sigma2 = row_sigma2_[static_cast<size_t>(r)];
      } else {
        float s = 0;
        for (int64_t j = 0; j < B; ++j) s += x[j] * x[j];
        sigma2 = s / static_cast<float>(B);
      }
    }
    switch (type_) {
      case Type::Q4_0: {
        auto* y = reinterpret_cast<BlockQ4_0*>(blockp);
        detail::encode_q4_0(x, qw, sigma2, y, &aux);
        dl_[p0] = h2f(y->d);
        break;
      }
      case Type::Q4_1: {
        auto* y = reinterpret_cast<BlockQ4_1*>(blockp);
        detail::encode_q4_1(x, qw, sigma2, y, &aux);
        dl_[p0] = h2f(y->d);
        ml_[p0] = h2f(y->m);
        break;
      }
      case Type::Q5_0: {
        auto* y = reinterpret_cast<BlockQ5_0*>(blockp);
        detail::encode_q5_0(x, qw, sigma2, y, &aux);
        dl_[p0] = h2f(y->d);
        break;
      }
      case Type::Q5_1: {
        auto* y = reinterpret_cast<BlockQ5_1*>(blockp);
        detail::encode_q5_1(x, qw, sigma2, y, &aux);
        dl_[p0] = h2f(y->d);
        ml_[p0] = h2f(y->m);
        break;
      }
      case Type::Q8_0: {
        auto* y = reinterpret_cast<BlockQ8_0*>(blockp);
        detail::encode_q8_0(x, y, &aux);
        dl_[p0] = h2f(y->d);
        break;
      }
      case Type::IQ4_NL: {
        auto* y = reinterpret_cast<BlockIQ4_NL*>(blockp);
        detail::encode_iq4_nl(x, qw, y, &aux);
        dl_[p0] = h2f(y->d);
        break;
      }
      case Type::Q4_K:
      case Type::Q5_K: {
        uint16_t d16, dmin16;
        const uint8_t* scales;
        if (type_ == Type::Q4_K) {
          auto* y = reinterpret_cast<BlockQ4_K*>(blockp);
          detail::encode_q4_K(x, qw, y);
          d16 = y->d, dmin16 = y->dmin, scales = y->scales;
        } else {
          auto* y = reinterpret_cast<BlockQ5_K*>(blockp);
          detail::encode_q5_K(x, qw, y);
          d16 = y->d, dmin16 = y->dmin, scales = y->scales;
        }
        for (int j = 0; j < 8; ++j) {
          uint8_t sc, m;
          detail::scale_min_k4(j, scales, &sc, &m);
          dl_[p0 + j] = h2f(d16) * static_cast<float>(sc);
          ml_[p0 + j] = h2f(dmin16) * static_cast<float>(m);
          a_[p0 + j] = dl_[p0 + j];
          b_[p0 + j] = ml_[p0 + j];
        }
        break;
      }
      case Type::Q2_K: {
        auto* y = reinterpret_cast<BlockQ2_K*>(blockp);
        detail::encode_q2_K(x, qw, y);
        for (int j = 0; j < 16; ++j) {
          dl_[p0 + j] = h2f(y->d) * static_cast<float>(y->scales[j] & 0xF);
          ml_[p0 + j] = h2f(y->dmin) * static_cast<float>(y->scales[j] >> 4);
          a_[p0 + j] = dl_[p0 + j];
          b_[p0 + j] = ml_[p0 + j];
        }
        break;
      }
      case Type::Q3_K: {
        auto* y = reinterpret_cast<BlockQ3_K*>(blockp);
        detail::encode_q3_K(x, qw, y);
        for (int j = 0; j < 16; ++j) {
          dl_[p0 + j] = h2f(y->d) * static_cast<float>(detail::scale_q3_K(j, y->scales));
          a_[p0 + j] = dl_[p0 + j];
        }
        break;
      }
      case Type::Q6_K: {
        auto* y = reinterpret_cast<BlockQ6_K*>(blockp);
        detail::encode_q6_K(x, qw, y);
        for (int j = 0; j < 16; ++j) {
          dl_[p0 + j] = h2f(y->d) * static_cast<float>(y->scales[j]);
          a_[p0 + j] = dl_[p0 + j];
        }
        break;
      }
      case Type::Q8_K:
        break;  // rejected by the constructor
    }
    if (nsub_ == 1) {
      a_[p0] = aux.id;
      b_[p0] = aux.mn;
    }
    // a finite block beyond what fp16 scales hold gives an Inf scale (or zeros): never encode that silently
    if (!detail::encoded_row_finite(type_, x, B, blockp)) {
      int64_t expected = -1;
      overflow.compare_exchange_strong(expected, r);
    }
  }
  if (const int64_t r = overflow.load(); r >= 0)
    fail<NumericError>("GgmlGrid {}: row {}: weights up to {} in columns [{}, {}) are beyond what the type's fp16 "
                       "scales can encode",
                       ti.name, r, W.row(r).cwiseAbs().maxCoeff(), c0, c0 + B);
  fitted_[static_cast<size_t>(blk)] = 1;
}

void GgmlGrid::quantize_column(int64_t c, const Eigen::Ref<const Eigen::VectorXf>& w, Eigen::Ref<Eigen::VectorXf> out) {
  const TypeInfo& ti = info(type_);
  if (c < 0 || c >= cols_) fail<InvalidArgument>("GgmlGrid {}: column {} outside [0, {})", ti.name, c, cols_);
  if (!fitted_[static_cast<size_t>(c / ti.block_elems)])
    fail<InvalidArgument>("GgmlGrid {}: column {} quantized before its block was fitted", ti.name, c);
  if (w.size() != rows_ || out.size() != rows_)
    fail<ShapeError>("GgmlGrid {}: column of {} values expected, got {} in and {} out", ti.name, rows_, w.size(),
                     out.size());
  if (!w.allFinite()) fail<NumericError>("GgmlGrid {}: non-finite weight in column {}", ti.name, c);
  const int64_t B = ti.block_elems, bb = ti.block_bytes;
  const float* wp = w.data();
  const int64_t ws = w.innerStride();
  float* op = out.data();
  const int64_t os = out.innerStride();
#define QK_GGML_GRID_CASE(T)                                                                                    \
  case T:                                                                                                       \
    quantize_column_t<T>(rows_, row_bytes_, bb, B, nsub_, nblocks_, c, wp, ws, op, os, bytes_.data(), a_.data(), \
                         b_.data(), dl_.data(), ml_.data());                                                    \
    break;
  switch (type_) {
    QK_GGML_GRID_CASE(Type::Q4_0)
    QK_GGML_GRID_CASE(Type::Q4_1)
    QK_GGML_GRID_CASE(Type::Q5_0)
    QK_GGML_GRID_CASE(Type::Q5_1)
    QK_GGML_GRID_CASE(Type::Q8_0)
    QK_GGML_GRID_CASE(Type::IQ4_NL)
    QK_GGML_GRID_CASE(Type::Q2_K)
    QK_GGML_GRID_CASE(Type::Q3_K)
    QK_GGML_GRID_CASE(Type::Q4_K)
    QK_GGML_GRID_CASE(Type::Q5_K)
    QK_GGML_GRID_CASE(Type::Q6_K)
    case Type::Q8_K:
      break;
  }
#undef QK_GGML_GRID_CASE
}

std::vector<uint8_t> GgmlGrid::encode() const {
  const TypeInfo& ti = info(type_);
  if (rows_ == 0) fail<InvalidArgument>("GgmlGrid {}: encode before reset", ti.name);
  for (int64_t b = 0; b < nblocks_; ++b)
    if (!fitted_[static_cast<size_t>(b)])
      fail<InvalidArgument>("GgmlGrid {}: block at column {} was never fitted", ti.name, b * ti.block_elems);
  return bytes_;
}

}  // namespace qk::ggml
