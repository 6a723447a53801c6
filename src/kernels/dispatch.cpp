// Run-time ISA choice, weight packing, activation quantization and the public entry points: arguments are
// validated here, work is split over output tiles with OpenMP, and one descriptor table does the arithmetic.
// Compiled without ISA flags so it runs on any x86-64.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include <omp.h>

#include "internal.hpp"
#include "qk/detail/omp.hpp"
#include "qk/core/error.hpp"
#include "qk/core/half.hpp"
#include "qk/core/threads.hpp"

namespace qk::kernels {
namespace {

const detail::KernelTable& table_for(Isa isa) {
  switch (isa) {
    case Isa::avx2: return detail::table_avx2();
    case Isa::avxvnni: return detail::table_avxvnni();
    case Isa::avx512: return detail::table_avx512();
    case Isa::avx512vnni: return detail::table_avx512vnni();
    case Isa::scalar: break;
  }
  return detail::table_scalar();
}

const detail::KernelTable& table(const Exec& ex) {
  if (ex.isa) {
    if (!cpu_supports(*ex.isa)) fail<InvalidArgument>("kernel path '{}' is not supported by this CPU", isa_name(*ex.isa));
    return table_for(*ex.isa);
  }
  return table_for(active_isa());
}

// Below this many multiply-adds a product runs on the calling thread: waking a team costs more than it saves.
constexpr int64_t kMinParallelMacs = int64_t{1} << 20;

// Splits rows [0, m) x tiles [0, tiles) over the threads: by column tiles (each thread streams its own weights)
// when there are enough of them, otherwise by rows.
template <typename F>
void parallel_tiles(int64_t m, int64_t tiles, int64_t k, int threads, F&& f) {
  const int nt = resolve_threads(threads);
  if (m <= 0 || tiles <= 0) return;
  if (nt <= 1 || (tiles < 2 && m < 2) || m * tiles * kTileN * k < kMinParallelMacs) {
    f(int64_t{0}, m, int64_t{0}, tiles);
    return;
  }
  const bool by_tiles = tiles >= nt || tiles >= m;
  const int64_t units = by_tiles ? tiles : m;
  const int parts = static_cast<int>(std::min<int64_t>(nt, units));
  qk::detail::FirstException errors;  // nothing may leave the region (qk/detail/omp.hpp)
#pragma omp parallel for num_threads(parts) schedule(static, 1)
  for (int i = 0; i < parts; ++i) {
    const int64_t b = units * i / parts, e = units * (i + 1) / parts;
    errors.run([&] {
      if (by_tiles) f(int64_t{0}, m, b, e);
      else f(b, e, int64_t{0}, tiles);
    });
  }
  errors.rethrow();
}

void check_rows(const char* what, int64_t m, int64_t ld, int64_t width, const void* p) {
  if (m < 0) fail<InvalidArgument>("{}: M must be >= 0, got {}", what, m);
  if (m > 0 && !p) fail<InvalidArgument>("{}: null pointer", what);
  if (ld < width) fail<InvalidArgument>("{}: leading dimension {} is smaller than the row length {}", what, ld, width);
}

void check_s8(const PackedS8& w, const char* what) {
  if (w.layout != Layout::s8_n16k4 || w.n <= 0 || w.k <= 0 ||
      w.data.size() != static_cast<size_t>(w.n_tiles() * w.tile_bytes()))
    fail<InvalidArgument>("{}: weights are not packed for the int8 kernels (layout {})", what, layout_name(w.layout));
}

void check_w4(const PackedW4& w, const char* what) {
  if (w.layout != Layout::w4_n16k8 || w.n <= 0 || w.k <= 0 || w.group <= 0 ||
      w.data.size() != static_cast<size_t>(w.n_tiles() * w.tile_bytes()) ||
      (!w.perm.empty() && w.perm.size() != static_cast<size_t>(w.k)))
    fail<InvalidArgument>("{}: weights are not packed for the int4 kernels (layout {})", what, layout_name(w.layout));
}

// The SIMD int8 kernels read A in 4-byte slices up to k_pad. When K is not a multiple of 4, the rows are copied
// into a zero-padded buffer first (O(M*K), small next to the O(M*N*K) product), so no kernel needs a tail path.
const uint8_t* pad_rows(const uint8_t* a, int64_t m, int64_t lda, const PackedS8& w, int64_t& lda_out,
                        std::vector<uint8_t>& buf) {
  lda_out = lda;
  if (w.k == w.k_pad) return a;
  buf.assign(static_cast<size_t>(m * w.k_pad), 0);
  for (int64_t r = 0; r < m; ++r) std::copy(a + r * lda, a + r * lda + w.k, buf.begin() + r * w.k_pad);
  lda_out = w.k_pad;
  return buf.data();
}

// Act-order (GPTQ desc_act): the column order that makes every group contiguous, stable within a group, or an
// empty vector when g_idx is already the plain column / group. Each group must hold exactly `group` columns.
std::vector<int32_t> group_order(const int32_t* g_idx, int64_t k, int64_t group) {
  const int64_t G = k / group;
  std::vector<int64_t> count(static_cast<size_t>(G), 0);
  bool identity = true;
  for (int64_t j = 0; j < k; ++j) {
    const int32_t g = g_idx[j];
    if (g < 0 || g >= G) fail<InvalidArgument>("pack_w4: g_idx[{}] = {} is not a group of K = {} / {}", j, g, k, group);
    ++count[static_cast<size_t>(g)];
    identity = identity && g == j / group;
  }
  for (int64_t g = 0; g < G; ++g)
    if (count[static_cast<size_t>(g)] != group)
      fail<InvalidArgument>("pack_w4: g_idx puts {} columns in group {} (each group needs exactly {})",
                            count[static_cast<size_t>(g)], g, group);
  if (identity) return {};
  std::vector<int32_t> perm(static_cast<size_t>(k));
  std::vector<int64_t> next(static_cast<size_t>(G));
  for (int64_t g = 0; g < G; ++g) next[static_cast<size_t>(g)] = g * group;
  for (int64_t j = 0; j < k; ++j) perm[static_cast<size_t>(next[static_cast<size_t>(g_idx[j])]++)] = static_cast<int32_t>(j);
  return perm;
}

// x's rows with their columns gathered in perm's order, into a dense [m, k] buffer.
std::vector<float> gather_columns(const float* x, int64_t m, int64_t ldx, const std::vector<int32_t>& perm) {
  const int64_t k = static_cast<int64_t>(perm.size());
  std::vector<float> out(static_cast<size_t>(m * k));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < k; ++j) out[static_cast<size_t>(r * k + j)] = x[r * ldx + perm[static_cast<size_t>(j)]];
  return out;
}

void check_finite_row(const float* x, int64_t k, int64_t row, const char* what) {
  for (int64_t i = 0; i < k; ++i)
    if (!std::isfinite(x[i])) fail<NumericError>("{}: activation row {} column {} is not finite", what, row, i);
}

}  // namespace

// ------------------------------------------------------------------ kernel names
KernelNames kernel_names(Isa isa) {
  const detail::KernelTable& t = table_for(isa);
  return {t.gemm_s8_name, t.gemv_s8_name, t.gemm_w4_name, t.gemv_w4_name, t.gemm_w4_f32_name};
}

KernelNames active_kernel_names() { return kernel_names(active_isa()); }

const char* layout_name(Layout l) {
  switch (l) {
    case Layout::s8_n16k4: return "s8_n16k4";
    case Layout::w4_n16k8: return "w4_n16k8";
  }
  return "unknown";
}

// ------------------------------------------------------------------ int8 packing
int8_t PackedS8::at(int64_t row, int64_t col) const {
  const int64_t t = row / kTileN, c = row % kTileN;
  return data[static_cast<size_t>(t * tile_bytes() + (col / 4) * 64 + c * 4 + col % 4)];
}

PackedS8 pack_s8(const int8_t* w, int64_t n, int64_t k, int64_t ldw, const float* scale) {
  if (n <= 0 || k <= 0) fail<ShapeError>("pack_s8: weight shape [{}, {}] is empty", n, k);
  if (k > kMaxK) fail<ShapeError>("pack_s8: K = {} exceeds the int32-exact limit {}", k, kMaxK);
  if (ldw < k) fail<InvalidArgument>("pack_s8: leading dimension {} < K = {}", ldw, k);
  if (!w) fail<InvalidArgument>("pack_s8: null weights");
  PackedS8 p;
  p.n = n;
  p.k = k;
  p.k_pad = (k + 3) / 4 * 4;
  const int64_t nt = p.n_tiles();
  p.data.assign(static_cast<size_t>(nt * p.tile_bytes()), 0);
  p.scale.assign(static_cast<size_t>(nt * kTileN), 1.0f);
  p.col_sum.assign(static_cast<size_t>(nt * kTileN), 0);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t t = r / kTileN, c = r % kTileN;
    int32_t sum = 0;
    for (int64_t j = 0; j < k; ++j) {
      const int8_t v = w[r * ldw + j];
      p.data[static_cast<size_t>(t * p.tile_bytes() + (j / 4) * 64 + c * 4 + j % 4)] = v;
      sum += v;
    }
    p.col_sum[static_cast<size_t>(r)] = sum;
    if (scale) {
      if (!(scale[r] > 0.0f) || !std::isfinite(scale[r]))
        fail<InvalidArgument>("pack_s8: scale of output channel {} is {} (must be positive and finite)", r, scale[r]);
      p.scale[static_cast<size_t>(r)] = scale[r];
    }
  }
  return p;
}

PackedS8 pack_s8(const QuantizedTensor& q) {
  const QuantScheme& s = q.scheme;
  if (s.bits != 8 || !s.is_signed || !s.symmetric || s.granularity == Granularity::PerGroup || !q.g_idx.empty())
    fail<InvalidArgument>("pack_s8: needs 8-bit signed symmetric per-channel weights, got {}", s.describe());
  std::vector<int8_t> w(static_cast<size_t>(q.rows * q.cols));
  std::vector<float> sc(static_cast<size_t>(q.rows));
  for (int64_t r = 0; r < q.rows; ++r) {
    sc[static_cast<size_t>(r)] = q.scale(r, 0);
    for (int64_t c = 0; c < q.cols; ++c) {
      const int v = q.code(r, c) - q.zero_point(r, c);
      if (v < -128 || v > 127) fail<InvalidArgument>("pack_s8: weight code {} out of int8 range", v);
      w[static_cast<size_t>(r * q.cols + c)] = static_cast<int8_t>(v);
    }
  }
  return pack_s8(w.data(), q.rows, q.cols, q.cols, sc.data());
}

// ------------------------------------------------------------------ int8 products
void gemm_s8(const uint8_t* a, int64_t m, int64_t lda, int32_t a_zero_point, const PackedS8& w, int32_t* c,
             int64_t ldc, const Exec& ex) {
  check_s8(w, "gemm_s8");
  check_rows("gemm_s8 (A)", m, lda, w.k, a);
  check_rows("gemm_s8 (C)", m, ldc, w.n, c);
  if (a_zero_point < 0 || a_zero_point > 255) fail<InvalidArgument>("gemm_s8: activation zero-point {} not in 0..255", a_zero_point);
  const detail::KernelTable& t = table(ex);
  detail::S8Problem p;
  std::vector<uint8_t> padded;
  p.a = pad_rows(a, m, lda, w, p.lda, padded);
  p.a_zp = a_zero_point;
  p.w = &w;
  p.c32 = c;
  p.ldc = ldc;
  parallel_tiles(m, w.n_tiles(), w.k, ex.threads, [&](int64_t m0, int64_t m1, int64_t t0, int64_t t1) { t.gemm_s8(p, m0, m1, t0, t1); });
}

void gemm_s8(const int8_t* a, int64_t m, int64_t lda, const PackedS8& w, int32_t* c, int64_t ldc, const Exec& ex) {
  check_s8(w, "gemm_s8");
  check_rows("gemm_s8 (A)", m, lda, w.k, a);
  // Signed activations run as unsigned ones with zero-point 128: a + 128 == a ^ 0x80 as a byte.
  std::vector<uint8_t> u(static_cast<size_t>(m * w.k));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < w.k; ++j)
      u[static_cast<size_t>(r * w.k + j)] = static_cast<uint8_t>(static_cast<uint8_t>(a[r * lda + j]) ^ 0x80u);
  gemm_s8(u.data(), m, w.k, 128, w, c, ldc, ex);
}

void gemm_s8_f32(const uint8_t* a, int64_t m, int64_t lda, int32_t a_zero_point, const float* a_scale,
                 const PackedS8& w, const float* bias, float* c, int64_t ldc, const Exec& ex) {
  check_s8(w, "gemm_s8_f32");
  check_rows("gemm_s8_f32 (A)", m, lda, w.k, a);
  check_rows("gemm_s8_f32 (C)", m, ldc, w.n, c);
  if (m > 0 && !a_scale) fail<InvalidArgument>("gemm_s8_f32: null activation scales");
  if (a_zero_point < 0 || a_zero_point > 255) fail<InvalidArgument>("gemm_s8_f32: activation zero-point {} not in 0..255", a_zero_point);
  const detail::KernelTable& t = table(ex);
  detail::S8Problem p;
  std::vector<uint8_t> padded;
  p.a = pad_rows(a, m, lda, w, p.lda, padded);
  p.a_zp = a_zero_point;
  p.w = &w;
  p.cf = c;
  p.ldc = ldc;
  p.a_scale = a_scale;
  p.bias = bias;
  parallel_tiles(m, w.n_tiles(), w.k, ex.threads, [&](int64_t m0, int64_t m1, int64_t t0, int64_t t1) { t.gemm_s8(p, m0, m1, t0, t1); });
}

void quantize_rows_u8(const float* x, int64_t m, int64_t k, int64_t ldx, uint8_t* q, float* scale) {
  if (m < 0 || k <= 0 || ldx < k) fail<InvalidArgument>("quantize_rows_u8: bad shape M = {}, K = {}, ldx = {}", m, k, ldx);
  if (m > 0 && (!x || !q || !scale)) fail<InvalidArgument>("quantize_rows_u8: null pointer");
  for (int64_t r = 0; r < m; ++r) {
    const float* xr = x + r * ldx;
    check_finite_row(xr, k, r, "quantize_rows_u8");
    float amax = 0.0f;
    for (int64_t j = 0; j < k; ++j) amax = std::max(amax, std::fabs(xr[j]));
    const float s = amax > 0.0f ? amax / 127.0f : 1.0f;
    scale[r] = s;
    for (int64_t j = 0; j < k; ++j) {
      const float v = std::clamp(std::nearbyint(xr[j] / s), -127.0f, 127.0f);
      q[r * k + j] = static_cast<uint8_t>(static_cast<int>(v) + 128);
    }
  }
}

void linear_w8a8_dynamic(const float* x, int64_t m, int64_t ldx, const PackedS8& w, const float* bias, float* y,
                         int64_t ldy, const Exec& ex) {
  check_s8(w, "linear_w8a8_dynamic");
  check_rows("linear_w8a8_dynamic (X)", m, ldx, w.k, x);
  std::vector<uint8_t> q(static_cast<size_t>(m * w.k));
  std::vector<float> s(static_cast<size_t>(m));
  quantize_rows_u8(x, m, w.k, ldx, q.data(), s.data());
  gemm_s8_f32(q.data(), m, w.k, 128, s.data(), w, bias, y, ldy, ex);
}

void linear_w8a8_static(const float* x, int64_t m, int64_t ldx, float a_scale, int32_t a_zero_point,
                        const PackedS8& w, const float* bias, float* y, int64_t ldy, const Exec& ex) {
  check_s8(w, "linear_w8a8_static");
  check_rows("linear_w8a8_static (X)", m, ldx, w.k, x);
  if (!(a_scale > 0.0f) || !std::isfinite(a_scale)) fail<InvalidArgument>("linear_w8a8_static: activation scale {} is not positive and finite", a_scale);
  if (a_zero_point < 0 || a_zero_point > 255) fail<InvalidArgument>("linear_w8a8_static: zero-point {} not in 0..255", a_zero_point);
  std::vector<uint8_t> q(static_cast<size_t>(m * w.k));
  for (int64_t r = 0; r < m; ++r) {
    check_finite_row(x + r * ldx, w.k, r, "linear_w8a8_static");
    for (int64_t j = 0; j < w.k; ++j) {
      const float v = std::clamp(std::nearbyint(x[r * ldx + j] / a_scale) + static_cast<float>(a_zero_point), 0.0f, 255.0f);
      q[static_cast<size_t>(r * w.k + j)] = static_cast<uint8_t>(v);
    }
  }
  std::vector<float> s(static_cast<size_t>(m), a_scale);
  gemm_s8_f32(q.data(), m, w.k, a_zero_point, s.data(), w, bias, y, ldy, ex);
}

// ------------------------------------------------------------------ int4 packing
int PackedW4::code(int64_t row, int64_t col) const {
  const int64_t t = row / kTileN, c = row % kTileN;
  const uint8_t b = data[static_cast<size_t>(t * tile_bytes() + (col / 8) * 64 + c * 4 + (col % 4))];
  return (col % 8) < 4 ? (b & 0x0f) : (b >> 4);
}

float PackedW4::scale_at(int64_t row, int64_t g) const {
  const int64_t t = row / kTileN, c = row % kTileN;
  return fp16_to_fp32(scale[static_cast<size_t>((t * groups() + g) * kTileN + c)]);
}

int PackedW4::zero_at(int64_t row, int64_t g) const {
  if (!has_zero) return 8;
  const int64_t t = row / kTileN, c = row % kTileN;
  return zero[static_cast<size_t>((t * groups() + g) * kTileN + c)];
}

PackedW4 pack_w4(const uint8_t* codes, int64_t n, int64_t k, int64_t ldc, int64_t group, const float* scales,
                 const uint8_t* zeros) {
  return pack_w4(codes, n, k, ldc, group, scales, zeros, nullptr);
}

PackedW4 pack_w4(const uint8_t* codes, int64_t n, int64_t k, int64_t ldc, int64_t group, const float* scales,
                 const uint8_t* zeros, const int32_t* g_idx) {
  if (n <= 0 || k <= 0) fail<ShapeError>("pack_w4: weight shape [{}, {}] is empty", n, k);
  if (k > kMaxK) fail<ShapeError>("pack_w4: K = {} exceeds the int32-exact limit {}", k, kMaxK);
  if (group <= 0 || group % 8 != 0 || k % group != 0)
    fail<InvalidArgument>("pack_w4: group size {} must be a positive multiple of 8 dividing K = {}", group, k);
  if (ldc < k) fail<InvalidArgument>("pack_w4: leading dimension {} < K = {}", ldc, k);
  if (!codes || !scales) fail<InvalidArgument>("pack_w4: null codes or scales");
  PackedW4 p;
  p.n = n;
  p.k = k;
  p.group = group;
  p.has_zero = zeros != nullptr;
  const int64_t nt = p.n_tiles(), G = p.groups();
  if (g_idx) p.perm = group_order(g_idx, k, group);
  // src[j]: the input column packed at position j.
  auto src = [&](int64_t j) { return p.perm.empty() ? j : static_cast<int64_t>(p.perm[static_cast<size_t>(j)]); };
  p.data.assign(static_cast<size_t>(nt * p.tile_bytes()), 0);
  // Padding columns: scale 0 (fp16 zero), code 0, zero-point 0 -> they contribute nothing and are never stored.
  p.scale.assign(static_cast<size_t>(nt * G * kTileN), 0);
  if (p.has_zero) p.zero.assign(static_cast<size_t>(nt * G * kTileN), 0);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t t = r / kTileN, c = r % kTileN;
    for (int64_t j = 0; j < k; ++j) {
      const uint8_t v = codes[r * ldc + src(j)];
      if (v > 15) fail<InvalidArgument>("pack_w4: code {} at [{}, {}] is not a 4-bit value", v, r, src(j));
      uint8_t& b = p.data[static_cast<size_t>(t * p.tile_bytes() + (j / 8) * 64 + c * 4 + (j % 4))];
      b = static_cast<uint8_t>((j % 8) < 4 ? ((b & 0xf0) | v) : ((b & 0x0f) | (v << 4)));
    }
    for (int64_t g = 0; g < G; ++g) {
      const float s = scales[r * G + g];
      if (!std::isfinite(s) || s < 0.0f)
        fail<InvalidArgument>("pack_w4: scale {} of row {} group {} is negative or not finite", s, r, g);
      p.scale[static_cast<size_t>((t * G + g) * kTileN + c)] = fp32_to_fp16(s);
      if (!std::isfinite(fp16_to_fp32(fp32_to_fp16(s))))
        fail<InvalidArgument>("pack_w4: scale {} of row {} group {} overflows fp16", s, r, g);
      if (p.has_zero) {
        const uint8_t z = zeros[r * G + g];
        if (z > 15) fail<InvalidArgument>("pack_w4: zero-point {} of row {} group {} is not a 4-bit value", z, r, g);
        p.zero[static_cast<size_t>((t * G + g) * kTileN + c)] = z;
      }
    }
  }
  return p;
}

PackedW4 pack_w4(const QuantizedTensor& q) {
  const QuantScheme& s = q.scheme;
  if (s.bits != 4 || s.granularity != Granularity::PerGroup)
    fail<InvalidArgument>("pack_w4: needs 4-bit per-group weights, got {}", s.describe());
  if (!q.g_idx.empty() && q.g_idx.size() != static_cast<size_t>(q.cols))
    fail<ShapeError>("pack_w4: g_idx has {} entries for {} columns", q.g_idx.size(), q.cols);
  const int64_t G = q.cols / s.group_size;
  std::vector<uint8_t> codes(static_cast<size_t>(q.rows * q.cols));
  std::vector<float> sc(static_cast<size_t>(q.rows * G));
  std::vector<uint8_t> zs(static_cast<size_t>(q.rows * G));
  bool all8 = true;
  for (int64_t r = 0; r < q.rows; ++r) {
    for (int64_t g = 0; g < G; ++g) {
      sc[static_cast<size_t>(r * G + g)] = q.params.scale(r, g);
      const int z = q.params.zero_point(r, g) - s.qmin();
      if (z < 0 || z > 15) fail<InvalidArgument>("pack_w4: zero-point of row {} group {} does not fit 4 bits", r, g);
      zs[static_cast<size_t>(r * G + g)] = static_cast<uint8_t>(z);
      all8 = all8 && z == 8;
    }
    for (int64_t c = 0; c < q.cols; ++c)
      codes[static_cast<size_t>(r * q.cols + c)] = static_cast<uint8_t>(q.code(r, c) - s.qmin());
  }
  return pack_w4(codes.data(), q.rows, q.cols, q.cols, s.group_size, sc.data(), all8 ? nullptr : zs.data(),
                 q.g_idx.empty() ? nullptr : q.g_idx.data());
}

// ------------------------------------------------------------------ int4 products
QuantizedActs quantize_acts(const float* x, int64_t m, int64_t k, int64_t ldx, int64_t group, ActQuant mode) {
  if (m < 0 || k <= 0 || group <= 0 || k % group != 0)
    fail<InvalidArgument>("quantize_acts: group {} must divide K = {} (M = {})", group, k, m);
  if (ldx < k) fail<InvalidArgument>("quantize_acts: leading dimension {} < K = {}", ldx, k);
  if (m > 0 && !x) fail<InvalidArgument>("quantize_acts: null input");
  QuantizedActs a;
  a.m = m;
  a.k = k;
  a.groups = k / group;
  a.q.resize(static_cast<size_t>(m * k));
  a.scale.resize(static_cast<size_t>(m * a.groups));
  a.sum.resize(static_cast<size_t>(m * a.groups));
  const int64_t block = mode == ActQuant::per_row ? k : group;
  for (int64_t r = 0; r < m; ++r) {
    const float* xr = x + r * ldx;
    check_finite_row(xr, k, r, "quantize_acts");
    for (int64_t b0 = 0; b0 < k; b0 += block) {
      float amax = 0.0f;
      for (int64_t j = b0; j < b0 + block; ++j) amax = std::max(amax, std::fabs(xr[j]));
      const float s = amax > 0.0f ? amax / 127.0f : 1.0f;
      for (int64_t j = b0; j < b0 + block; ++j)
        a.q[static_cast<size_t>(r * k + j)] = static_cast<int8_t>(std::clamp(std::nearbyint(xr[j] / s), -127.0f, 127.0f));
      for (int64_t g = b0 / group; g < (b0 + block) / group; ++g) a.scale[static_cast<size_t>(r * a.groups + g)] = s;
    }
    for (int64_t g = 0; g < a.groups; ++g) {
      int32_t sum = 0;
      for (int64_t j = g * group; j < (g + 1) * group; ++j) sum += a.q[static_cast<size_t>(r * k + j)];
      a.sum[static_cast<size_t>(r * a.groups + g)] = sum;
    }
  }
  return a;
}

QuantizedActs quantize_acts(const float* x, int64_t m, int64_t ldx, const PackedW4& w, ActQuant mode) {
  check_w4(w, "quantize_acts");
  if (w.perm.empty()) return quantize_acts(x, m, w.k, ldx, w.group, mode);
  check_rows("quantize_acts (X)", m, ldx, w.k, x);
  const std::vector<float> xp = gather_columns(x, m, ldx, w.perm);
  QuantizedActs a = quantize_acts(xp.data(), m, w.k, w.k, w.group, mode);
  a.perm = w.perm;
  return a;
}

void gemm_w4(const QuantizedActs& a, const PackedW4& w, const float* bias, float* y, int64_t ldy, const Exec& ex) {
  check_w4(w, "gemm_w4");
  if (a.perm != w.perm)
    fail<InvalidArgument>("gemm_w4: the activations' column order does not match the weights' act-order permutation "
                          "(quantize them with quantize_acts(x, m, ldx, w, mode))");
  if (a.k != w.k || a.groups != w.groups() || a.q.size() != static_cast<size_t>(a.m * a.k) ||
      a.scale.size() != static_cast<size_t>(a.m * a.groups) || a.sum.size() != a.scale.size())
    fail<ShapeError>("gemm_w4: activations [{}, {}] with {} groups do not match weights [{}, {}] with {} groups", a.m,
                     a.k, a.groups, w.n, w.k, w.groups());
  check_rows("gemm_w4 (Y)", a.m, ldy, w.n, y);
  const detail::KernelTable& t = table(ex);
  detail::W4Problem p;
  p.qa = a.q.data();
  p.lda = a.k;
  p.a_scale = a.scale.data();
  p.a_sum = a.sum.data();
  p.w = &w;
  p.c = y;
  p.ldc = ldy;
  p.bias = bias;
  const detail::W4Fn fn = a.m == 1 ? t.gemv_w4 : t.gemm_w4;
  parallel_tiles(a.m, w.n_tiles(), w.k, ex.threads, [&](int64_t m0, int64_t m1, int64_t t0, int64_t t1) { fn(p, m0, m1, t0, t1); });
}

void gemm_w4(const float* x, int64_t m, int64_t ldx, const PackedW4& w, const float* bias, float* y, int64_t ldy,
             ActQuant mode, const Exec& ex) {
  check_w4(w, "gemm_w4");
  const QuantizedActs a = quantize_acts(x, m, ldx, w, mode);
  gemm_w4(a, w, bias, y, ldy, ex);
}

void gemm_w4_f32(const float* x, int64_t m, int64_t ldx, const PackedW4& w, const float* bias, float* y,
                 int64_t ldy, const Exec& ex) {
  check_w4(w, "gemm_w4_f32");
  check_rows("gemm_w4_f32 (X)", m, ldx, w.k, x);
  check_rows("gemm_w4_f32 (Y)", m, ldy, w.n, y);
  const detail::KernelTable& t = table(ex);
  std::vector<float> xp;
  if (!w.perm.empty()) {
    xp = gather_columns(x, m, ldx, w.perm);
    x = xp.data();
    ldx = w.k;
  }
  detail::W4F32Problem p;
  p.a = x;
  p.lda = ldx;
  p.w = &w;
  p.c = y;
  p.ldc = ldy;
  p.bias = bias;
  parallel_tiles(m, w.n_tiles(), w.k, ex.threads, [&](int64_t m0, int64_t m1, int64_t t0, int64_t t1) { t.gemm_w4_f32(p, m0, m1, t0, t1); });
}

}  // namespace qk::kernels
