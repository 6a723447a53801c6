// `qtool quantize` in matrix mode: one weight matrix W ([out, in], .npy or a tensor of a .safetensors file)
// quantized with RTN, GPTQ, AWQ or SmoothQuant W8A8 (include/qk/methods). Output (docs/cli.md, "qtool quantize
// (matrix mode)"): a safetensors file in qk's layout, whatever OUT's extension:
//   codes        U8  [out, row_bytes]  packed codes u = q - qmin of each row (include/qk/core/pack.hpp order)
//   scales       F32 [out, groups]
//   zero_points  I32 [out, groups]
//   g_idx        I32 [in]              group of each input column (GPTQ act-order permutes it)
//   input_scale  F32 [in]              AWQ / SmoothQuant only: the codes encode W·diag(s); divide inputs by s
//   act_scale    F32 [1]               SmoothQuant only: static per-tensor activation scale from the calibration
// with __metadata__ {format: "qk.quantized_matrix", version, method, bits, group, symmetric, signed, rows, cols,
// and the method's choices}. --dequantized also writes Ŵ as float32 .npy (SmoothQuant: the smoothed quantized
// weight, and the smoothing vector next to it as <name>.smooth.npy). Every output is written to a temporary file
// and renamed only after all of them were written, so an error leaves no output. For GPTQ, --calib may also name
// a saved HessianAccumulator file (calibration and quantization run apart; no E is reported then).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "output.hpp"
#include "qk/core/error.hpp"
#include "qk/core/quantize.hpp"
#include "qk/core/scheme.hpp"
#include "qk/io/npy.hpp"
#include "qk/io/safetensors.hpp"
#include "qk/io/tensor_file.hpp"
#include "qk/methods/awq.hpp"
#include "qk/methods/gptq.hpp"
#include "qk/methods/hessian.hpp"
#include "qk/methods/rtn.hpp"
#include "qk/methods/smoothquant.hpp"
#include "quantize_opts.hpp"

namespace qtool {

namespace {

template <typename T>
std::span<const std::byte> as_bytes_of(const T* p, size_t n) {
  return {reinterpret_cast<const std::byte*>(p), n * sizeof(T)};
}

std::filesystem::path smooth_path(const std::filesystem::path& deq) {
  auto p = deq;
  p.replace_extension();
  p += ".smooth.npy";
  return p;
}

// A HessianAccumulator file (qk/methods/hessian.hpp) starts with "QKHESS".
bool is_hessian_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char m[6] = {};
  return f.read(m, 6) && std::string(m, 6) == "QKHESS";
}

double rel_error(const qk::RowMatrixXf& X, const qk::RowMatrixXf& W, const qk::RowMatrixXf& Y) {
  const Eigen::MatrixXf Y0 = X * W.transpose();
  return (Y0 - Y).cast<double>().squaredNorm() / Y0.cast<double>().squaredNorm();
}

}  // namespace

int run_quantize_matrix(const QuantizeOptions& o) {
  using clock = std::chrono::steady_clock;
  const std::string& m = o.method;
  const bool needs_calib = m == "gptq" || m == "awq" || m == "smoothquant";
  if (needs_calib && o.calib.empty()) throw UsageError(fmt::format("--method {} needs --calib X", m));
  if (m == "smoothquant") {
    if (o.bits && *o.bits != 8) throw UsageError("--method smoothquant is W8A8: --bits must be 8 (or left out)");
  } else if (!o.bits) {
    throw UsageError(fmt::format("--method {} needs --bits", m));
  }
  if (o.act_order && m != "gptq") throw UsageError("--act-order applies to --method gptq only");
  if (o.static_groups && m != "gptq") throw UsageError("--static-groups applies to --method gptq only");

  const auto t0 = clock::now();
  const qk::RowMatrixXf W = qk::io::load_matrix(o.input, o.tensor);
  std::optional<qk::RowMatrixXf> X;
  std::optional<qk::HessianAccumulator> hess;  // --calib H.qkh: a saved Hessian (GPTQ only)
  if (!o.calib.empty() && is_hessian_file(o.calib)) {
    if (m != "gptq") throw UsageError(fmt::format("{}: a Hessian file serves --method gptq only", o.calib));
    hess = qk::HessianAccumulator::load(o.calib);
    if (hess->dim() != W.cols())
      throw qk::ShapeError(fmt::format("{}: the Hessian is {}x{}, but the weight {} has {} input columns", o.calib,
                                       hess->dim(), hess->dim(), o.input, W.cols()));
  } else if (!o.calib.empty()) {
    X = qk::io::load_matrix(o.calib);
    if (X->cols() != W.cols())
      throw qk::ShapeError(fmt::format("{}: calibration X is [{}, {}], but the weight {} has {} input columns",
                                       o.calib, X->rows(), X->cols(), o.input, W.cols()));
    qk::check_finite(*X, o.calib);
  }
  qk::check_finite(W, o.input);
  const int threads = qk::resolve_threads(o.threads);

  qk::QuantScheme scheme;
  if (m == "smoothquant") {
    scheme = qk::QuantScheme::per_channel(8, true, true);
    scheme.narrow_range = true;
  } else {
    scheme = o.group > 0 ? qk::QuantScheme::per_group(*o.bits, o.group, o.sym, false)
                         : qk::QuantScheme::per_channel(*o.bits, o.sym, false);
    if (o.group > 0 && W.cols() % o.group != 0)
      throw UsageError(fmt::format("--group {} does not divide the {} input columns of {}", o.group, W.cols(), o.input));
  }

  qk::QuantizedTensor q;
  qk::RowMatrixXf What;                 // Ŵ in the input space of W
  std::optional<Eigen::VectorXf> input_scale;
  std::optional<float> act_scale;
  std::optional<double> e_calib;
  std::vector<std::pair<std::string, std::string>> meta;
  std::vector<std::string> warnings;

  // a method's error (a Hessian that carries nothing, a grid that cannot hold a weight) names both files
  try {
  if (m == "rtn") {
    q = qk::rtn_quantize(W, scheme);
    What = q.dequantize();
  } else if (m == "gptq") {
    qk::HessianAccumulator acc(W.cols());
    if (hess) acc = std::move(*hess);
    else acc.add(*X, threads);
    qk::GptqOptions go;
    go.damp = o.damp;
    go.block_size = o.block_size;
    go.act_order = o.act_order;
    go.static_groups = o.static_groups;
    go.threads = threads;
    qk::GptqResult r;
    q = qk::gptq_quantize(W, acc.hessian(), scheme, go, &r);
    What = std::move(r.dequantized);
    warnings = r.warnings;
    meta.emplace_back("damp", fmt::format("{}", r.damp));
    meta.emplace_back("act_order", o.act_order ? "true" : "false");
    meta.emplace_back("static_groups", o.static_groups ? "true" : "false");
    meta.emplace_back("block_size", std::to_string(o.block_size));
  } else if (m == "awq") {
    qk::AwqOptions ao;
    ao.threads = threads;
    qk::AwqResult r;
    q = qk::awq_quantize(W, *X, scheme, ao, &r);
    What = std::move(r.dequantized);
    input_scale = r.scales;
    meta.emplace_back("awq_ratio", fmt::format("{}", r.ratio));
  } else {  // smoothquant
    qk::SmoothQuantOptions so;
    so.alpha = o.alpha;
    so.threads = threads;
    const qk::W8A8Layer L = qk::smoothquant(W, *X, so);
    q = L.weight;
    What = q.dequantize();  // smoothed quantized weight W'_q (inputs divided by s)
    input_scale = L.smooth;
    act_scale = L.act_scale;
    e_calib = rel_error(*X, W, qk::w8a8_forward(*X, L, threads));
    meta.emplace_back("alpha", fmt::format("{}", o.alpha));
    meta.emplace_back("activations", "int8 per-token dynamic (act_scale: per-tensor static alternative)");
  }
  // never write a non-finite code parameter or value (weights near FLT_MAX can overflow them)
  qk::check_finite(q.params.scale, "the scales");
  qk::check_finite(What, "the dequantized weight");
  if (input_scale) qk::check_finite(*input_scale, "the input scales");
  } catch (const qk::NumericError& e) {
    throw qk::NumericError(o.calib.empty() ? fmt::format("{}: {}", o.input, e.what())
                                           : fmt::format("{} (calibration {}): {}", o.input, o.calib, e.what()));
  }
  if (X && !e_calib) e_calib = rel_error(*X, W, *X * What.transpose());
  const double secs = std::chrono::duration<double>(clock::now() - t0).count();

  // ---- outputs: everything written to temporaries first, committed together at the end.
  qk::util::WriteOptions wo;
  wo.overwrite = o.force;
  wo.inputs = {o.input};
  if (!o.calib.empty()) wo.inputs.push_back(o.calib);
  const int64_t rows = q.rows, cols = q.cols, groups = q.params.cols();
  std::vector<int32_t> g_idx(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) g_idx[static_cast<size_t>(c)] = static_cast<int32_t>(q.group_of(c));

  qk::io::SafetensorsWriter st(o.output, wo);
  st.set_metadata("format", "qk.quantized_matrix");
  st.set_metadata("version", "1");
  st.set_metadata("method", m);
  st.set_metadata("scheme", scheme.describe());
  st.set_metadata("bits", std::to_string(scheme.bits));
  st.set_metadata("group", std::to_string(scheme.granularity == qk::Granularity::PerGroup ? scheme.group_size : 0));
  st.set_metadata("symmetric", scheme.symmetric ? "true" : "false");
  st.set_metadata("signed", scheme.is_signed ? "true" : "false");
  st.set_metadata("rows", std::to_string(rows));
  st.set_metadata("cols", std::to_string(cols));
  for (auto& [k, v] : meta) st.set_metadata(k, v);
  st.add_tensor("codes", qk::io::DType::U8, {rows, q.row_bytes()});
  st.add_tensor("scales", qk::io::DType::F32, {rows, groups});
  st.add_tensor("zero_points", qk::io::DType::I32, {rows, groups});
  st.add_tensor("g_idx", qk::io::DType::I32, {cols});
  if (input_scale) st.add_tensor("input_scale", qk::io::DType::F32, {cols});
  if (act_scale) st.add_tensor("act_scale", qk::io::DType::F32, {1});
  st.write_tensor("codes", as_bytes_of(q.packed.data(), q.packed.size()));
  const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> sc = q.params.scale;
  const Eigen::Matrix<int32_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> zp = q.params.zero_point;
  st.write_tensor("scales", as_bytes_of(sc.data(), static_cast<size_t>(sc.size())));
  st.write_tensor("zero_points", as_bytes_of(zp.data(), static_cast<size_t>(zp.size())));
  st.write_tensor("g_idx", as_bytes_of(g_idx.data(), g_idx.size()));
  if (input_scale) st.write_tensor("input_scale", as_bytes_of(input_scale->data(), static_cast<size_t>(cols)));
  if (act_scale) st.write_tensor("act_scale", as_bytes_of(&*act_scale, 1));

  std::optional<qk::io::NpyWriter> deq, smooth;
  if (!o.dequantized.empty()) {
    auto dwo = wo;
    dwo.inputs.push_back(o.output);
    deq.emplace(o.dequantized, qk::io::DType::F32, std::vector<int64_t>{What.rows(), What.cols()}, dwo);
    deq->append(as_bytes_of(What.data(), static_cast<size_t>(What.size())));
    if (m == "smoothquant") {
      dwo.inputs.push_back(o.dequantized);
      smooth.emplace(smooth_path(o.dequantized), qk::io::DType::F32, std::vector<int64_t>{cols}, dwo);
      smooth->append(as_bytes_of(input_scale->data(), static_cast<size_t>(cols)));
    }
  }
  st.commit();
  if (deq) deq->commit();
  if (smooth) smooth->commit();

  // ---- summary
  // Weight error in W's own input space (SmoothQuant: W'_q·diag(s)⁻¹).
  const qk::RowMatrixXf What_eff =
      m == "smoothquant" ? qk::RowMatrixXf(What * input_scale->cwiseInverse().asDiagonal()) : What;
  const double wmse = (W - What_eff).cast<double>().squaredNorm() / static_cast<double>(W.size());
  if (o.json) {
    Json j;
    j.obj().kv("input", o.input).kv("output", o.output).kv("method", m).kv("scheme", scheme.describe());
    j.key("shape").arr().val(static_cast<long long>(rows)).val(static_cast<long long>(cols)).end();
    j.kv("weight_mse", wmse);
    j.key("E_calib");
    if (e_calib) j.val(*e_calib);
    else j.null();
    j.kv("seconds", secs).kv("threads", threads);
    j.key("warnings").arr();
    for (auto& w : warnings) j.val(w);
    j.end().end();
    fmt::print("{}\n", j.str());
  } else if (!o.quiet) {
    for (auto& w : warnings) fmt::print(stderr, "qtool: warning: {}\n", w);
    fmt::print("{} [{}, {}] {} {}: weight MSE {:.6g}", o.input, rows, cols, m, scheme.describe(), wmse);
    if (e_calib) fmt::print(", E(calib) {:.6g}", *e_calib);
    fmt::print(", {:.3f} s, {} thread(s) -> {}\n", secs, threads, o.output);
  }
  return 0;
}

}  // namespace qtool
