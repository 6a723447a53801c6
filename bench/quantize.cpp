// Quantize + pack throughput of the core (RTN) on a 4096x4096 fp32 matrix, one thread.
// Counter GB/s = fp32 input bytes per second (10^9 bytes).
#include <benchmark/benchmark.h>

#include <random>

#include "qk/core/quantize.hpp"

namespace {

const qk::RowMatrixXf& weights() {
  static const qk::RowMatrixXf W = [] {
    qk::RowMatrixXf m(4096, 4096);
    std::mt19937 g(1);
    std::normal_distribution<float> d(0.0f, 0.02f);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = d(g);
    return m;
  }();
  return W;
}

void run(benchmark::State& state, const qk::QuantScheme& s) {
  const auto& W = weights();
  for (auto _ : state) {
    qk::QuantizedTensor q = qk::quantize(W, s);
    benchmark::DoNotOptimize(q.packed.data());
  }
  const double bytes = static_cast<double>(W.size()) * sizeof(float);
  state.counters["GB/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
  state.SetLabel(s.describe());
}

void BM_QuantizePack_Int4_G32_Sym(benchmark::State& st) { run(st, qk::QuantScheme::per_group(4, 32, true)); }
void BM_QuantizePack_Int4_G32_Asym(benchmark::State& st) { run(st, qk::QuantScheme::per_group(4, 32, false, false)); }
void BM_QuantizePack_Int4_G128_Sym(benchmark::State& st) { run(st, qk::QuantScheme::per_group(4, 128, true)); }
void BM_QuantizePack_Int4_G128_Asym(benchmark::State& st) { run(st, qk::QuantScheme::per_group(4, 128, false, false)); }
void BM_QuantizePack_Int8_PerChannel(benchmark::State& st) { run(st, qk::QuantScheme::per_channel(8, true)); }
void BM_QuantizePack_Int3_G64_Asym(benchmark::State& st) { run(st, qk::QuantScheme::per_group(3, 64, false, false)); }

}  // namespace

BENCHMARK(BM_QuantizePack_Int4_G32_Sym)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_QuantizePack_Int4_G32_Asym)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_QuantizePack_Int4_G128_Sym)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_QuantizePack_Int4_G128_Asym)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_QuantizePack_Int8_PerChannel)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_QuantizePack_Int3_G64_Asym)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
