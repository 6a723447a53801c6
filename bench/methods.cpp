// Methods benchmarks on the P1 recipe of shared/data/problems (README there): a 4096x4096 "LLM-like" layer,
// W = N(0,1)·0.02 with 0.1% of the entries x10, X = N(0,1) (4096 tokens) with 1% of the input channels x30.
// Generated here (std::mt19937_64, so not numpy's exact numbers; the same distribution).
// The counter `ref_s` is the reference time recorded in shared/data/problems/reference.json on another machine
// instance (GPTQ 8.6 s, AWQ 223 s, SmoothQuant W8A8 1.2 s): context only, never a divisor. Ratios come from
// bench/compare-methods.sh, which times the reference in the same run. E_calib is the calibration error.
//
//   bench_methods --benchmark_filter=Gptq   (the P1 shape is set by QK_BENCH_DIM, default 4096)
// BM_GptqEndToEndP2 runs the P2 recipe (4096 x 11008 weight, 2048 silu tokens; reference GPTQ 38.2 s).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>
#include <random>

#include <benchmark/benchmark.h>

#include "qk/methods/awq.hpp"
#include "qk/methods/gptq.hpp"
#include "qk/methods/hessian.hpp"
#include "qk/linalg/dense.hpp"
#include "qk/methods/rtn.hpp"
#include "qk/methods/smoothquant.hpp"

namespace {

struct Layer {
  qk::RowMatrixXf W, X;
};

int64_t dim() {
  const char* e = std::getenv("QK_BENCH_DIM");
  return e && *e ? std::atoll(e) : 4096;
}

// The P1 recipe (silu = false) or P2's (X = silu(N(0,1)), 4096 x 11008 weight, 2048 tokens).
Layer make_layer(int64_t n, int64_t k, int64_t t, bool silu, uint64_t seed) {
  Layer l;
  std::mt19937_64 g(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  l.W.resize(n, k);
  for (int64_t i = 0; i < l.W.size(); ++i) l.W.data()[i] = 0.02f * nd(g);
  std::vector<int64_t> idx(static_cast<size_t>(n * k));
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(i);
  std::shuffle(idx.begin(), idx.end(), g);
  for (int64_t i = 0; i < n * k / 1000; ++i) l.W.data()[idx[static_cast<size_t>(i)]] *= 10.0f;
  std::vector<int64_t> ch(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) ch[static_cast<size_t>(i)] = i;
  std::shuffle(ch.begin(), ch.end(), g);
  l.X.resize(t, k);
  for (int64_t i = 0; i < l.X.size(); ++i) {
    const float z = nd(g);
    l.X.data()[i] = silu ? z / (1.0f + std::exp(-z)) : z;
  }
  for (int64_t i = 0; i < k / 100; ++i) l.X.col(ch[static_cast<size_t>(i)]) *= 30.0f;
  return l;
}

const Layer& layer() {
  static const Layer L = make_layer(dim(), dim(), dim(), false, 101);
  return L;
}

const Layer& layer_p2() {
  static const Layer L = make_layer(4096, 11008, 2048, true, 201);
  return L;
}

// E = ||X (W - Ŵ)ᵀ||² / ||X Wᵀ||² (outside the timed loops; on qk's GEMM, which is fast in every build).
double rel_error(const qk::RowMatrixXf& X, const qk::RowMatrixXf& W, const qk::RowMatrixXf& What) {
  const qk::RowMatrixXf Dw = W - What;
  Eigen::MatrixXf D(X.rows(), W.rows()), Y(X.rows(), W.rows());
  qk::linalg::gemm(D, X, Dw.transpose(), 1.0f, 0.0f, 0);
  qk::linalg::gemm(Y, X, W.transpose(), 1.0f, 0.0f, 0);
  return D.cast<double>().squaredNorm() / Y.cast<double>().squaredNorm();
}

const qk::QuantScheme kW4 = qk::QuantScheme::per_group(4, 128, false, false);

void BM_GptqHessian(benchmark::State& st) {
  const Layer& L = layer();
  const int threads = static_cast<int>(st.range(0));
  for (auto _ : st) {
    qk::HessianAccumulator acc(L.X.cols());
    acc.add(L.X, threads);
    benchmark::DoNotOptimize(acc.hessian().data());
  }
  st.counters["threads"] = threads;
  st.counters["GFLOP/s"] = benchmark::Counter(static_cast<double>(L.X.rows()) * L.X.cols() * L.X.cols(),
                                              benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  st.counters["ref_s"] = 0.9;
}

void BM_GptqQuantize(benchmark::State& st) {
  const Layer& L = layer();
  const int threads = static_cast<int>(st.range(0));
  qk::HessianAccumulator acc(L.X.cols());
  acc.add(L.X, threads);
  const Eigen::MatrixXf H = acc.hessian();
  qk::GptqResult r;
  for (auto _ : st) {
    qk::IntGrid grid(kW4);
    qk::GptqOptions o;
    o.threads = threads;
    r = qk::gptq(L.W, H, grid, o);
    benchmark::DoNotOptimize(r.dequantized.data());
  }
  st.counters["threads"] = threads;
  st.counters["E_calib"] = rel_error(L.X, L.W, r.dequantized);
}

// Hessian from the calibration tokens, then GPTQ 4-bit g128, timed together.
void gptq_end_to_end(benchmark::State& st, const Layer& L, double ref_s) {
  const int threads = static_cast<int>(st.range(0));
  qk::GptqResult r;
  for (auto _ : st) {
    qk::HessianAccumulator acc(L.X.cols());
    acc.add(L.X, threads);
    qk::IntGrid grid(kW4);
    qk::GptqOptions o;
    o.threads = threads;
    r = qk::gptq(L.W, acc, grid, o);
    benchmark::DoNotOptimize(r.dequantized.data());
  }
  st.counters["threads"] = threads;
  st.counters["E_calib"] = rel_error(L.X, L.W, r.dequantized);
  st.counters["ref_s"] = ref_s;
}

void BM_GptqEndToEnd(benchmark::State& st) { gptq_end_to_end(st, layer(), 8.6); }

// P2 (ffn_down shape): the reference takes 38.2 s with 2 threads.
void BM_GptqEndToEndP2(benchmark::State& st) { gptq_end_to_end(st, layer_p2(), 38.2); }

void BM_Awq(benchmark::State& st) {
  const Layer& L = layer();
  const int threads = static_cast<int>(st.range(0));
  qk::AwqResult r;
  for (auto _ : st) {
    qk::IntGrid grid(kW4);
    qk::AwqOptions o;
    o.threads = threads;
    r = qk::awq(L.W, L.X, grid, o);
    benchmark::DoNotOptimize(r.dequantized.data());
  }
  st.counters["threads"] = threads;
  st.counters["E_calib"] = rel_error(L.X, L.W, r.dequantized);
  st.counters["ref_s"] = 223;
}

void BM_SmoothQuantW8A8(benchmark::State& st) {
  const Layer& L = layer();
  const int threads = static_cast<int>(st.range(0));
  qk::W8A8Layer q;
  for (auto _ : st) {
    qk::SmoothQuantOptions o;
    o.threads = threads;
    q = qk::smoothquant(L.W, L.X, o);
    benchmark::DoNotOptimize(q.weight.packed.data());
  }
  st.counters["threads"] = threads;
  st.counters["ref_s"] = 1.2;
}

void BM_W8A8Forward(benchmark::State& st) {
  const Layer& L = layer();
  const int threads = static_cast<int>(st.range(0));
  const qk::W8A8Layer q = qk::smoothquant(L.W, L.X);
  double e = 0;
  for (auto _ : st) {
    const qk::RowMatrixXf Y = qk::w8a8_forward(L.X, q, threads);
    benchmark::DoNotOptimize(Y.data());
    st.PauseTiming();
    const Eigen::MatrixXf Y0 = L.X * L.W.transpose();
    e = (Y0 - Y).cast<double>().squaredNorm() / Y0.cast<double>().squaredNorm();
    st.ResumeTiming();
  }
  st.counters["threads"] = threads;
  st.counters["E_calib"] = e;
}

// Wall time (UseRealTime) is the figure; the CPU column is the whole process (all threads).
#define QK_BIG(b) \
  BENCHMARK(b)->Arg(1)->Arg(2)->Unit(benchmark::kSecond)->UseRealTime()->MeasureProcessCPUTime()->Iterations(1)

QK_BIG(BM_GptqHessian);
QK_BIG(BM_GptqQuantize);
QK_BIG(BM_GptqEndToEnd);
QK_BIG(BM_GptqEndToEndP2);
QK_BIG(BM_Awq);
QK_BIG(BM_SmoothQuantW8A8);
QK_BIG(BM_W8A8Forward);

}  // namespace

BENCHMARK_MAIN();
