// `qtool run MODEL -p PROMPT [-n N] [-t T] [--temp T] [--top-k K] [--top-p P] [--seed S] [--repack-q4_0]`: text from a Llama GGUF
// on qk's quantized runtime (qk/runtime/engine.hpp: Q4_0 / Q8_0 weights multiplied as stored, with int8
// activations), streamed to stdout as `qtool generate` streams it; a line on stderr says how many weights ran
// quantized and how fast the tokens came. This file parses and prints.
#include <chrono>
#include <cstdio>
#include <string>

#include <fmt/format.h>

#include "commands.hpp"
#include "qk/model/tokenizer.hpp"
#include "qk/runtime/engine.hpp"

namespace qtool {

namespace {

struct RunCliOptions {
  std::string model, prompt;
  int n = 64;
  int threads = 0;
  float temp = 0.8f;
  int top_k = 40;
  float top_p = 0.95f;
  uint64_t seed = 1;
  bool quiet = false;
  bool repack = false;
};

int run_run(const RunCliOptions& o) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  qk::runtime::EngineOptions eo;
  eo.threads = o.threads;
  eo.repack_q4_0 = o.repack;
  const auto engine = qk::runtime::Engine::load(o.model, eo);
  const auto tok = qk::model::Tokenizer::from_gguf(engine.file());
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
  const auto t1 = clock::now();
  auto first = t1;
  size_t count = 0;
  engine.generate(prompt, g, [&](int32_t id) {
    if (count++ == 0) first = clock::now();
    const std::string piece = tok.piece(id);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  const auto t2 = clock::now();
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (!o.quiet) {
    const auto secs = [](auto d) { return std::chrono::duration<double>(d).count(); };
    const double gen = secs(t2 - first);
    fmt::print(stderr, "run: {} weights quantized (Q4_0/Q8_0), {} dequantized; load {:.3f} s, prompt {} tokens {:.3f} s, {} tokens {:.1f} tok/s\n",
               engine.quantized_weights(), engine.float_weights(), secs(t1 - t0), prompt.size(), secs(first - t1),
               count, count > 1 && gen > 0 ? static_cast<double>(count - 1) / gen : 0.0);
  }
  return 0;
}

}  // namespace

void setup_run(CLI::App& app, Runner& run) {
  auto o = std::make_shared<RunCliOptions>();
  auto* sub = app.add_subcommand("run", "Generate text from a Llama GGUF on qk's quantized runtime, streamed");
  sub->add_option("model", o->model, "GGUF model with its vocabulary")->required()->check(CLI::ExistingFile);
  sub->add_option("-p,--prompt", o->prompt, "The text to continue (BOS is put first)")->required();
  sub->add_option("-n,--n-predict", o->n, "Tokens to generate at most (64); stops early at EOS or the model's context")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("-t,--threads", o->threads, "Threads (0 = all; the text does not depend on it)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--temp", o->temp, "Temperature (0.8); 0 = greedy, as llama.cpp's greedy sampler")
      ->check(CLI::Range(0.0f, 100.0f));
  sub->add_option("--top-k", o->top_k, "Keep the K most likely tokens (40; 0 = all)")->check(CLI::NonNegativeNumber);
  sub->add_option("--top-p", o->top_p, "Keep the most likely tokens up to this probability mass (0.95; 1 = all)")
      ->check(CLI::Range(0.0f, 1.0f));
  sub->add_option("--seed", o->seed, "Seed of the sampler (1): same seed, same text");
  sub->add_flag("--repack-q4_0", o->repack, "Repack Q4_0 weights at load for the int4 kernels (a copy in memory)");
  sub->add_flag("-q,--quiet", o->quiet, "No summary line on stderr");
  sub->callback([&run, o] { run = [o] { return run_run(*o); }; });
}

}  // namespace qtool
