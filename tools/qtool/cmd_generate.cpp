// `qtool generate MODEL -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P] [--seed S]`: text from a Llama GGUF
// (float or any ggml type), streamed to stdout token by token: the prompt as given, then the generated text.
// Greedy with --temp 0 (what llama.cpp's llama-simple prints, without its "<s>"). The library does the work
// (qk/model/generate.hpp, qk/model/tokenizer.hpp); this file parses and prints.
#include <cstdio>
#include <string>

#include "commands.hpp"
#include "qk/model/generate.hpp"
#include "qk/model/llama_model.hpp"
#include "qk/model/tokenizer.hpp"

namespace qtool {

namespace {

struct GenerateCliOptions {
  std::string model, prompt;
  int n = 64;
  float temp = 0.8f;
  int top_k = 40;
  float top_p = 0.95f;
  uint64_t seed = 1;
};

int run_generate(const GenerateCliOptions& o) {
  const auto file = qk::io::TensorFile::open(o.model);
  const auto tok = qk::model::Tokenizer::from_gguf(*file);
  const auto model = qk::model::LlamaModel::load(*file);
  qk::model::EncodeOptions e;
  e.source = "prompt";
  const auto prompt = tok.encode(o.prompt, e);
  qk::model::GenerateOptions g;
  g.max_tokens = o.n;
  g.temperature = o.temp;
  g.top_k = o.top_k;
  g.top_p = o.top_p;
  g.seed = o.seed;
  g.eos = tok.eos();
  g.source = o.model;
  std::fwrite(o.prompt.data(), 1, o.prompt.size(), stdout);
  std::fflush(stdout);
  qk::model::generate(model, prompt, g, [&](int32_t id) {
    const std::string piece = tok.piece(id);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::fputc('\n', stdout);
  return 0;
}

}  // namespace

void setup_generate(CLI::App& app, Runner& run) {
  auto o = std::make_shared<GenerateCliOptions>();
  auto* sub = app.add_subcommand("generate", "Generate text from a Llama GGUF (float or quantized), streamed");
  sub->add_option("model", o->model, "GGUF model with its vocabulary")->required()->check(CLI::ExistingFile);
  sub->add_option("-p,--prompt", o->prompt, "The text to continue (BOS is put first)")->required();
  sub->add_option("-n,--n-predict", o->n, "Tokens to generate at most (64); stops early at EOS or the model's context")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--temp", o->temp, "Temperature (0.8); 0 = greedy, as llama.cpp's greedy sampler")
      ->check(CLI::Range(0.0f, 100.0f));
  sub->add_option("--top-k", o->top_k, "Keep the K most likely tokens (40; 0 = all)")->check(CLI::NonNegativeNumber);
  sub->add_option("--top-p", o->top_p, "Keep the most likely tokens up to this probability mass (0.95; 1 = all)")
      ->check(CLI::Range(0.0f, 1.0f));
  sub->add_option("--seed", o->seed, "Seed of the sampler (1): same seed, same text");
  sub->callback([&run, o] { run = [o] { return run_generate(*o); }; });
}

}  // namespace qtool
