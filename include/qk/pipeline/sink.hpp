#pragma once
// Sinks: where the pipeline's encoded tensors go, one at a time in plan order, committed atomically at the end
// (nothing appears at the output path before commit(); a failure leaves nothing behind).
//  - GgufSink: a GGUF file (metadata of a GGUF input kept, general.file_type set);
//  - SafetensorsSink: a safetensors file (plain tensors and bitsandbytes NF4 layers);
//  - GptqCheckpointSink: a Hugging Face GPTQ checkpoint, a directory (model.safetensors + quantize_config.json) or a
//    .safetensors file with quantize_config.json beside it.
#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "qk/core/codebook.hpp"
#include "qk/core/quantize.hpp"
#include "qk/formats/checkpoint.hpp"
#include "qk/formats/gptq_hf.hpp"
#include "qk/pipeline/plan.hpp"
#include "qk/util/atomic_file.hpp"

namespace qk::pipeline {

// One tensor's output, as the pipeline hands it to a sink: bytes (Copy, Convert, Ggml), integer codes (Int) or
// NF4 codes (Nf4), matching the tensor's plan. `bytes` views either `owned` or the input's mapping (a copy).
struct EncodedTensor {
  std::span<const std::byte> bytes;
  std::vector<std::byte> owned;
  std::optional<QuantizedTensor> ints;
  std::optional<Nf4Tensor> nf4;

  EncodedTensor() = default;
  EncodedTensor(EncodedTensor&&) = default;  // moving keeps `bytes` valid (a vector's buffer moves with it)
  EncodedTensor& operator=(EncodedTensor&&) = default;
  EncodedTensor(const EncodedTensor&) = delete;
  EncodedTensor& operator=(const EncodedTensor&) = delete;

  static EncodedTensor of(std::vector<std::byte> b) {
    EncodedTensor e;
    e.owned = std::move(b);
    e.bytes = e.owned;
    return e;
  }
};

class Sink {
 public:
  virtual ~Sink() = default;
  // Declares every tensor of the plan (called once, before the first write).
  virtual void begin(const Plan& plan) = 0;
  // The next tensor, in plan order. InvalidArgument when the container cannot hold it.
  virtual void write(const TensorPlan& t, EncodedTensor&& e) = 0;
  // Makes the output appear at its path (renames); only after every tensor was written.
  virtual void commit() = 0;
  // The output's files, once committed (one for files, several for a checkpoint directory).
  virtual std::vector<std::filesystem::path> files() const = 0;
};

// The sink for `plan.container` at `out`. `input` supplies the metadata to carry over (GGUF metadata of a GGUF
// input, string metadata of a safetensors input). `gptq` (GPTQ checkpoints) describes how the weights were made for
// quantize_config.json (bits, group, sym and the method's options; sym and bits are taken from the plan's first int
// tensor when they differ). opts: overwrite and the inputs the output must never replace.
std::unique_ptr<Sink> make_sink(const std::filesystem::path& out, const Plan& plan,
                                const formats::QuantizedCheckpoint& input, const util::WriteOptions& opts,
                                const gptq_hf::QuantizeConfig& gptq = {});

}  // namespace qk::pipeline
