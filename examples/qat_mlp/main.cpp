// qat_mlp: post-training quantization against quantization-aware training on the handwritten digits.
//
//   qat_mlp [--json] [--seed N] [--threads N] [--data digits.npy]
//
// Trains a 64-128-10 MLP in float, then reports the test accuracy of PTQ (int8 dynamic and static with four
// calibrators, int4 and int2 weights) and of QAT (int4 and int2 weights, STE and LSQ). The default output is a
// table; --json prints one object {"fp32": 0.97..., ...} with every accuracy in [0, 1]. The same seed gives the
// same output on any thread count.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include <qk/core/error.hpp>
#include <qk/core/threads.hpp>

#include "experiment.hpp"

namespace {

int usage(const char* argv0, int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: %s [--json] [--seed N] [--threads N] [--data digits.npy]\n"
               "  Trains a 64-128-10 MLP on the handwritten digits and prints the test accuracy of PTQ and QAT.\n",
               argv0);
  return code;
}

bool parse_u64(const char* s, uint64_t& v) {
  char* end = nullptr;
  const unsigned long long x = std::strtoull(s, &end, 10);
  if (!end || *end || s[0] == '-' || s[0] == '\0') return false;
  v = x;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  qat_mlp::ExperimentOptions o;
  o.data = QAT_MLP_DATA;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    uint64_t v = 0;
    if (a == "--json") {
      json = true;
    } else if (a == "--help" || a == "-h") {
      return usage(argv[0], 0);
    } else if (a == "--seed") {
      const char* s = value();
      if (!s || !parse_u64(s, o.seed)) return usage(argv[0], 2);
    } else if (a == "--threads") {
      const char* s = value();
      if (!s || !parse_u64(s, v) || v > 4096) return usage(argv[0], 2);
      o.threads = static_cast<int>(v);
    } else if (a == "--data") {
      const char* s = value();
      if (!s) return usage(argv[0], 2);
      o.data = s;
    } else {
      std::fprintf(stderr, "%s: unknown option '%s'\n", argv[0], argv[i]);
      return usage(argv[0], 2);
    }
  }
  try {
    const auto t0 = std::chrono::steady_clock::now();
    const qat_mlp::Report r = qat_mlp::run_experiment(o);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (json) {
      std::string out = "{";
      for (size_t i = 0; i < r.rows.size(); ++i)
        out += fmt::format("{}\"{}\": {}", i ? ", " : "", r.rows[i].key, r.rows[i].accuracy);
      fmt::print("{}}}\n", out);
      return 0;
    }
    fmt::print("64-128-10 MLP on the handwritten digits: {} training / {} test images, seed {}, {} thread(s), {:.1f} s\n",
               r.train_size, r.test_size, o.seed, qk::resolve_threads(o.threads), secs);
    fmt::print("fp32: {} epochs of Adam (final training loss {:.4f}); QAT: {} epochs of SGD from the fp32 model\n\n",
               o.fp32.epochs, r.fp32_train_loss, o.qat.epochs);
    const double fp32 = r.accuracy("fp32");
    fmt::print("{:<28} {:<38} {:<48} {:>8} {:>8}\n", "key", "weights", "activations", "accuracy", "vs fp32");
    for (const auto& row : r.rows)
      fmt::print("{:<28} {:<38} {:<48} {:>7.2f}% {:>+7.2f}\n", row.key, row.weights, row.activations,
                 100.0 * row.accuracy, 100.0 * (row.accuracy - fp32));
    fmt::print("\nfingerprint of every model's test logits: {:016x}\n", r.fingerprint);
    return 0;
  } catch (const qk::Error& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    return 1;
  }
}
