#pragma once
// Output encodings of the model pipeline, as `qtool quantize --type` spells them, and the containers that hold them.
//  - ggml block types (q4_0, q4_k, q8_0, iq4_nl, ...): GGUF files;
//  - int2 / int3 / int4 / int8 with an optional group (int4-g128): Hugging Face GPTQ checkpoints;
//  - nf4: bitsandbytes' 4-bit layout in safetensors;
//  - f32 / f16 / bf16: plain conversions, any container.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "qk/formats/ggml.hpp"
#include "qk/io/tensor_file.hpp"

namespace qk::pipeline {

struct TargetType {
  enum class Kind { Ggml, Plain, Int, Nf4 };
  Kind kind = Kind::Ggml;
  ggml::Type ggml = ggml::Type::Q8_0;  // Kind::Ggml
  io::DType plain = io::DType::F16;    // Kind::Plain
  int bits = 4;                        // Kind::Int
  int64_t group = 0;                   // Kind::Int: 0 = one group per output channel
  std::string name;                    // canonical spelling: "q4_K", "f16", "int4-g128", "nf4"

  // Case-insensitive; nullopt for an unknown spelling (a ggml type that is not a weight type included).
  static std::optional<TargetType> parse(std::string_view spec);
  // Every accepted spelling, for messages.
  static std::string spellings();
};

enum class Container { Gguf, Safetensors, GptqCheckpoint };
const char* container_name(Container c);

// The container an output path asks for: ".gguf" -> GGUF, ".safetensors" -> safetensors (a GPTQ checkpoint when
// the type is an int type), no extension or an existing directory -> a GPTQ checkpoint directory. `format`
// ("gguf", "safetensors", "gptq", or empty for "by the path") overrides. InvalidArgument naming the path or format
// when neither tells.
Container container_for(const std::filesystem::path& out, const TargetType& type, std::string_view format = {});

// llama.cpp's general.file_type (enum llama_ftype, include/llama.h) for a model whose weights are mostly `t`.
uint32_t llama_file_type(const TargetType& t);

}  // namespace qk::pipeline
