// Calibration: histogram observe throughput (values/s), threshold searches on a 2048-bin histogram, codebooks.
//   ./bench_calib --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <random>
#include <vector>

#include <benchmark/benchmark.h>

#include "qk/calib/calib.hpp"
#include "qk/core/codebook.hpp"

namespace {

const std::vector<float>& gaussian_values() {
  static const std::vector<float> v = [] {
    std::mt19937_64 g(42);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> x(1 << 20);
    for (auto& e : x) e = d(g);
    return x;
  }();
  return v;
}

// Histogram::add on 1 Mi values per iteration (batches of 64 Ki), after a first batch that fixed the range.
void BM_HistogramObserve(benchmark::State& st) {
  const auto& x = gaussian_values();
  const auto mode = st.range(0) ? qk::calib::HistMode::Signed : qk::calib::HistMode::Abs;
  qk::calib::Histogram h(2048, mode);
  h.add(x.data(), static_cast<int64_t>(x.size()));
  const int64_t batch = 1 << 16;
  for (auto _ : st) {
    for (size_t at = 0; at < x.size(); at += batch) h.add(x.data() + at, batch);
    benchmark::DoNotOptimize(h.counts().data());
  }
  st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(x.size()));
  st.SetLabel(st.range(0) ? "signed" : "abs");
}
BENCHMARK(BM_HistogramObserve)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

// Any observer's observe() (histogram-based ones count every value; min-max keeps a histogram for predictions).
void BM_ObserverObserve(benchmark::State& st, const char* method) {
  const auto& x = gaussian_values();
  auto o = qk::calib::make_observer(method, qk::QuantScheme::per_tensor(8));
  for (auto _ : st) {
    o->observe(x.data(), static_cast<int64_t>(x.size()));
    benchmark::DoNotOptimize(o->count());
  }
  st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(x.size()));
}
BENCHMARK_CAPTURE(BM_ObserverObserve, minmax, "minmax")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_ObserverObserve, entropy, "entropy")->Unit(benchmark::kMillisecond);

qk::calib::Histogram filled(int64_t bins) {
  qk::calib::Histogram h(bins, qk::calib::HistMode::Abs);
  const auto& x = gaussian_values();
  h.add(x.data(), static_cast<int64_t>(x.size()));
  return h;
}

// The KL search of TensorRT / NVIDIA pytorch-quantization on B bins (B - 127 candidates, O(B²)).
void BM_EntropySearch(benchmark::State& st) {
  const auto h = filled(st.range(0));
  for (auto _ : st) benchmark::DoNotOptimize(qk::calib::entropy_threshold(h, 128).amax);
  st.counters["bins"] = static_cast<double>(st.range(0));
}
BENCHMARK(BM_EntropySearch)->Arg(2048)->Arg(4096)->Unit(benchmark::kMillisecond);

void BM_MseSearch(benchmark::State& st) {
  const auto h = filled(st.range(0));
  qk::QuantScheme s = qk::QuantScheme::per_tensor(8);
  for (auto _ : st) benchmark::DoNotOptimize(qk::calib::mse_threshold(h, s, false).hi);
  st.counters["bins"] = static_cast<double>(st.range(0));
}
BENCHMARK(BM_MseSearch)->Arg(2048)->Unit(benchmark::kMillisecond);

void BM_Percentile(benchmark::State& st) {
  const auto h = filled(2048);
  for (auto _ : st) benchmark::DoNotOptimize(qk::calib::histogram_quantile(h, 0.9999).value);
}
BENCHMARK(BM_Percentile)->Unit(benchmark::kMicrosecond);

void BM_LloydMax(benchmark::State& st) {
  const auto& x = gaussian_values();
  for (auto _ : st) benchmark::DoNotOptimize(qk::lloyd_max(x, static_cast<int>(st.range(0))).mse);
  st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(x.size()));
}
BENCHMARK(BM_LloydMax)->Arg(16)->Unit(benchmark::kMillisecond);

void BM_Nf4Quantize(benchmark::State& st) {
  const auto& x = gaussian_values();
  for (auto _ : st) benchmark::DoNotOptimize(qk::nf4_quantize(x).packed.data());
  st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(x.size()));
}
BENCHMARK(BM_Nf4Quantize)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
