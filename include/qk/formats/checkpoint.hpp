#pragma once
// QuantizedCheckpoint: a model file seen as its LOGICAL float weights. Quantized checkpoints store one linear
// layer as several raw tensors; this view groups them back into one `<prefix>.weight` [out, in] tensor that is
// dequantized on request (one tensor at a time, with the checkpoint's own convention), and passes every other
// tensor through unchanged:
//  - Hugging Face GPTQ (gptq_hf.hpp): `<prefix>.qweight/.qzeros/.scales[/.g_idx]` become `<prefix>.weight`.
//    Bits, group size and zero-point convention come from quantize_config.json (or config.json's
//    "quantization_config") beside the weights; without one they are inferred from the shapes (v1 zeros).
//    g_idx (act-order included) decides each input column's group; without it columns go in order.
//  - bitsandbytes 4-bit (NF4/FP4, transformers' serialization; layout in docs/formats.md): `NAME` (packed codes,
//    high nibble first) with `NAME.absmax`, `.quant_map`, `[.nested_absmax, .nested_quant_map]` and
//    `.quant_state.bitsandbytes__<type>` becomes `NAME` with the shape from the quant state.
// Any other file (float safetensors, GGUF, .npy) is a checkpoint with only plain tensors.
// A malformed layer (missing part, wrong dtype or shape, bad config) is a FormatError naming the file and tensor.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qk/formats/gptq_hf.hpp"
#include "qk/io/tensor_file.hpp"

namespace qk::formats {

enum class Encoding { Plain, Gptq, Bnb4 };

struct LogicalTensor {
  // name, shape ([out, in] for quantized layers) and the dtype read_matrix() gives (F32 for quantized layers);
  // nbytes: stored bytes of all parts (codes, scales, zeros, group indices, constants); offset 0 if logical.
  io::TensorInfo info;
  Encoding encoding = Encoding::Plain;
  std::string type;                          // "F16", "Q4_K", "gptq-int4-g128", "gptq-int4" (per channel), "nf4"
  std::vector<const io::TensorInfo*> parts;  // the raw tensors (one for plain tensors)
  int bits = 0;                              // quantized: code bits
  int64_t group_size = 0;                    // GPTQ: group (-1 per channel); bnb: block size
  bool act_order = false;                    // GPTQ: g_idx is not k / group

  const std::string& name() const { return info.name; }
  bool quantized() const { return encoding != Encoding::Plain; }
  double bits_per_weight() const {
    const int64_t n = info.numel();
    return n > 0 ? 8.0 * static_cast<double>(info.nbytes) / static_cast<double>(n) : 0.0;
  }
};

class QuantizedCheckpoint {
 public:
  // `path`: a tensor file, or a directory holding model.safetensors (or exactly one .safetensors file).
  static std::unique_ptr<QuantizedCheckpoint> open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  const std::filesystem::path& weights_path() const { return file_->path(); }
  const io::TensorFile& file() const { return *file_; }
  // quantize_config.json (or config.json) in use, when the checkpoint has GPTQ layers and one was found.
  const std::optional<gptq_hf::QuantizeConfig>& gptq_config() const { return config_; }
  const std::filesystem::path& config_path() const { return config_path_; }
  bool quantized() const { return quantized_; }

  const std::vector<LogicalTensor>& tensors() const { return tensors_; }
  const LogicalTensor* find(std::string_view name) const;
  const LogicalTensor& tensor(std::string_view name) const;  // FormatError "file: no tensor 'name'"
  // The logical tensor of a TensorInfo from tensors()[i].info (by name).
  const LogicalTensor& of(const io::TensorInfo& t) const { return tensor(t.name); }

  // The tensor as float32 [rows, cols] (as TensorFile::read_matrix; quantized layers dequantized).
  io::RowMatrixXf read_matrix(const LogicalTensor& t) const;
  // A GPTQ layer's raw parts as gptq_hf::PackedLinear (validated), and its zero-point convention.
  gptq_hf::PackedLinear gptq_layer(const LogicalTensor& t) const;
  gptq_hf::ZeroFormat zero_format() const {
    return config_ ? config_->zero_format() : gptq_hf::ZeroFormat::V1;
  }

 private:
  std::filesystem::path path_, config_path_;
  std::unique_ptr<io::TensorFile> file_;
  std::optional<gptq_hf::QuantizeConfig> config_;
  std::vector<LogicalTensor> tensors_;
  bool quantized_ = false;
  struct Bnb {
    int64_t blocksize = 64, nested_blocksize = 256;
    float nested_offset = 0.0f;
    bool nested = false;
  };
  std::vector<Bnb> bnb_;  // per tensor index (used for Encoding::Bnb4)

  void build();
  const Bnb& bnb_of(const LogicalTensor& t) const;
};

}  // namespace qk::formats
