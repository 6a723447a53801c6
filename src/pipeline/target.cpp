// Output encodings and containers (qk/pipeline/target.hpp).
#include "qk/pipeline/target.hpp"

#include <cctype>
#include <regex>

#include <fmt/format.h>

#include "qk/core/error.hpp"

namespace qk::pipeline {
namespace {

std::string lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

}  // namespace

std::optional<TargetType> TargetType::parse(std::string_view spec) {
  const std::string s = lower(spec);
  TargetType t;
  t.name = s;
  if (s == "f32" || s == "f16" || s == "bf16") {
    t.kind = Kind::Plain;
    t.plain = s == "f32" ? io::DType::F32 : s == "f16" ? io::DType::F16 : io::DType::BF16;
    return t;
  }
  if (s == "nf4") {
    t.kind = Kind::Nf4;
    return t;
  }
  static const std::regex int_re(R"(int([2348])(?:-g(\d{1,9}))?)");
  std::smatch m;
  if (std::regex_match(s, m, int_re)) {
    t.kind = Kind::Int;
    t.bits = std::stoi(m[1].str());
    t.group = m[2].matched ? std::stoll(m[2].str()) : 0;
    if (m[2].matched && t.group <= 0) return std::nullopt;
    return t;
  }
  if (auto g = ggml::type_from_name(s)) {
    if (!ggml::info(*g).storage) return std::nullopt;
    t.kind = Kind::Ggml;
    t.ggml = *g;
    t.name = std::string(ggml::info(*g).name);
    return t;
  }
  return std::nullopt;
}

std::string TargetType::spellings() {
  std::string s;
  for (const auto& i : ggml::types())
    if (i.storage) s += fmt::format("{}, ", lower(i.name));
  return s + "int2|int3|int4|int8[-gN] (GPTQ checkpoint), nf4 (safetensors, bitsandbytes layout), f16, bf16, f32";
}

const char* container_name(Container c) {
  switch (c) {
    case Container::Gguf: return "GGUF";
    case Container::Safetensors: return "safetensors";
    case Container::GptqCheckpoint: return "GPTQ checkpoint";
  }
  return "?";
}

Container container_for(const std::filesystem::path& out, const TargetType& type, std::string_view format) {
  std::string f = lower(format);
  if (f.empty()) {
    const std::string ext = lower(out.extension().string());
    std::error_code ec;
    if (ext == ".gguf") f = "gguf";
    else if (ext == ".safetensors") f = type.kind == TargetType::Kind::Int ? "gptq" : "safetensors";
    else if (ext.empty() || std::filesystem::is_directory(out, ec)) f = "gptq";
    else
      fail<InvalidArgument>("cannot tell the output format of '{}': use .gguf, .safetensors, a directory (GPTQ "
                            "checkpoint) or --format",
                            out.string());
  }
  if (f == "gguf") return Container::Gguf;
  if (f == "safetensors") return type.kind == TargetType::Kind::Int ? Container::GptqCheckpoint : Container::Safetensors;
  if (f == "gptq") return Container::GptqCheckpoint;
  fail<InvalidArgument>("--format '{}' is not gguf, safetensors or gptq", format);
}

uint32_t llama_file_type(const TargetType& t) {
  if (t.kind == TargetType::Kind::Plain) return t.plain == io::DType::F32 ? 0 : t.plain == io::DType::F16 ? 1 : 32;
  using T = ggml::Type;
  switch (t.ggml) {
    case T::Q4_0: return 2;
    case T::Q4_1: return 3;
    case T::Q8_0: return 7;
    case T::Q5_0: return 8;
    case T::Q5_1: return 9;
    case T::Q2_K: return 10;
    case T::Q3_K: return 11;  // Q3_K_S: Q3_K for all tensors
    case T::Q4_K: return 14;  // Q4_K_S
    case T::Q5_K: return 16;  // Q5_K_S
    case T::Q6_K: return 18;
    case T::IQ4_NL: return 25;
    default: return 0;
  }
}

}  // namespace qk::pipeline
