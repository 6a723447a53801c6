// Quantized GEMM / GEMV throughput: qk's int8 (W8A8) and int4 weight-only kernels against Eigen's fp32 product
// and, when built with oneDNN (QK_HAVE_DNNL), oneDNN's int8 matmul with pre-packed s8 weights and u8 activations.
//
// Names: <family>/M=<m>/N=<n>/K=<k>/<hot|cold>/t=<threads>. Counters: GOPS = 2*M*N*K per second (1e9),
// Wbytes_GBps = bytes of packed weights (codes + scales) streamed per second (1e9), Gweights_s = N*K per second.
// Rates use the benchmark thread's CPU time for t=1 and wall-clock time for t>1 (see register_all).
// "cold" rotates through enough weight copies (>= 64 MiB in all, twice the L3 cache here) that every call reads
// its weights from DRAM; "hot" reuses one copy.
//
// By default only the 4096 x 4096 shapes run (a few minutes at most); --qk_all registers the full grid:
// M in {1, 16, 128, 512} x (N, K) in {(4096, 4096), (11008, 4096), (4096, 11008)} x hot/cold x 1/2 threads.
// Select with --benchmark_filter (docs/benchmarks.md lists the commands). After the runs, the program prints
// ours / oneDNN and ours / Eigen ratios for every shape measured on both sides.
#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <omp.h>

#include <Eigen/Core>

#include "qk/kernels/gemm.hpp"

#ifdef QK_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace {

using namespace qk::kernels;

constexpr size_t kColdBytes = size_t{64} << 20;

struct Shape {
  int64_t m, n, k;
  bool cold;
  int threads;
};

size_t copies_for(size_t bytes, bool cold) { return cold ? std::max<size_t>(2, (kColdBytes + bytes - 1) / bytes) : 1; }

void set_counters(benchmark::State& st, const Shape& s, double weight_bytes) {
  st.counters["GOPS"] = benchmark::Counter(2e-9 * static_cast<double>(s.m * s.n * s.k),
                                           benchmark::Counter::kIsIterationInvariantRate);
  st.counters["Wbytes_GBps"] = benchmark::Counter(1e-9 * weight_bytes, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["Gweights_s"] = benchmark::Counter(1e-9 * static_cast<double>(s.n * s.k),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

std::vector<int8_t> random_s8(int64_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_int_distribution<int> d(-128, 127);
  std::vector<int8_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<int8_t>(d(g));
  return v;
}
std::vector<uint8_t> random_u8(int64_t n, int hi, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_int_distribution<int> d(0, hi);
  std::vector<uint8_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<uint8_t>(d(g));
  return v;
}
std::vector<float> random_f32(int64_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(g);
  return v;
}

// ---------------------------------------------------------------- qk int8
void bm_s8_ours(benchmark::State& st, Shape s) {
  const auto w8 = random_s8(s.n * s.k, 1);
  const std::vector<float> ws(static_cast<size_t>(s.n), 0.01f);
  std::vector<PackedS8> w(1, pack_s8(w8.data(), s.n, s.k, s.k, ws.data()));
  w.resize(copies_for(w[0].weight_bytes(), s.cold), w[0]);
  const auto a = random_u8(s.m * s.k, 255, 2);
  std::vector<int32_t> c(static_cast<size_t>(s.m * s.n));
  const Exec ex{s.threads, {}};
  size_t i = 0;
  for (auto _ : st) {
    gemm_s8(a.data(), s.m, s.k, 128, w[i], c.data(), s.n, ex);
    benchmark::DoNotOptimize(c.data());
    i = (i + 1) % w.size();
  }
  set_counters(st, s, static_cast<double>(w[0].weight_bytes()));
  st.SetLabel(s.m == 1 ? active_kernel_names().gemv_s8 : active_kernel_names().gemm_s8);
}

// ---------------------------------------------------------------- qk int4
void bm_w4_ours(benchmark::State& st, Shape s, int64_t group, bool f32_acts) {
  const auto codes = random_u8(s.n * s.k, 15, 3);
  const auto sc = std::vector<float>(static_cast<size_t>(s.n * (s.k / group)), 0.01f);
  std::vector<PackedW4> w(1, pack_w4(codes.data(), s.n, s.k, s.k, group, sc.data()));
  w.resize(copies_for(w[0].weight_bytes(), s.cold), w[0]);
  const auto x = random_f32(s.m * s.k, 4);
  const QuantizedActs a = quantize_acts(x.data(), s.m, s.k, s.k, group, ActQuant::per_row);
  std::vector<float> y(static_cast<size_t>(s.m * s.n));
  const Exec ex{s.threads, {}};
  size_t i = 0;
  for (auto _ : st) {
    if (f32_acts) gemm_w4_f32(x.data(), s.m, s.k, w[i], nullptr, y.data(), s.n, ex);
    else gemm_w4(a, w[i], nullptr, y.data(), s.n, ex);
    benchmark::DoNotOptimize(y.data());
    i = (i + 1) % w.size();
  }
  set_counters(st, s, static_cast<double>(w[0].weight_bytes()));
  const KernelNames names = active_kernel_names();
  st.SetLabel(f32_acts ? names.gemm_w4_f32 : s.m == 1 ? names.gemv_w4 : names.gemm_w4);
}

// ---------------------------------------------------------------- Eigen fp32
void bm_eigen(benchmark::State& st, Shape s) {
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const size_t bytes = static_cast<size_t>(s.n * s.k) * sizeof(float);
  std::vector<RowMat> w(copies_for(bytes, s.cold), RowMat::Random(s.n, s.k));
  const RowMat x = RowMat::Random(s.m, s.k);
  RowMat y(s.m, s.n);
  Eigen::setNbThreads(s.threads);
  size_t i = 0;
  for (auto _ : st) {
    y.noalias() = x * w[i].transpose();
    benchmark::DoNotOptimize(y.data());
    i = (i + 1) % w.size();
  }
  set_counters(st, s, static_cast<double>(bytes));
  st.SetLabel("Eigen fp32");
}

#ifdef QK_HAVE_DNNL
// ---------------------------------------------------------------- oneDNN int8 matmul, packed weights
void bm_s8_onednn(benchmark::State& st, Shape s) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  omp_set_num_threads(s.threads);
  const dnnl::memory::desc a_md({s.m, s.k}, dt::u8, tag::ab);
  const dnnl::memory::desc w_any({s.k, s.n}, dt::s8, tag::any);
  const dnnl::memory::desc c_md({s.m, s.n}, dt::s32, tag::ab);
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, w_any, c_md), eng);
  const dnnl::matmul prim(pd);
  // Our [N, K] row-major weights are oneDNN's [K, N] in "ba" order; reorder once into the packed layout.
  auto w8 = random_s8(s.n * s.k, 1);
  dnnl::memory w_user({{s.k, s.n}, dt::s8, tag::ba}, eng, w8.data());
  const size_t bytes = pd.weights_desc().get_size();
  std::vector<dnnl::memory> w;
  for (size_t i = 0; i < copies_for(bytes, s.cold); ++i) {
    w.emplace_back(pd.weights_desc(), eng);
    dnnl::reorder(w_user, w.back()).execute(strm, w_user, w.back());
  }
  strm.wait();
  auto a8 = random_u8(s.m * s.k, 255, 2);
  dnnl::memory a(a_md, eng, a8.data());
  dnnl::memory c(c_md, eng);
  size_t i = 0;
  for (auto _ : st) {
    prim.execute(strm, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, w[i]}, {DNNL_ARG_DST, c}});
    strm.wait();
    i = (i + 1) % w.size();
  }
  set_counters(st, s, static_cast<double>(bytes));
  st.SetLabel(fmt::format("oneDNN {}", pd.impl_info_str()));
  omp_set_num_threads(omp_get_num_procs());
}
#endif

// ---------------------------------------------------------------- registration and the ratio table
std::string name(const std::string& family, const Shape& s) {
  return fmt::format("{}/M={}/N={}/K={}/{}/t={}", family, s.m, s.n, s.k, s.cold ? "cold" : "hot", s.threads);
}

void register_all(bool all) {
  std::vector<std::pair<int64_t, int64_t>> nk = {{4096, 4096}};
  if (all) nk = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
  const std::vector<int> threads = all ? std::vector<int>{1, 2} : std::vector<int>{1};
  for (int t : threads)
    for (bool cold : {false, true})
      for (auto [n, k] : nk)
        for (int64_t m : {1, 16, 128, 512}) {
          const Shape s{m, n, k, cold, t};
          auto reg = [&](const std::string& fam, auto fn) {
            auto* b = benchmark::RegisterBenchmark(name(fam, s).c_str(), fn)->Unit(benchmark::kMicrosecond)->MinTime(0.3);
            // One thread: rates from the thread's CPU time, which time slices of other processes on this
            // shared machine do not inflate. Several threads: wall-clock time (CPU time sees one thread only).
            if (t > 1) b->UseRealTime();
          };
          reg("s8_ours", [s](benchmark::State& st) { bm_s8_ours(st, s); });
#ifdef QK_HAVE_DNNL
          reg("s8_onednn", [s](benchmark::State& st) { bm_s8_onednn(st, s); });
#endif
          reg("w4g32_ours", [s](benchmark::State& st) { bm_w4_ours(st, s, 32, false); });
          reg("w4g128_ours", [s](benchmark::State& st) { bm_w4_ours(st, s, 128, false); });
          if (m <= 16) reg("w4g128f32_ours", [s](benchmark::State& st) { bm_w4_ours(st, s, 128, true); });
          reg("f32_eigen", [s](benchmark::State& st) { bm_eigen(st, s); });
        }
}

// Console output as usual, plus the GOPS of every run kept for the ratio table.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      auto it = r.counters.find("GOPS");
      if (it != r.counters.end() && r.run_type == Run::RT_Iteration) gops_[r.benchmark_name()] = it->second.value;
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    auto table = [&](const std::string& ours, const std::string& other) {
      bool header = false;
      for (const auto& [n, g] : gops_) {
        if (n.rfind(ours + "/", 0) != 0) continue;
        const std::string rest = n.substr(ours.size());
        auto it = gops_.find(other + rest);
        if (it == gops_.end() || it->second <= 0) continue;
        if (!header) fmt::print("\n{:<44} {:>10} {:>10} {:>7}\n", ours + " / " + other, "ours GOPS", "GOPS", "ratio");
        header = true;
        fmt::print("{:<44} {:>10.1f} {:>10.1f} {:>7.2f}\n", rest.substr(1), g, it->second, g / it->second);
      }
    };
    table("s8_ours", "s8_onednn");
    table("s8_ours", "f32_eigen");
    table("w4g32_ours", "f32_eigen");
  }

 private:
  std::map<std::string, double> gops_;
};

}  // namespace

int main(int argc, char** argv) {
  bool all = false;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--qk_all") == 0) all = true;
    else args.push_back(argv[i]);
  }
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  register_all(all);
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
