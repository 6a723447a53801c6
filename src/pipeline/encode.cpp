// Per-tensor encoding without a model run (src/pipeline/internal.hpp): copies, conversions, RTN onto ggml blocks,
// integer codes and NF4, streamed in row chunks where the encoding allows; GPTQ/AWQ from activation files.
#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "internal.hpp"
#include "qk/core/error.hpp"
#include "qk/core/half.hpp"
#include "qk/core/params.hpp"
#include "qk/formats/bnb_nf4.hpp"
#include "qk/formats/ggml.hpp"
#include "qk/formats/tensor_values.hpp"
#include "qk/methods/awq.hpp"
#include "qk/methods/gptq.hpp"
#include "qk/methods/hessian.hpp"
#include "qk/detail/omp.hpp"

namespace qk::pipeline::detail {
namespace {

constexpr int64_t kChunkFloats = int64_t{1} << 22;  // 16 MiB of floats per chunk

}  // namespace

std::string where(const formats::QuantizedCheckpoint& in, const std::string& tensor) {
  return fmt::format("{}: tensor '{}'", in.path().string(), tensor);
}

RowReader::RowReader(const formats::QuantizedCheckpoint& in, const formats::LogicalTensor& t)
    : in_(in), t_(t), logical_(t.quantized()) {
  cols_ = t.info.shape.empty() ? 1 : t.info.shape.back();
  rows_ = cols_ == 0 ? 0 : t.info.numel() / cols_;
}

void RowReader::read(int64_t r0, int64_t n, float* dst) {
  if (logical_) {
    if (decoded_.size() == 0 && rows_ * cols_ > 0) decoded_ = in_.read_matrix(t_);
    if (n > 0) std::memcpy(dst, decoded_.data() + r0 * cols_, static_cast<size_t>(n * cols_) * sizeof(float));
    return;
  }
  formats::read_rows(in_.file(), t_.info, r0, n, dst);
}

const float* RowReader::direct(int64_t r0) const {
  if (logical_ || t_.info.dtype != io::DType::F32) return nullptr;
  const std::byte* p = in_.file().bytes(t_.info).data() + static_cast<size_t>(r0 * cols_) * sizeof(float);
  return reinterpret_cast<uintptr_t>(p) % alignof(float) == 0 ? reinterpret_cast<const float*>(p) : nullptr;
}

void RowReader::release(int64_t r0, int64_t n) const {
  if (logical_) return;
  const auto b = in_.file().bytes(t_.info);
  if (rows_ == 0) return;
  const size_t row_bytes = b.size() / static_cast<size_t>(rows_);
  in_.file().release(b.subspan(static_cast<size_t>(r0) * row_bytes, static_cast<size_t>(n) * row_bytes));
}

io::RowMatrixXf RowReader::all() {
  io::RowMatrixXf m(rows_, cols_);
  read(0, rows_, m.data());
  return m;
}

void ErrorSum::add(const float* w, const float* q, int64_t n) {
  double a = 0, b = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(w[i]) - q[i];
    a += d * d;
    b += static_cast<double>(w[i]) * w[i];
  }
  noise += a;
  signal += b;
}

void add_ggml_error(ErrorSum& err, ggml::Type type, const float* w, const std::byte* enc, int64_t rows, int64_t cols,
                    int threads) {
  // Rows decoded and compared in parallel, in fixed parts of 16 rows whose sums are added in part order: the
  // figure is the same on any thread count, and no thread waits for a serial pass over the chunk.
  constexpr int64_t kPart = 16;
  const int64_t parts = (rows + kPart - 1) / kPart, rb = ggml::row_size(type, cols);
  std::vector<double> noise(static_cast<size_t>(parts)), signal(static_cast<size_t>(parts));
  qk::detail::FirstException first;
#pragma omp parallel num_threads(std::max(1, std::min<int>(threads, static_cast<int>(parts))))
  {
    std::vector<float> q(static_cast<size_t>(cols));
#pragma omp for schedule(static)
    for (int64_t p = 0; p < parts; ++p)
      first.run([&] {
        ErrorSum e;
        for (int64_t r = p * kPart; r < std::min(rows, (p + 1) * kPart); ++r) {
          ggml::dequantize_rows(type, enc + r * rb, 1, cols, q.data(), 1);
          e.add(w + r * cols, q.data(), cols);
        }
        noise[static_cast<size_t>(p)] = e.noise;
        signal[static_cast<size_t>(p)] = e.signal;
      });
  }
  first.rethrow();
  for (int64_t p = 0; p < parts; ++p) {
    err.noise += noise[static_cast<size_t>(p)];
    err.signal += signal[static_cast<size_t>(p)];
  }
}

void check_finite(const float* x, int64_t rows, int64_t cols, int64_t row0, const std::string& where) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      if (!std::isfinite(x[r * cols + c]))
        fail<NumericError>("{}: {} at [{}, {}]", where, x[r * cols + c], row0 + r, c);
}

QuantScheme scheme_of(const TensorPlan& t, bool sym) {
  return t.group == 0 ? QuantScheme::per_channel(t.bits, sym, false) : QuantScheme::per_group(t.bits, t.group, sym, false);
}

QuantizedTensor int_rtn(const io::RowMatrixXf& W, const TensorPlan& t, bool sym, const std::string& where) {
  // parameters with fp16-representable scales, so the checkpoint's fp16 scales decode the same codes
  const QuantScheme s = scheme_of(t, sym);
  QuantParams p = compute_params(W, s);
  for (Eigen::Index k = 0; k < p.scale.size(); ++k) {
    float& sc = p.scale.data()[k];
    uint16_t h = fp32_to_fp16(sc);
    if (fp16_to_fp32(h) <= 0.0f) h = 1;  // smallest fp16 subnormal
    if ((h & 0x7C00u) == 0x7C00u)
      fail<NumericError>("{}: scale {} exceeds the fp16 range of GPTQ checkpoints", where, sc);
    sc = fp16_to_fp32(h);
  }
  return quantize(W, s, &p);
}

GptqOptions gptq_options(const QuantizeOptions& o, bool int_grid) {
  GptqOptions g = o.gptq;
  // block grids record no g_idx: act-order needs their groups fitted up front
  g.static_groups = o.gptq.static_groups || (o.gptq.act_order && !int_grid);
  g.threads = o.threads;
  return g;
}

// AWQ per layer searches the clipping only: its per-channel input scales have to be folded into the previous
// operation, which needs the model (QuantizeOptions::awq_scales, the block-scored search of the calibration run).
AwqOptions awq_options(const QuantizeOptions& o) {
  AwqOptions a;
  a.search_scale = false;
  a.threads = o.threads;
  return a;
}

EncodedTensor encode_plain(const formats::QuantizedCheckpoint& in, const TensorPlan& t, const Plan& plan,
                           const float* importance, int threads, ErrorSum* err,
                           const std::function<void(uint64_t)>& on_rows) {
  const formats::LogicalTensor& l = in.tensor(t.name);
  const std::string w = where(in, t.name);
  RowReader rd(in, l);
  const int64_t rows = rd.rows(), cols = rd.cols();
  const uint64_t row_in_bytes = rows > 0 ? l.info.nbytes / static_cast<uint64_t>(rows) : 0;
  std::vector<float> buf;
  switch (t.action) {
    case Action::Copy: {
      EncodedTensor e;
      e.bytes = in.file().bytes(l.info);
      if (on_rows) on_rows(l.info.nbytes);
      return e;
    }
    case Action::Convert: {
      std::vector<std::byte> out(t.bytes);
      const size_t es = io::dtype_size(t.dtype);
      const int64_t step = std::max<int64_t>(1, kChunkFloats / std::max<int64_t>(cols, 1));
      for (int64_t r0 = 0; r0 < rows; r0 += step) {
        const int64_t nr = std::min(step, rows - r0);
        buf.resize(static_cast<size_t>(nr * cols));
        rd.read(r0, nr, buf.data());
        try {
          io::encode_floats(buf.data(), nr * cols, t.dtype, out.data() + static_cast<size_t>(r0 * cols) * es);
        } catch (const NumericError& e) {
          fail<NumericError>("{} (rows {}..{}): {}", w, r0, r0 + nr - 1, e.what());
        }
        rd.release(r0, nr);
        if (on_rows) on_rows(static_cast<uint64_t>(r0 + nr) * row_in_bytes);
      }
      return EncodedTensor::of(std::move(out));
    }
    case Action::Ggml: {
      std::vector<std::byte> out(t.bytes);
      const int64_t rb = ggml::row_size(t.block, cols);
      const int64_t step = std::max<int64_t>(1, kChunkFloats / cols);
      for (int64_t r0 = 0; r0 < rows; r0 += step) {
        const int64_t nr = std::min(step, rows - r0);
        const float* src = rd.direct(r0);
        if (!src) {
          buf.resize(static_cast<size_t>(nr * cols));
          rd.read(r0, nr, buf.data());
          src = buf.data();
        }
        std::byte* dst = out.data() + r0 * rb;
        try {  // the encoder checks for NaN/Inf; name the tensor in its message
          ggml::quantize_rows(t.block, src, nr, cols, dst, importance, threads);
        } catch (const NumericError& e) {
          fail<NumericError>("{} (rows {}..{}): {}", w, r0, r0 + nr - 1, e.what());
        }
        if (err) add_ggml_error(*err, t.block, src, dst, nr, cols, threads);
        rd.release(r0, nr);
        if (on_rows) on_rows(static_cast<uint64_t>(r0 + nr) * row_in_bytes);
      }
      return EncodedTensor::of(std::move(out));
    }
    case Action::Int: {
      const io::RowMatrixXf W = rd.all();
      rd.release_all();
      check_finite(W.data(), W.rows(), W.cols(), 0, w);
      EncodedTensor e;
      e.ints = int_rtn(W, t, plan.sym, w);
      if (err) {
        const io::RowMatrixXf D = e.ints->dequantize();
        err->add(W.data(), D.data(), W.size());
      }
      if (on_rows) on_rows(l.info.nbytes);
      return e;
    }
    case Action::Nf4: {
      const io::RowMatrixXf W = rd.all();
      rd.release_all();
      check_finite(W.data(), W.rows(), W.cols(), 0, w);
      EncodedTensor e;
      e.nf4 = formats::bnb::nf4_quantize_weight(std::span<const float>(W.data(), static_cast<size_t>(W.size())));
      if (err) {
        const std::vector<float> D = e.nf4->dequantize();
        err->add(W.data(), D.data(), W.size());
      }
      if (on_rows) on_rows(l.info.nbytes);
      return e;
    }
  }
  fail<InvalidArgument>("{}: unknown action", w);
}

EncodedTensor encode_with_activations(const formats::QuantizedCheckpoint& in, const TensorPlan& t, const Plan& plan,
                                      const ActivationFile& acts, const QuantizeOptions& o, ErrorSum* err) {
  const std::string w = where(in, t.name);
  RowReader rd(in, in.tensor(t.name));
  const io::RowMatrixXf W = rd.all();
  rd.release_all();
  const io::RowMatrixXf X = acts.activations(t.name, W.cols());
  EncodedTensor e;
  io::RowMatrixXf D;
  if (t.action == Action::Ggml) {
    ggml::GgmlGrid grid(t.block);
    if (t.method == Method::Gptq) {
      HessianAccumulator acc(W.cols());
      acc.add(X, o.threads);
      D = gptq(W, acc, grid, gptq_options(o, false)).dequantized;
    } else {
      D = awq(W, X, grid, awq_options(o)).dequantized;
    }
    auto enc = grid.encode();
    if (enc.size() != t.bytes) fail<Error>("{}: encoder gave {} bytes, expected {}", w, enc.size(), t.bytes);
    std::vector<std::byte> b(enc.size());
    std::memcpy(b.data(), enc.data(), enc.size());
    e = EncodedTensor::of(std::move(b));
  } else if (t.action == Action::Int) {
    const QuantScheme s = scheme_of(t, plan.sym);
    if (t.method == Method::Gptq) {
      HessianAccumulator acc(W.cols());
      acc.add(X, o.threads);
      e.ints = gptq_quantize(W, acc.hessian(), s, gptq_options(o, true));
    } else {
      e.ints = awq_quantize(W, X, s, awq_options(o));
    }
    D = e.ints->dequantize();
  } else {
    fail<InvalidArgument>("{}: {} has no {} path", w, t.out_type, method_name(t.method));
  }
  if (err) err->add(W.data(), D.data(), W.size());
  return e;
}

}  // namespace qk::pipeline::detail
