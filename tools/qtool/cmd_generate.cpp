// `qtool generate MODEL -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P] [--seed S]`: text from a Llama GGUF
// (float or any ggml type), streamed to stdout token by token: the prompt as given, then the generated text.
// Greedy with --temp 0 (what llama.cpp's llama-simple prints, without its "<s>"). The library does the work
// (qk/model/generate.hpp, qk/model/tokenizer.hpp); this file parses and prints.
#include <cstdio>

#include "commands.hpp"
#include "qk/model/llama_model.hpp"
#include "sampling.hpp"

namespace qtool {

namespace {

int run_generate(const SamplingCliOptions& o) {
  const auto file = qk::io::TensorFile::open(o.model);
  const auto tok = qk::model::Tokenizer::from_gguf(*file);
  const auto model = qk::model::LlamaModel::load(*file);
  const auto prompt = encode_prompt(o, tok);
  print_now(o.prompt);
  qk::model::generate(model, prompt, generate_options(o, tok), [&](int32_t id) {
    print_now(tok.piece(id));
    return true;
  });
  std::fputc('\n', stdout);
  return 0;
}

}  // namespace

void setup_generate(CLI::App& app, Runner& run) {
  auto o = std::make_shared<SamplingCliOptions>();
  auto* sub = app.add_subcommand("generate", "Generate text from a Llama GGUF (float or quantized), streamed");
  add_prompt_options(sub, *o);
  add_sampler_options(sub, *o);
  sub->callback([&run, o] { run = [o] { return run_generate(*o); }; });
}

}  // namespace qtool
