// quantize_model and coverage (qk/pipeline/quantize.hpp): the plan carried out tensor by tensor in plan order.
#include <chrono>
#include <optional>

#include <fmt/format.h>

#include "internal.hpp"
#include "qk/core/error.hpp"
#include "qk/core/threads.hpp"
#include "qk/formats/ggml.hpp"
#include "qk/model/token_file.hpp"
#include "qk/pipeline/quantize.hpp"
#include "qk/util/atomic_file.hpp"

namespace qk::pipeline {

int Report::fallbacks() const {
  int n = 0;
  for (const auto& t : tensors) n += t.fallback;
  return n;
}

double Report::bits_per_weight() const {
  return quantized_weights ? 8.0 * static_cast<double>(quantized_bytes) / static_cast<double>(quantized_weights) : 0.0;
}

namespace detail {

void rethrow_with_context(const formats::QuantizedCheckpoint& in, const std::string& tensor) {
  try {
    throw;
  } catch (const Error& e) {
    const std::string file = in.path().string();
    const std::string m = e.what();
    if (m.rfind(file, 0) == 0) throw;
    const std::string msg = fmt::format("{}: {}", where(in, tensor), m);
    if (dynamic_cast<const NumericError*>(&e)) throw NumericError(msg);
    if (dynamic_cast<const ShapeError*>(&e)) throw ShapeError(msg);
    if (dynamic_cast<const FormatError*>(&e)) throw FormatError(msg);
    if (dynamic_cast<const IoError*>(&e)) throw IoError(msg);
    if (dynamic_cast<const Cancelled*>(&e)) throw;
    if (dynamic_cast<const InvalidArgument*>(&e)) throw InvalidArgument(msg);
    throw Error(msg);
  }
}

}  // namespace detail

Coverage coverage(const formats::QuantizedCheckpoint& input, const CalibrationSource* calibration,
                  const std::map<std::string, std::vector<float>>* imatrix) {
  Coverage c;
  if (imatrix) c.importance = [imatrix](const std::string& n) { return imatrix->count(n) != 0; };
  if (!calibration) return c;
  if (const auto* acts = dynamic_cast<const ActivationFile*>(calibration)) {
    c.calibrated = [acts](const std::string& n) { return acts->has(n); };
    return c;
  }
  std::shared_ptr<ArchitectureAdapter> model = detail::runnable_model(input);
  c.calibrated = [model](const std::string& n) { return model->is_block_linear(n); };
  c.importance = c.calibrated;
  c.missing_reason = "not a block's linear layer";
  return c;
}

Report quantize_model(const formats::QuantizedCheckpoint& input, const Plan& plan, CalibrationSource* calibration,
                      Sink& sink, const QuantizeOptions& o, const ProgressFn& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  check_plan(plan, input);
  const int threads = resolve_threads(o.threads);
  auto* tokens = dynamic_cast<TokenSource*>(calibration);
  auto* acts = dynamic_cast<ActivationFile*>(calibration);
  std::unique_ptr<detail::CalibrationRun> run;
  if (tokens) run = std::make_unique<detail::CalibrationRun>(input, plan, *tokens, o, progress);
  for (const auto& t : plan.tensors) {
    const bool by_run = run && run->produces(t.name);
    if ((t.method == Method::Gptq || t.method == Method::Awq) && !by_run && !(acts && acts->has(t.name)))
      fail<InvalidArgument>("{}: {} needs calibration that reaches the tensor (layer inputs)",
                            detail::where(input, t.name), method_name(t.method));
    if (t.method == Method::RtnImatrix && !by_run && !(o.imatrix && o.imatrix->count(t.name)))
      fail<InvalidArgument>("{}: rtn+imatrix needs an importance matrix or calibration", detail::where(input, t.name));
  }

  uint64_t total = 0;
  for (const auto& t : plan.tensors) total += input.tensor(t.name).info.nbytes;
  Report rep;
  rep.tensors.reserve(plan.tensors.size());
  sink.begin(plan);
  uint64_t done = 0;
  for (size_t i = 0; i < plan.tensors.size(); ++i) {
    const TensorPlan& t = plan.tensors[i];
    const uint64_t in_bytes = input.tensor(t.name).info.nbytes;
    ProgressEvent ev;
    ev.stage = ProgressEvent::Stage::Quantizing;
    ev.tensor = static_cast<int64_t>(i);
    ev.tensors = static_cast<int64_t>(plan.tensors.size());
    ev.name = t.name;
    ev.bytes_done = done;
    ev.bytes_total = total;
    auto report_progress = [&](uint64_t within) {
      if (!progress) return;
      ev.bytes_done = done + within;
      if (!progress(ev)) fail<Cancelled>("cancelled at tensor '{}'", t.name);
    };
    report_progress(0);
    detail::ErrorSum err;
    detail::ErrorSum* errp = t.quantized() ? &err : nullptr;
    EncodedTensor e;
    if (run && run->produces(t.name)) {
      e = run->take(t.name, errp);
    } else if ((t.method == Method::Gptq || t.method == Method::Awq) && acts) {
      e = detail::with_context(input, t.name,
                               [&] { return detail::encode_with_activations(input, t, plan, *acts, o, errp); });
    } else {
      const float* importance = nullptr;
      if (o.imatrix && t.action == Action::Ggml && ggml::info(t.block).uses_importance) {
        if (const auto imx = o.imatrix->find(t.name); imx != o.imatrix->end()) {
          if (static_cast<int64_t>(imx->second.size()) != t.cols())
            fail<ShapeError>("{}: the importance matrix has {} values for rows of {}", detail::where(input, t.name),
                             imx->second.size(), t.cols());
          importance = imx->second.data();
        }
      }
      e = detail::with_context(input, t.name, [&] {
        return detail::encode_plain(input, t, plan, importance, threads, errp, report_progress);
      });
    }
    detail::with_context(input, t.name, [&] { sink.write(t, std::move(e)); });
    done += in_bytes;
    TensorReport tr;
    tr.name = t.name;
    tr.out_type = t.out_type;
    tr.bytes = t.bytes;
    tr.method = t.method;
    tr.fallback = t.fallback;
    tr.note = t.note;
    if (t.quantized()) {
      tr.weight_error = err.relative();
      rep.quantized_weights += input.tensor(t.name).info.numel();
      rep.quantized_bytes += t.bytes;
    }
    rep.tensors.push_back(std::move(tr));
    rep.input_bytes += in_bytes;
    rep.output_bytes += t.bytes;
  }
  if (progress) {
    ProgressEvent ev;
    ev.stage = ProgressEvent::Stage::Committing;
    ev.tensor = ev.tensors = static_cast<int64_t>(plan.tensors.size());
    ev.bytes_done = ev.bytes_total = total;
    if (!progress(ev)) fail<Cancelled>("cancelled before the output was committed");
  }
  // --calib-save: written in full before the output is committed and committed after it, so a failed run (a full
  // disk, an output that cannot be replaced) commits neither
  std::optional<util::AtomicFile> saved;
  if (run && !o.save_calibration.empty() && !run->tokens().empty()) {
    const auto& ids = run->tokens();
    saved.emplace(o.save_calibration, o.save_options);
    saved->write(ids.data(), ids.size() * sizeof(int32_t));  // little-endian int32 (model::write_tokens' format)
  }
  sink.commit();
  if (saved) saved->commit();
  if (run) {
    rep.calibration = run->description();
    rep.awq_scaled_weights = run->awq_scaled();
    rep.awq_folded_norms = run->awq_norms();
  } else if (calibration) {
    rep.calibration = calibration->describe();
  }
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace qk::pipeline
