// `qtool run MODEL -p PROMPT [-n N] [-t T] [--temp T] [--top-k K] [--top-p P] [--seed S] [--repack-q4_0]`: text from a Llama GGUF
// on qk's quantized runtime (qk/runtime/engine.hpp: Q4_0 / Q8_0 weights multiplied as stored, with int8
// activations), streamed to stdout as `qtool generate` streams it; a line on stderr says how many weights ran
// quantized and how fast the tokens came. This file parses and prints.
#include <chrono>
#include <cstdio>
#include <string>

#include <fmt/format.h>

#include "commands.hpp"
#include "qk/runtime/engine.hpp"
#include "sampling.hpp"

namespace qtool {

namespace {

struct RunCliOptions {
  SamplingCliOptions s;
  int threads = 0;
  bool quiet = false;
  bool repack = false;
};

int run_run(const RunCliOptions& o) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  qk::runtime::EngineOptions eo;
  eo.threads = o.threads;
  eo.repack_q4_0 = o.repack;
  const auto engine = qk::runtime::Engine::load(o.s.model, eo);
  const auto tok = qk::model::Tokenizer::from_gguf(engine.file());
  const auto prompt = encode_prompt(o.s, tok);
  print_now(o.s.prompt);
  const auto t1 = clock::now();
  auto first = t1;
  size_t count = 0;
  engine.generate(prompt, generate_options(o.s, tok), [&](int32_t id) {
    if (count++ == 0) first = clock::now();
    print_now(tok.piece(id));
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
  add_prompt_options(sub, o->s);
  sub->add_option("-t,--threads", o->threads, "Threads (0 = all; the text does not depend on it)")
      ->check(CLI::NonNegativeNumber);
  add_sampler_options(sub, o->s);
  sub->add_flag("--repack-q4_0", o->repack, "Repack Q4_0 weights at load for the int4 kernels (a copy in memory)");
  sub->add_flag("-q,--quiet", o->quiet, "No summary line on stderr");
  sub->callback([&run, o] { run = [o] { return run_run(*o); }; });
}

}  // namespace qtool
