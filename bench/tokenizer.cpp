// Tokenizer throughput: encoding the ~2 MB TinyStories training text (../shared/data/text, QK_REFERENCE_DATA) with
// stories260K's 512-piece vocabulary (byte fallback) and BabyLlama's 105 characters; decoding the ids back.
//   ./bench_tokenizer --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// Without the reference data the text is a paragraph repeated to the same size.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <benchmark/benchmark.h>

#include "qk/model/tokenizer.hpp"

namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// The training text as given (stories260K: with its newlines) or joined into one line (BabyLlama has no newline).
const std::string& text(bool joined) {
  static const std::string t[2] = {[] {
                                     const fs::path p = fs::path(QK_REFERENCE_DATA) / "text/tinystories-train.txt";
                                     std::string s = std::string(QK_REFERENCE_DATA).empty() ? "" : slurp(p);
                                     if (!s.empty()) return s;
                                     const std::string para =
                                         "Once upon a time, there was a little girl named Lily. She loved to play "
                                         "outside in the park with her dog, Max.\nOne day, they found a big red ball.\n";
                                     while (s.size() < 2'000'000) s += para;
                                     return s;
                                   }(),
                                   [] {
                                     const fs::path p = fs::path(QK_REFERENCE_DATA) / "text/tinystories-train.joined.txt";
                                     std::string s = std::string(QK_REFERENCE_DATA).empty() ? "" : slurp(p);
                                     if (!s.empty()) return s;
                                     const std::string para =
                                         "Once upon a time, there was a little girl named Lily. She loved to play "
                                         "outside in the park with her dog, Max. One day, they found a big red ball. ";
                                     while (s.size() < 2'000'000) s += para;
                                     return s;
                                   }()};
  return t[joined ? 1 : 0];
}

const qk::model::Tokenizer& vocab(bool tok105) {
  static const qk::model::Tokenizer t512 =
      qk::model::Tokenizer::from_llama2c(fs::path(QK_TEST_DATA) / "model/tok512.bin");
  static const qk::model::Tokenizer t105 =
      qk::model::Tokenizer::from_llama2c(fs::path(QK_TEST_DATA) / "model/tok105.bin");
  return tok105 ? t105 : t512;
}

void BM_Encode(benchmark::State& st) {
  const bool t105 = st.range(0) != 0;
  const std::string& s = text(t105);
  const auto& tok = vocab(t105);
  size_t n = 0;
  for (auto _ : st) {
    const auto ids = tok.encode(s);
    n = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  st.SetBytesProcessed(st.iterations() * static_cast<int64_t>(s.size()));
  st.counters["bytes"] = static_cast<double>(s.size());
  st.counters["tokens"] = static_cast<double>(n);
  st.SetLabel(t105 ? "tok105, joined text" : "tok512, text with newlines");
}
BENCHMARK(BM_Encode)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

void BM_Decode(benchmark::State& st) {
  const std::string& s = text(false);
  const auto& tok = vocab(false);
  const auto ids = tok.encode(s);
  for (auto _ : st) {
    const std::string back = tok.decode(ids);
    benchmark::DoNotOptimize(back.data());
  }
  st.SetBytesProcessed(st.iterations() * static_cast<int64_t>(s.size()));
  st.SetLabel("tok512");
}
BENCHMARK(BM_Decode)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
