// ggml block encoders (qk/formats/ggml.hpp) on a 4096x4096 fp32 matrix (0.02 * N(0,1), the scale of LLM
// weights), 1 and 2 threads; plus the importance-weighted path and the decoder for a few types.
// Counters: GB/s = fp32 input bytes per second (10^9 bytes); rows/s = 4096-element rows per second.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "qk/formats/ggml.hpp"

namespace {

constexpr int64_t kRows = 4096, kCols = 4096;

const std::vector<float>& weights() {
  static const std::vector<float> W = [] {
    std::vector<float> m(static_cast<size_t>(kRows * kCols));
    std::mt19937 g(1);
    std::normal_distribution<float> d(0.0f, 0.02f);
    for (float& v : m) v = d(g);
    return m;
  }();
  return W;
}

const std::vector<float>& importance() {
  static const std::vector<float> im = [] {
    std::vector<float> v(static_cast<size_t>(kCols));
    std::mt19937 g(2);
    std::gamma_distribution<float> d(1.0f, 1.0f);
    for (float& x : v) x = d(g);
    return v;
  }();
  return im;
}

void counters(benchmark::State& state) {
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(kRows * kCols) * sizeof(float),
                                              benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
  state.counters["rows/s"] = benchmark::Counter(static_cast<double>(kRows),
                                                benchmark::Counter::kIsIterationInvariantRate,
                                                benchmark::Counter::kIs1000);
}

void encode(benchmark::State& state, qk::ggml::Type t, bool weighted) {
  const auto& W = weights();
  const int threads = static_cast<int>(state.range(0));
  std::vector<uint8_t> out(static_cast<size_t>(kRows * qk::ggml::row_size(t, kCols)));
  for (auto _ : state) {
    qk::ggml::quantize_rows(t, W.data(), kRows, kCols, out.data(), weighted ? importance().data() : nullptr,
                            threads);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  counters(state);
  state.SetLabel(std::string(qk::ggml::info(t).name) + (weighted ? " imatrix" : ""));
}

void decode(benchmark::State& state, qk::ggml::Type t) {
  const auto& W = weights();
  const int threads = static_cast<int>(state.range(0));
  const auto q = qk::ggml::quantize(t, W.data(), kRows, kCols, nullptr, 0);
  std::vector<float> y(W.size());
  for (auto _ : state) {
    qk::ggml::dequantize_rows(t, q.data(), kRows, kCols, y.data(), threads);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  counters(state);  // fp32 output bytes
  state.SetLabel(std::string(qk::ggml::info(t).name) + " decode");
}

using qk::ggml::Type;
void BM_GgmlEncode_Q8_0(benchmark::State& s) { encode(s, Type::Q8_0, false); }
void BM_GgmlEncode_Q4_0(benchmark::State& s) { encode(s, Type::Q4_0, false); }
void BM_GgmlEncode_Q4_K(benchmark::State& s) { encode(s, Type::Q4_K, false); }
void BM_GgmlEncode_Q6_K(benchmark::State& s) { encode(s, Type::Q6_K, false); }
void BM_GgmlEncode_Q4_K_Imatrix(benchmark::State& s) { encode(s, Type::Q4_K, true); }
void BM_GgmlDecode_Q4_0(benchmark::State& s) { decode(s, Type::Q4_0); }
void BM_GgmlDecode_Q4_K(benchmark::State& s) { decode(s, Type::Q4_K); }

}  // namespace

BENCHMARK(BM_GgmlEncode_Q8_0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GgmlEncode_Q4_0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GgmlEncode_Q4_K)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GgmlEncode_Q6_K)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GgmlEncode_Q4_K_Imatrix)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GgmlDecode_Q4_0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GgmlDecode_Q4_K)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
