#pragma once
// quantize_model: carries out a Plan on a model — calibrate (streaming, block by block), quantize each tensor with
// its method, hand it to a sink — and reports what it did. What qtool quantize does in model mode, as library API:
//
//   auto input = qk::formats::QuantizedCheckpoint::open("model.gguf");
//   qk::pipeline::PlanOptions po;
//   po.type = *qk::pipeline::TargetType::parse("q4_k");
//   po.method = qk::pipeline::Method::Gptq;
//   qk::pipeline::GeneratedTokens calibration({.samples = 128, .length = 128});
//   const auto plan = qk::pipeline::make_plan(*input, po, qk::pipeline::coverage(*input, &calibration));
//   auto sink = qk::pipeline::make_sink("model-q4_k.gguf", plan, *input, {});
//   const auto report = qk::pipeline::quantize_model(*input, plan, &calibration, *sink);
//
// Memory: the input is memory-mapped and read tensor by tensor (row chunk by row chunk where the encoding allows),
// each finished chunk's pages given back; tensors calibration does not reach are encoded when the sink needs them.
// With a token source the model runs block by block: one block's float weights, the calibration sequences' hidden
// states, and one group's statistics (a Hessian, or the inputs for AWQ) are held at a time, and each block's
// encoded tensors until the sink takes them. Peak memory is measured in docs/benchmarks.md.
//
// Determinism: the same input, plan and options give the same bytes on any thread count (statistics are summed
// over a fixed partition of the sequences, in a fixed order).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "qk/formats/checkpoint.hpp"
#include "qk/methods/gptq.hpp"
#include "qk/pipeline/calibration.hpp"
#include "qk/pipeline/plan.hpp"
#include "qk/pipeline/sink.hpp"

namespace qk::pipeline {

struct QuantizeOptions {
  GptqOptions gptq;            // damp, block_size, act_order, static_groups (threads: below)
  bool awq_scales = false;     // AWQ with a token source: also search input scales (scored on the block's output)
                               // for groups read from a norm, and fold 1/s into that norm
  // Importance vectors (qk::io::read_imatrix) for RTN with importance (Method::RtnImatrix) without calibration.
  const std::map<std::string, std::vector<float>>* imatrix = nullptr;
  // Also write the calibration token ids used (int32) here, committed only after the output is.
  std::filesystem::path save_calibration;
  util::WriteOptions save_options;  // for save_calibration
  int threads = 0;             // 0 = qk::resolve_threads default
};

// Where the run is, for a progress display. Returning false from the callback cancels the run (qk::Cancelled is
// thrown, the output is not committed).
struct ProgressEvent {
  enum class Stage { Calibrating, Quantizing, Committing } stage = Stage::Quantizing;
  int64_t tensor = 0, tensors = 0;           // index in the plan, count
  std::string name;                          // the tensor being written
  uint64_t bytes_done = 0, bytes_total = 0;  // input bytes processed
  int block = 0, blocks = 0;                 // Calibrating: block being calibrated
};
using ProgressFn = std::function<bool(const ProgressEvent&)>;

struct TensorReport {
  std::string name;
  std::string out_type;
  uint64_t bytes = 0;
  Method method = Method::None;
  bool fallback = false;
  std::string note;
  double weight_error = -1;  // ||W - Ŵ||² / ||W||² of quantized tensors (-1 where not quantized)
};

struct Report {
  std::vector<TensorReport> tensors;  // plan order
  uint64_t input_bytes = 0;           // bytes of the tensors read
  uint64_t output_bytes = 0;          // bytes of the tensors written
  int64_t quantized_weights = 0;      // elements of quantized tensors
  uint64_t quantized_bytes = 0;       // their encoded bytes
  std::string calibration;            // what the calibration data was ("" without)
  int awq_scaled_weights = 0;         // weights whose AWQ input scales were folded into a norm
  int awq_folded_norms = 0;
  double seconds = 0;
  int fallbacks() const;
  double bits_per_weight() const;     // of the quantized tensors
};

// Which tensors `calibration` reaches in `input` (a model qk can run for a token source, the named tensors of an
// activation file), and which have an importance vector in `imatrix`: what make_plan needs to pick each tensor's
// method.
Coverage coverage(const formats::QuantizedCheckpoint& input, const CalibrationSource* calibration,
                  const std::map<std::string, std::vector<float>>* imatrix = nullptr);

// Runs the plan. `calibration` is needed when the plan has GPTQ/AWQ tensors, or rtn+imatrix tensors without
// options.imatrix. Throws FormatError / NumericError / ShapeError naming the file and tensor, IoError from the sink,
// Cancelled when progress returns false; the sink is then not committed.
Report quantize_model(const formats::QuantizedCheckpoint& input, const Plan& plan, CalibrationSource* calibration,
                      Sink& sink, const QuantizeOptions& options = {}, const ProgressFn& progress = {});

}  // namespace qk::pipeline
