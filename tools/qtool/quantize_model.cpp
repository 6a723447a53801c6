// `qtool quantize IN -o OUT --type T` (model mode): options into the library's pipeline (qk/pipeline), the
// progress line and the summary out. What happens to each tensor, calibration, streaming and atomic output are the
// library's (docs/api.md); this file only checks option combinations (usage errors, exit 2) and prints.
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "output.hpp"
#include "progress.hpp"
#include "qk/core/error.hpp"
#include "qk/formats/checkpoint.hpp"
#include "qk/io/imatrix.hpp"
#include "qk/io/tensor_file.hpp"
#include "qk/model/tokenizer.hpp"
#include "qk/pipeline/calibration.hpp"
#include "qk/pipeline/plan.hpp"
#include "qk/pipeline/quantize.hpp"
#include "qk/pipeline/sink.hpp"
#include "qk/pipeline/target.hpp"
#include "quantize_opts.hpp"

namespace fs = std::filesystem;
namespace pl = qk::pipeline;

namespace qtool {
namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool uses_tokens(const QuantizeOptions& o) {
  return !o.calib_tokens.empty() || !o.calib_text.empty() || o.calib_generate;
}

bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  if (fs::exists(a, ec) && fs::exists(b, ec)) return fs::equivalent(a, b, ec);
  return fs::weakly_canonical(a, ec) == fs::weakly_canonical(b, ec);
}

// GPTQ/AWQ on a GGUF model with no calibration given: calibrate on sequences sampled from the model itself
// (never the user's evaluation text), so `qtool quantize model.gguf --method gptq --type q4_k` just works.
QuantizeOptions with_default_calibration(QuantizeOptions o) {
  if ((o.method == "gptq" || o.method == "awq") && o.calib.empty() && !uses_tokens(o) &&
      lower(fs::path(o.input).extension().string()) == ".gguf") {
    o.calib_generate = true;
    if (!o.quiet)
      fmt::print(stderr,
                 "qtool: no calibration given: using {} sequences of {} tokens sampled from the model "
                 "(--calib-generate, seed {}); pass --calib-text FILE for your own text\n",
                 o.calib_samples, o.calib_ctx, o.calib_seed);
  }
  return o;
}

// Option combinations the library would also refuse, refused here first as usage errors (exit 2).
void check_options(const QuantizeOptions& o, const pl::TargetType& target) {
  using K = pl::TargetType::Kind;
  if (o.fallback != "auto") {
    const auto fb = pl::TargetType::parse(o.fallback);
    if (!fb || fb->kind == K::Int || fb->kind == K::Nf4)
      throw UsageError(fmt::format("--fallback '{}' must be auto, f16, bf16, f32 or a ggml type", o.fallback));
  }
  if (o.method != "rtn" && o.method != "gptq" && o.method != "awq")
    throw UsageError(fmt::format("--method {} is not available in model mode (rtn, gptq, awq)", o.method));
  if (o.method != "rtn" && target.kind == K::Nf4)
    throw UsageError(fmt::format(
        "--type nf4 is absmax (RTN) quantization as bitsandbytes does; --method {} has no NF4 grid", o.method));
  if (o.method != "rtn" && target.kind == K::Plain)
    throw UsageError(fmt::format("--method {} needs a quantized --type, not {}", o.method, target.name));
  if (o.method != "rtn" && o.calib.empty() && !uses_tokens(o))
    throw UsageError(fmt::format(
        "--method {} needs calibration data: --calib-text FILE, --calib-tokens IDS.i32 or --calib-generate (Llama "
        "GGUF: the model's own forward pass gives each layer's inputs), or --calib FILE (one [tokens, in_features] float matrix per "
        "linear layer, named after its weight); see docs/cli.md",
        o.method));
  if (!o.calib.empty() && uses_tokens(o))
    throw UsageError(
        "--calib (activations) and --calib-text/--calib-tokens/--calib-generate (tokens) exclude each other");
  if (o.method == "rtn" && uses_tokens(o) && (target.kind != K::Ggml || !o.imatrix.empty()))
    throw UsageError("--method rtn with --calib-text/--calib-tokens/--calib-generate computes the importance matrix "
                     "of ggml block types: not with --imatrix, nor for other types");
  if (o.awq_scales && (o.method != "awq" || !uses_tokens(o)))
    throw UsageError(
        "--awq-scales needs --method awq with --calib-text, --calib-tokens or --calib-generate (the model is run)");
  if (!o.calib_save.empty() && !uses_tokens(o))
    throw UsageError("--calib-save needs --calib-text, --calib-tokens or --calib-generate");
  if (!o.imatrix.empty() && target.kind != K::Ggml)
    throw UsageError("--imatrix applies to ggml block types (q4_k, ...) only");
}

void print_summary(const QuantizeOptions& o, const pl::TargetType& target, const pl::Plan& plan, const pl::Report& r,
                   uint64_t in_file, uint64_t out_file) {
  if (o.json) {
    Json j;
    j.obj();
    j.kv("input", o.input).kv("output", o.output).kv("type", target.name).kv("method", o.method);
    j.kv("input_bytes", static_cast<size_t>(in_file)).kv("output_bytes", static_cast<size_t>(out_file));
    j.kv("quantized_bits_per_weight", r.bits_per_weight()).kv("seconds", r.seconds);
    j.kv("mb_per_s", r.seconds > 0 ? static_cast<double>(r.input_bytes) / 1e6 / r.seconds : 0.0);
    j.kv("fallbacks", r.fallbacks());
    if (!r.calibration.empty()) j.kv("calibration", r.calibration);
    j.key("tensors").arr();
    for (size_t i = 0; i < r.tensors.size(); ++i) {
      const auto& t = r.tensors[i];
      const auto& p = plan.tensors[i];
      j.obj();
      j.kv("name", t.name).kv("shape", qk::io::shape_text(p.shape));
      j.kv("in_type", p.in_type).kv("out_type", t.out_type);
      j.kv("bytes", static_cast<size_t>(t.bytes)).kv("method", pl::method_name(t.method));
      j.kv("fallback", t.fallback).kv("note", t.note);
      if (t.weight_error >= 0) j.kv("weight_error", t.weight_error);
      j.end();
    }
    j.end();
    j.end();
    fmt::print("{}\n", j.str());
    return;
  }
  if (o.quiet) return;
  struct Group {
    int tensors = 0;
    int64_t elems = 0;
    uint64_t bytes = 0;
  };
  std::map<std::string, Group> by_type;
  for (const auto& p : plan.tensors) {
    auto& g = by_type[p.out_type];
    g.tensors++;
    int64_t n = 1;
    for (int64_t d : p.shape) n *= d;
    g.elems += n;
    g.bytes += p.bytes;
  }
  Table table({"type", "tensors", "weights", "size", "bits/weight"});
  for (const auto& [name, g] : by_type)
    table.add({name, std::to_string(g.tensors), std::to_string(g.elems), human_bytes(static_cast<double>(g.bytes)),
               fmt::format("{:.2f}", g.elems ? 8.0 * static_cast<double>(g.bytes) / static_cast<double>(g.elems) : 0.0)});
  fmt::print("{} -> {} ({}, method {})\n", o.input, o.output, target.name, o.method);
  if (!r.calibration.empty())
    fmt::print("calibration: {}; layers quantized in order, each on the inputs of the partly quantized model\n",
               r.calibration);
  if (r.awq_folded_norms)
    fmt::print("AWQ input scales of {} weights folded into {} norm weights\n", r.awq_scaled_weights, r.awq_folded_norms);
  table.print();
  fmt::print("size: {} -> {} ({:.2f}x); quantized weights {:.2f} bits/weight; {:.2f} s, {:.1f} MB/s\n",
             human_bytes(static_cast<double>(in_file)), human_bytes(static_cast<double>(out_file)),
             out_file ? static_cast<double>(in_file) / static_cast<double>(out_file) : 0.0, r.bits_per_weight(),
             r.seconds, r.seconds > 0 ? static_cast<double>(r.input_bytes) / 1e6 / r.seconds : 0.0);
  if (r.fallbacks()) {
    fmt::print("{} tensor(s) fell back:\n", r.fallbacks());
    for (size_t i = 0; i < r.tensors.size(); ++i)
      if (r.tensors[i].fallback)
        fmt::print("  {} {} -> {}: {}\n", r.tensors[i].name, qk::io::shape_text(plan.tensors[i].shape),
                   r.tensors[i].out_type, r.tensors[i].note);
  }
  for (const auto& t : r.tensors)
    if (!t.fallback && t.note.find("no calibration") != std::string::npos) fmt::print("  {}: {}\n", t.name, t.note);
}

}  // namespace

int run_quantize_model(const QuantizeOptions& given) {
  const QuantizeOptions o = with_default_calibration(given);
  const auto target_opt = pl::TargetType::parse(*o.type);
  if (!target_opt)
    throw UsageError(fmt::format("--type '{}' is not a known type; one of: {}", *o.type, pl::TargetType::spellings()));
  const pl::TargetType& target = *target_opt;
  check_options(o, target);

  const fs::path in_path(o.input), out_path(o.output);
  pl::Container container;
  try {
    container = pl::container_for(out_path, target, o.output_format);
  } catch (const qk::InvalidArgument& e) {
    throw UsageError(e.what());
  }
  if (same_file(in_path, out_path)) throw UsageError(fmt::format("output '{}' is the input file", o.output));
  std::error_code ec;
  if (fs::exists(out_path, ec) && !o.force)
    throw UsageError(fmt::format("output '{}' exists (pass --force to overwrite it)", o.output));
  if (container == pl::Container::GptqCheckpoint && lower(out_path.extension().string()) == ".safetensors" &&
      fs::exists(out_path.parent_path() / "quantize_config.json", ec) && !o.force)
    throw UsageError(
        fmt::format("'{}' exists (pass --force to overwrite it)", (out_path.parent_path() / "quantize_config.json").string()));
  if (!o.calib_save.empty()) {
    if (same_file(in_path, o.calib_save) || same_file(out_path, o.calib_save) ||
        (!o.calib_tokens.empty() && same_file(o.calib_tokens, o.calib_save)) ||
        (!o.calib_text.empty() && same_file(o.calib_text, o.calib_save)))
      throw UsageError(fmt::format("--calib-save '{}' is the input or the output", o.calib_save));
    if (fs::exists(o.calib_save, ec) && !o.force)
      throw UsageError(fmt::format("--calib-save '{}' exists (pass --force to overwrite it)", o.calib_save));
  }

  // ---- input: a quantized checkpoint (GPTQ, bitsandbytes NF4/FP4) is read as its logical float weights
  const auto input = qk::formats::QuantizedCheckpoint::open(in_path);
  if (input->quantized() && o.method != "rtn")
    throw UsageError(fmt::format("'{}' is a GPTQ or bitsandbytes checkpoint: its weights are dequantized and "
                                 "re-quantized with --method rtn only",
                                 o.input));
  if (same_file(input->weights_path(), out_path)) throw UsageError(fmt::format("output '{}' is the input file", o.output));
  if (input->file().format() == qk::io::FileFormat::Npy)
    throw UsageError(fmt::format("'{}' is a single .npy array: model mode reads GGUF or safetensors models "
                                 "(matrix mode: drop --type, use --bits/--group)",
                                 o.input));

  // ---- calibration and importance
  std::map<std::string, std::vector<float>> imatrix;
  if (!o.imatrix.empty()) imatrix = qk::io::read_imatrix(o.imatrix);
  std::unique_ptr<pl::CalibrationSource> calibration;
  const pl::SequenceShape shape{o.calib_samples, o.calib_ctx};
  if (!o.calib.empty()) calibration = std::make_unique<pl::ActivationFile>(o.calib);
  else if (!o.calib_tokens.empty()) calibration = std::make_unique<pl::TokenFile>(o.calib_tokens, shape);
  else if (!o.calib_text.empty())
    calibration = std::make_unique<pl::TextTokens>(o.calib_text, qk::model::Tokenizer::from_gguf(input->file()), shape);
  else if (o.calib_generate) calibration = std::make_unique<pl::GeneratedTokens>(shape, o.calib_seed, o.threads);

  // ---- the plan
  pl::PlanOptions po;
  po.type = target;
  po.container = container;
  po.method = o.method == "gptq" ? pl::Method::Gptq
              : o.method == "awq" ? pl::Method::Awq
              : uses_tokens(o)    ? pl::Method::RtnImatrix
                                  : pl::Method::Rtn;
  po.fallback = o.fallback;
  po.quantize_embeddings = o.quantize_embeddings;
  po.quantize_output = o.quantize_output;
  po.skip = o.skip;
  po.sym = o.sym;
  pl::Plan plan;
  try {
    plan = pl::make_plan(*input, po, pl::coverage(*input, calibration.get(), o.imatrix.empty() ? nullptr : &imatrix));
  } catch (const qk::InvalidArgument& e) {
    throw UsageError(e.what());
  }

  // ---- run
  pl::QuantizeOptions qo;
  qo.gptq.damp = o.damp;
  qo.gptq.block_size = o.block_size;
  qo.gptq.act_order = o.act_order;
  qo.gptq.static_groups = o.static_groups;
  qo.awq_scales = o.awq_scales;
  qo.imatrix = o.imatrix.empty() ? nullptr : &imatrix;
  qo.save_calibration = o.calib_save;
  qo.save_options.overwrite = o.force;
  qo.save_options.inputs = {in_path, input->weights_path(), out_path};
  qo.threads = o.threads;

  qk::util::WriteOptions wo;
  wo.overwrite = o.force;
  wo.inputs = {in_path, input->weights_path()};
  if (!o.calib.empty()) wo.inputs.push_back(o.calib);
  if (!o.calib_tokens.empty()) wo.inputs.push_back(o.calib_tokens);
  if (!o.calib_text.empty()) wo.inputs.push_back(o.calib_text);
  if (!o.imatrix.empty()) wo.inputs.push_back(o.imatrix);
  qk::gptq_hf::QuantizeConfig cfg;
  cfg.desc_act = o.method == "gptq" && o.act_order;
  cfg.static_groups = o.static_groups;
  cfg.damp_percent = o.damp;
  auto sink = pl::make_sink(out_path, plan, *input, wo, cfg);

  uint64_t total = 0;
  for (const auto& t : input->tensors()) total += t.info.nbytes;
  Progress bar(static_cast<int64_t>(plan.tensors.size()), total, !o.quiet);
  const bool tty = !o.quiet && isatty(2);
  bool calibrating = false;
  const pl::ProgressFn progress = [&](const pl::ProgressEvent& e) {
    if (calibrating && e.stage != pl::ProgressEvent::Stage::Calibrating) {
      fmt::print(stderr, "\r\033[K");
      calibrating = false;
    }
    switch (e.stage) {
      case pl::ProgressEvent::Stage::Calibrating:
        if (tty) fmt::print(stderr, "\rcalibrating block {}/{} ", e.block + 1, e.blocks);
        calibrating = tty;
        break;
      case pl::ProgressEvent::Stage::Quantizing: bar.update(e.tensor, e.name, e.bytes_done); break;
      case pl::ProgressEvent::Stage::Committing: bar.update(e.tensors - 1, "writing", e.bytes_done, true); break;
    }
    return true;
  };
  const pl::Report report = pl::quantize_model(*input, plan, calibration.get(), *sink, qo, progress);
  bar.finish();

  uint64_t out_file = 0;
  for (const auto& f : sink->files()) out_file += fs::file_size(f, ec);
  if (container == pl::Container::GptqCheckpoint && lower(out_path.extension().string()) == ".safetensors")
    out_file = fs::file_size(out_path, ec);
  print_summary(o, target, plan, report, input->file().file_size(), out_file);
  return 0;
}

}  // namespace qtool
