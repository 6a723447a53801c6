// The f32 GEMM of qk/kernels/sgemm.hpp against Eigen's product on the shapes GPTQ and AWQ spend their time in:
// square 1024..4096 products, the lazy-batch update (4096 rows x 3968 columns x depth 128) and the Hessian's
// symmetric rank-k update XᵀX (ssyrk_lower, 4096² from 4096 tokens). GFLOP/s counts 2·m·n·k.
//
//   bench_sgemm --benchmark_filter='square/4096'
#include <cstdint>
#include <random>

#include <benchmark/benchmark.h>

#include <Eigen/Core>

#include "qk/linalg/sgemm.hpp"

namespace {

Eigen::MatrixXf random(int64_t r, int64_t c, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  Eigen::MatrixXf m(r, c);
  for (int64_t i = 0; i < m.size(); ++i) m.data()[i] = d(g);
  return m;
}

void counters(benchmark::State& st, int64_t m, int64_t n, int64_t k, int threads) {
  st.counters["threads"] = threads;
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(m) * double(n) * double(k),
                                              benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

// C -= A B with A m x k, B k x n, all column-major (the GPTQ update's form).
void BM_qk(benchmark::State& st, int64_t m, int64_t n, int64_t k) {
  const int threads = static_cast<int>(st.range(0));
  const Eigen::MatrixXf A = random(m, k, 1), B = random(k, n, 2);
  Eigen::MatrixXf C = random(m, n, 3);
  for (auto _ : st) {
    qk::linalg::sgemm(m, n, k, -1.0f, {A.data(), 1, A.outerStride()}, {B.data(), 1, B.outerStride()}, 1.0f,
                       {C.data(), 1, C.outerStride()}, threads);
    benchmark::DoNotOptimize(C.data());
  }
  counters(st, m, n, k, threads);
}

void BM_eigen(benchmark::State& st, int64_t m, int64_t n, int64_t k) {
  const int threads = static_cast<int>(st.range(0));
  Eigen::setNbThreads(threads);
  const Eigen::MatrixXf A = random(m, k, 1), B = random(k, n, 2);
  Eigen::MatrixXf C = random(m, n, 3);
  for (auto _ : st) {
    C.noalias() -= A * B;
    benchmark::DoNotOptimize(C.data());
  }
  counters(st, m, n, k, threads);
}

// The Hessian: S (lower triangle, 4096 x 4096) += Xᵀ X over 4096 tokens, X row-major; GFLOP/s counts the
// triangle's multiply-adds (n²·k, half of the full product).
void BM_qk_syrk(benchmark::State& st) {
  const int threads = static_cast<int>(st.range(0));
  const int64_t t = 4096, n = 4096;
  const Eigen::MatrixXf Xc = random(n, t, 4);  // Xᵀ stored column-major = X row-major (t x n)
  Eigen::MatrixXf S = Eigen::MatrixXf::Constant(n, n, 0.5f);
  for (auto _ : st) {
    qk::linalg::ssyrk_lower(n, t, 1.0f, {Xc.data(), 1, n}, 1.0f, {S.data(), 1, n}, threads);
    benchmark::DoNotOptimize(S.data());
  }
  st.counters["threads"] = threads;
  st.counters["GFLOP/s"] = benchmark::Counter(double(n) * double(n) * double(t),
                                              benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

}  // namespace

BENCHMARK_CAPTURE(BM_qk, square/1024, 1024, 1024, 1024)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_eigen, square/1024, 1024, 1024, 1024)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_qk, square/4096, 4096, 4096, 4096)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_eigen, square/4096, 4096, 4096, 4096)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_qk, gptq_update/4096x3968x128, 4096, 3968, 128)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_eigen, gptq_update/4096x3968x128, 4096, 3968, 128)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_qk_syrk)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
