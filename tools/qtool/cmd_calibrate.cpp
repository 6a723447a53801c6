// `qtool calibrate ACTS.{npy,safetensors,gguf} [--method minmax|moving_average[:c]|percentile[:p]|entropy|mse]
//   [--bits 8] [--scheme sym|asym] [--per-channel AXIS] [--bins 2048] [--tensor NAME] [--json]`
// Runs a calibration observer (qk/calib) over every floating-point tensor of the file, tensor by tensor, and
// prints the clipping range, scale, zero-point and the fake-quant MSE / SQNR the observer predicts, per tensor or
// per channel. Each slice along the first axis is one batch (the moving average sees them in order).
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "output.hpp"
#include "qk/calib/calib.hpp"
#include "qk/io/tensor_file.hpp"

namespace qtool {

namespace {

struct CalibrateOptions {
  std::string file;
  std::string method = "minmax";
  int bits = 8;
  std::string scheme = "sym";
  std::optional<int> per_channel;
  int64_t bins = 2048;
  std::vector<std::string> tensors;
  bool json = false;
};

bool is_float(qk::io::DType t) {
  using qk::io::DType;
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64;
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

std::string num(double v) { return fmt::format("{:.6g}", v); }

struct TensorReport {
  std::string name;
  std::vector<int64_t> shape;
  qk::calib::CalibResult total;                  // per-tensor result (also for per-channel runs: the summary)
  std::vector<qk::calib::CalibResult> channels;  // per-channel runs
};

// Observes one tensor. Errors are re-thrown with the file and tensor named.
TensorReport calibrate_tensor(const qk::io::TensorFile& f, const qk::io::TensorInfo& t, const qk::calib::Observer& proto,
                              const CalibrateOptions& o) {
  TensorReport rep;
  rep.name = t.name;
  rep.shape = t.shape;
  try {
    const qk::io::RowMatrixXf m = f.read_matrix(t);  // [product of leading dims, last dim]
    const int64_t n = static_cast<int64_t>(m.size());
    if (n == 0) qk::fail<qk::ShapeError>("tensor is empty");
    const int64_t batches = t.shape.size() >= 2 ? t.shape[0] : 1;
    const int64_t per_batch = n / std::max<int64_t>(batches, 1);
    if (o.per_channel) {
      qk::calib::PerChannelObserver pc(proto, *o.per_channel);
      std::vector<int64_t> shape = t.shape;
      if (shape.empty()) shape = {1};
      if (shape.size() >= 2 && batches > 1) {
        std::vector<int64_t> bshape = shape;
        bshape[0] = 1;
        const int ax = *o.per_channel < 0 ? *o.per_channel + static_cast<int>(shape.size()) : *o.per_channel;
        if (ax == 0) pc.observe(m.data(), shape);  // channels are the batches: one batch
        else
          for (int64_t b = 0; b < batches; ++b) pc.observe(m.data() + b * per_batch, bshape);
      } else {
        pc.observe(m.data(), shape);
      }
      rep.channels = pc.results();
      // summary: mean predicted MSE over channels, total signal power
      rep.total = rep.channels.front();
      double mse = 0.0, ms = 0.0;
      uint64_t cnt = 0;
      float lo = rep.channels.front().lo, hi = rep.channels.front().hi;
      for (const auto& c : rep.channels) {
        mse += c.predicted_mse * static_cast<double>(c.count);
        ms += c.mean_square * static_cast<double>(c.count);
        cnt += c.count;
        lo = std::min(lo, c.lo);
        hi = std::max(hi, c.hi);
      }
      rep.total.predicted_mse = cnt ? mse / static_cast<double>(cnt) : 0.0;
      rep.total.mean_square = cnt ? ms / static_cast<double>(cnt) : 0.0;
      rep.total.count = cnt;
      rep.total.lo = lo;
      rep.total.hi = hi;
    } else {
      auto obs = proto.clone();
      for (int64_t b = 0; b < batches; ++b) obs->observe(m.data() + b * per_batch, per_batch);
      rep.total = obs->result();
    }
  } catch (const qk::InvalidArgument& e) {
    throw qk::InvalidArgument(fmt::format("{}: tensor '{}': {}", f.path().string(), t.name, e.what()));
  } catch (const qk::NumericError& e) {
    throw qk::NumericError(fmt::format("{}: tensor '{}': {}", f.path().string(), t.name, e.what()));
  } catch (const qk::ShapeError& e) {
    throw qk::ShapeError(fmt::format("{}: tensor '{}': {}", f.path().string(), t.name, e.what()));
  }
  return rep;
}

void add_result(Json& j, const qk::calib::CalibResult& r, bool params) {
  j.kv("lo", static_cast<double>(r.lo)).kv("hi", static_cast<double>(r.hi));
  if (params) j.kv("scale", static_cast<double>(r.scale)).kv("zero_point", r.zero_point);
  j.kv("count", static_cast<size_t>(r.count))
      .kv("predicted_mse", r.predicted_mse)
      .kv("predicted_sqnr_db", r.predicted_sqnr_db());
}

int run_calibrate(const CalibrateOptions& o) {
  // Options first, so a usage error never waits for a file.
  if (o.scheme != "sym" && o.scheme != "asym")
    throw UsageError(fmt::format("--scheme must be sym or asym, got '{}'", o.scheme));
  const qk::QuantScheme scheme = o.scheme == "sym" ? qk::QuantScheme::per_tensor(o.bits, true, true)
                                                   : qk::QuantScheme::per_tensor(o.bits, false, false);
  scheme.validate();
  const auto proto = qk::calib::make_observer(o.method, scheme, o.bins);

  const auto f = qk::io::TensorFile::open(o.file);
  std::vector<const qk::io::TensorInfo*> todo;
  for (const auto& name : o.tensors) todo.push_back(&f->tensor(name));
  if (o.tensors.empty())
    for (const auto& t : f->tensors())
      if (is_float(t.dtype)) todo.push_back(&t);
  if (todo.empty()) qk::fail<qk::FormatError>("{}: no floating-point tensor to calibrate", o.file);
  for (const auto* t : todo)
    if (!is_float(t->dtype))
      throw UsageError(fmt::format("{}: tensor '{}' is {}, not floating point", o.file, t->name, t->type_name()));

  std::vector<TensorReport> reps;
  for (const auto* t : todo) reps.push_back(calibrate_tensor(*f, *t, *proto, o));

  if (o.json) {
    Json j;
    j.obj().kv("file", o.file).kv("method", proto->name()).kv("bits", o.bits).kv("scheme", scheme.describe());
    if (o.per_channel) j.kv("axis", *o.per_channel);
    j.key("tensors").arr();
    for (const auto& r : reps) {
      j.obj().kv("name", r.name);
      j.key("shape").arr();
      for (auto d : r.shape) j.val(static_cast<long long>(d));
      j.end();
      add_result(j, r.total, !o.per_channel);
      if (o.per_channel) {
        j.key("channels").arr();
        for (size_t c = 0; c < r.channels.size(); ++c) {
          j.obj().kv("channel", c);
          add_result(j, r.channels[c], true);
          j.end();
        }
        j.end();
      }
      j.end();
    }
    j.end().end();
    fmt::print("{}\n", j.str());
    return 0;
  }
  fmt::print("{}: {} calibration, {}{}\n\n", o.file, proto->name(), scheme.describe(),
             o.per_channel ? fmt::format(", per channel along axis {}", *o.per_channel) : std::string());
  Table tab({"tensor", "shape", "values", "lo", "hi", "scale", "zero-point", "pred. MSE", "pred. SQNR dB"});
  for (const auto& r : reps) {
    if (!o.per_channel) {
      tab.add({r.name, shape_text(r.shape), std::to_string(r.total.count), num(r.total.lo), num(r.total.hi),
               num(r.total.scale), std::to_string(r.total.zero_point), num(r.total.predicted_mse),
               fmt::format("{:.2f}", r.total.predicted_sqnr_db())});
      continue;
    }
    tab.add({r.name, shape_text(r.shape), std::to_string(r.total.count), num(r.total.lo), num(r.total.hi), "-", "-",
             num(r.total.predicted_mse), fmt::format("{:.2f}", r.total.predicted_sqnr_db())});
    for (size_t c = 0; c < r.channels.size(); ++c) {
      const auto& x = r.channels[c];
      tab.add({fmt::format("  [{}]", c), "", std::to_string(x.count), num(x.lo), num(x.hi), num(x.scale),
               std::to_string(x.zero_point), num(x.predicted_mse), fmt::format("{:.2f}", x.predicted_sqnr_db())});
    }
  }
  tab.print();
  return 0;
}

}  // namespace

void setup_calibrate(CLI::App& app, Runner& run) {
  auto opts = std::make_shared<CalibrateOptions>();
  auto* sub = app.add_subcommand("calibrate", "Calibration ranges, scales and predicted error of activation tensors");
  sub->add_option("file", opts->file, "Activations: .npy, .safetensors or .gguf (floating-point tensors)")->required();
  sub->add_option("--method", opts->method,
                  "minmax | moving_average[:c] | percentile[:p] (default 99.99) | entropy | mse")
      ->capture_default_str();
  sub->add_option("--bits", opts->bits, "Code bits (2..8)")->capture_default_str();
  sub->add_option("--scheme", opts->scheme, "sym: signed symmetric codes; asym: unsigned affine codes")
      ->capture_default_str();
  sub->add_option("--per-channel", opts->per_channel, "Calibrate each channel along this axis (negative: from the end)");
  sub->add_option("--bins", opts->bins, "Histogram bins of the histogram-based methods")->capture_default_str();
  sub->add_option("--tensor", opts->tensors, "Only these tensors (repeatable); default: every floating-point tensor");
  sub->add_flag("--json", opts->json, "JSON instead of a table");
  sub->callback([opts, &run] { run = [opts] { return run_calibrate(*opts); }; });
}

}  // namespace qtool
