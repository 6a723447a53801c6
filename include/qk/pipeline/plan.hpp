#pragma once
// The Plan: for every tensor of a model, what the output file holds and how it gets there — the output type, the
// method, the fallback taken and the reason. It is data between "decide" and "do": make_plan() fills it with
// llama.cpp's rules (below), a user or a tool (mixed precision by measured sensitivity) may edit it, and it round-
// trips through JSON, so a plan can be made on one machine and carried out on another.
//
// make_plan follows llama.cpp's defaults (src/llama-quant.cpp, llama_tensor_get_type and llama_model_quantize_impl):
// only tensors named "*weight" of rank >= 2 are quantized; norms, 1-D tensors (kept in F32), routers and
// position/token-type embeddings stay; the output projection (or the token embedding when it doubles as the output)
// becomes Q6_K, or Q8_0 when its rows are not a multiple of 256 (Q8_0 targets keep Q8_0). qk departs from llama.cpp
// in one place: a separate token embedding is kept at Q8_0 unless quantize_embeddings (llama.cpp uses the target
// type). A row length a block type cannot hold falls back per tensor (`fallback`: "auto" is llama.cpp's 32-block
// alternative of a K-quant, then F16) instead of failing the run, and the plan records every fallback.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qk/formats/checkpoint.hpp"
#include "qk/formats/ggml.hpp"
#include "qk/io/tensor_file.hpp"
#include "qk/pipeline/target.hpp"

namespace qk::pipeline {

// How a quantized tensor gets its values.
enum class Method {
  None,        // not quantized (copied or converted)
  Rtn,         // round to nearest (ggml's reference encoder for block types)
  RtnImatrix,  // ggml's importance-weighted encoder, importance from an imatrix file or from calibration
  Gptq,        // GPTQ on the layer's inputs
  Awq,         // AWQ on the layer's inputs
};
const char* method_name(Method m);  // "-", "rtn", "rtn+imatrix", "gptq", "awq"
std::optional<Method> method_from_name(std::string_view name);

// What happens to one tensor.
enum class Action {
  Copy,     // the input bytes as they are (also a GGUF block tensor into a GGUF output)
  Convert,  // to a plain float type (`dtype`)
  Ggml,     // encoded as the ggml block type `block`
  Int,      // integer codes of `bits` in groups of `group` (GPTQ checkpoint layout)
  Nf4,      // bitsandbytes NF4
};
const char* action_name(Action a);

struct TensorPlan {
  std::string name;
  std::vector<int64_t> shape;  // row-major; rows x cols = product of all dims but the last x the last
  std::string in_type;         // "F32", "Q4_K", "gptq-int4-g128", ...
  Action action = Action::Copy;
  io::DType dtype = io::DType::F32;    // Copy of a plain tensor / Convert: the output element type
  ggml::Type block = ggml::Type::Q8_0; // Ggml
  int bits = 0;                        // Int
  int64_t group = 0;                   // Int: 0 = one group per output channel
  Method method = Method::None;
  bool fallback = false;               // the planned type did not fit the rows: this is the fallback
  std::string note;                    // why this type and method (empty for the plain default)
  std::string out_type;                // "q4_K", "F16", "int4-g32", "nf4" (derived; summaries print it)
  int ggml_type = -1;                  // GGUF type id of the output (GGUF containers)
  uint64_t bytes = 0;                  // encoded size (derived)

  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
  int64_t rows() const;
  bool quantized() const { return action == Action::Ggml || action == Action::Int || action == Action::Nf4; }
};

struct Plan {
  Container container = Container::Gguf;
  std::string type;       // the requested type ("q4_K", ...): general.file_type and summaries
  bool sym = true;        // Int: symmetric codes
  std::vector<TensorPlan> tensors;  // in the input's order, every tensor once

  const TensorPlan* find(std::string_view name) const;
  uint64_t bytes() const;  // total encoded size of the tensors

  // {"qk_plan": 1, "container": ..., "type": ..., "sym": ..., "tensors": [{"name", "shape", "in_type", "action",
  //  "out_type", "method", "fallback", "note", "bytes"}, ...]} — docs/api.md has the schema.
  std::string to_json() const;
  // The inverse; derived fields (ggml_type, bytes, dtype/block/bits/group from out_type) are recomputed and
  // checked. FormatError naming `what` (the file) and the tensor for anything malformed.
  static Plan from_json(std::string_view json, const std::string& what = "plan");
};

struct PlanOptions {
  TargetType type;                   // the default output type of quantized tensors
  Container container = Container::Gguf;
  Method method = Method::Rtn;       // for quantized tensors that calibration reaches (others: RTN, noted)
  std::string fallback = "auto";     // auto | f16 | bf16 | f32 | a ggml type
  bool quantize_embeddings = false;  // quantize a separate token embedding with `type` (default: Q8_0)
  bool quantize_output = false;      // quantize the output projection with `type` (default: Q6_K / Q8_0)
  std::vector<std::string> skip;     // ECMAScript regexes of tensor names kept as they are
  bool sym = true;                   // Int: symmetric codes
};

// Which quantized tensors calibration reaches (GPTQ/AWQ need their inputs), and whether an importance vector is at
// hand for a tensor (RTN then becomes rtn+imatrix for types whose encoder uses one). Either may be empty.
struct Coverage {
  std::function<bool(const std::string&)> calibrated;
  std::function<bool(const std::string&)> importance;
  std::string missing_reason = "no calibration activations";  // the note of tensors `calibrated` does not reach
};

// The plan for every tensor of `input` (logical tensors: GPTQ / NF4 layers count as one float weight each).
// InvalidArgument for options that contradict each other or the container (e.g. a ggml type into safetensors).
Plan make_plan(const formats::QuantizedCheckpoint& input, const PlanOptions& o, const Coverage& coverage = {});

// Checks a plan (from JSON, or edited) against the input and its container: every tensor of the input once, same
// shapes, actions the container can hold, block types that fit the rows. FormatError naming the tensor.
void check_plan(const Plan& plan, const formats::QuantizedCheckpoint& input);

// Fills the derived fields (out_type, ggml_type, bytes) of t from its action and parameters.
void finish(TensorPlan& t, Container c);

}  // namespace qk::pipeline
