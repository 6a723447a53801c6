#pragma once
// Options of `qtool quantize`. Two modes share the subcommand:
//  - matrix mode (one weight matrix W in .npy/.safetensors, --bits/--group, methods issue's contract):
//      qtool quantize W.npy --method rtn|gptq|awq|smoothquant --bits N --group G [--sym|--asym]
//            [--act-order] [--static-groups] [--calib X.npy] [--alpha A] -o OUT [--dequantized OUT.npy]
//  - model mode (a whole model file, --type names the output encoding):
//      qtool quantize IN -o OUT --type q4_0|q4_k|q8_0|...|int4-g128|nf4 --method rtn|gptq|awq
//            [--calib ACTS | --calib-tokens IDS.i32 | --calib-text FILE | --calib-generate] [--calib-samples N] [--calib-ctx N]
//            [--calib-seed S] [--imatrix FILE] [--skip REGEX] [--threads N] [--quiet] [--force]
// Mode: --type given -> model mode; otherwise matrix mode.
#include <optional>
#include <string>
#include <vector>

namespace qtool {

struct QuantizeOptions {
  std::string input;
  std::string output;
  std::string method = "rtn";
  // matrix mode
  std::optional<int> bits;
  int group = 0;  // 0 = per-channel
  bool sym = true;
  bool act_order = false;
  bool static_groups = false;
  double alpha = 0.5;
  double damp = 0.01;
  int block_size = 128;
  std::string dequantized;
  // shared
  std::string calib;
  std::string tensor;  // tensor name inside a multi-tensor input (matrix mode)
  // model mode
  std::optional<std::string> type;
  // calibration from tokens (Llama GGUF models): the model's own forward pass gives each layer's inputs
  std::string calib_tokens;     // int32 token ids
  std::string calib_text;       // a text, tokenized with the model's vocabulary
  bool calib_generate = false;  // sample the calibration sequences from the input model
  int calib_samples = 128;      // sequences
  int calib_ctx = 128;          // tokens per sequence (at most the model's context length)
  uint64_t calib_seed = 1;      // --calib-generate
  std::string calib_save;       // write the calibration token ids used (int32) here
  bool awq_scales = false;      // AWQ from tokens: search input scales for q/k/v and gate/up, fold 1/s into the norms
  std::string imatrix;
  std::vector<std::string> skip;
  std::string fallback = "auto";  // auto: llama.cpp's 32-block demotion of K-quants, then f16
  bool quantize_embeddings = false;
  bool quantize_output = false;
  std::string output_format;  // gguf | safetensors | gptq; default from the output's extension
  int threads = 0;
  bool quiet = false;
  bool force = false;
  bool json = false;
};

int run_quantize_matrix(const QuantizeOptions& o);  // quantize_matrix.cpp
int run_quantize_model(const QuantizeOptions& o);   // quantize_model.cpp

}  // namespace qtool
