#pragma once
// What `qtool generate` and `qtool run` share: the model and prompt, how many tokens, the sampler's options
// (qk/model/generate.hpp), and printing each token's text to stdout as it comes.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "qk/model/generate.hpp"
#include "qk/model/tokenizer.hpp"

namespace qtool {

struct SamplingCliOptions {
  std::string model, prompt;
  int n = 64;
  float temp = 0.8f;
  int top_k = 40;
  float top_p = 0.95f;
  uint64_t seed = 1;
};

// MODEL, -p, -n; then --temp, --top-k, --top-p, --seed (add_sampler_options), so a command can put its own options
// between the two.
inline void add_prompt_options(CLI::App* sub, SamplingCliOptions& o) {
  sub->add_option("model", o.model, "GGUF model with its vocabulary")->required()->check(CLI::ExistingFile);
  sub->add_option("-p,--prompt", o.prompt, "The text to continue (BOS is put first)")->required();
  sub->add_option("-n,--n-predict", o.n, "Tokens to generate at most (64); stops early at EOS or the model's context")
      ->check(CLI::NonNegativeNumber);
}
inline void add_sampler_options(CLI::App* sub, SamplingCliOptions& o) {
  sub->add_option("--temp", o.temp, "Temperature (0.8); 0 = greedy, as llama.cpp's greedy sampler")
      ->check(CLI::Range(0.0f, 100.0f));
  sub->add_option("--top-k", o.top_k, "Keep the K most likely tokens (40; 0 = all)")->check(CLI::NonNegativeNumber);
  sub->add_option("--top-p", o.top_p, "Keep the most likely tokens up to this probability mass (0.95; 1 = all)")
      ->check(CLI::Range(0.0f, 1.0f));
  sub->add_option("--seed", o.seed, "Seed of the sampler (1): same seed, same text");
}

// The prompt's ids under `tok` (errors name "prompt").
inline std::vector<int32_t> encode_prompt(const SamplingCliOptions& o, const qk::model::Tokenizer& tok) {
  qk::model::EncodeOptions e;
  e.source = "prompt";
  return tok.encode(o.prompt, e);
}

inline qk::model::GenerateOptions generate_options(const SamplingCliOptions& o, const qk::model::Tokenizer& tok) {
  qk::model::GenerateOptions g;
  g.max_tokens = o.n;
  g.temperature = o.temp;
  g.top_k = o.top_k;
  g.top_p = o.top_p;
  g.seed = o.seed;
  g.eos = tok.eos();
  g.source = o.model;
  return g;
}

// Writes text to stdout at once (the user sees each token as it is chosen).
inline void print_now(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

}  // namespace qtool
