// The ggml block products (qk/kernels/ggml_dot.hpp) on GGUF-layout Q4_0 and Q8_0 weights with Q8_0 activations,
// per kernel path: GEMV (M = 1, token generation) and M = 8 (a small batch), N = K = 4096.
//
// Names: [repacked_]ggml_<q4_0|q8_0>/<path>/M=<m>/N=<n>/K=<k>/<hot|cold>/t=<threads>. Counters: GFLOPs = 2*M*N*K per second
// (1e9), Wbytes_GBps = GGUF weight bytes (blocks: codes and fp16 scales) read per second (1e9). The activation
// quantization is not timed (the runtime quantizes a row once for several products); the unpacking of the
// activations inside ggml_gemm is.
// "cold" rotates through enough weight copies (>= 64 MiB in all, twice the L3 cache here) that every call reads
// its weights from DRAM; "hot" reuses one copy (4096 x 4096 Q8_0 is 17.8 MB, Q4_0 9.4 MB: L3-resident).
// Rates use the benchmark thread's CPU time for t=1 and wall-clock time for t=2. Paths the CPU lacks are not
// registered; --qk_scalar adds the scalar oracle (slow); --qk_n=<N> replaces N (e.g. 256: 1.1 MB of Q8_0 weights,
// L2-resident, which shows the kernels' compute ceiling).
#include <algorithm>
#include <cstring>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "qk/formats/ggml.hpp"
#include "qk/kernels/gemm.hpp"
#include "qk/kernels/ggml_dot.hpp"

namespace {

using namespace qk::kernels;
using qk::ggml::Type;

constexpr size_t kColdBytes = size_t{64} << 20;

struct Case {
  Type type;
  Isa isa;
  int64_t m, n, k;
  bool cold;
  int threads;
};

std::string name(const Case& c) {
  return fmt::format("ggml_{}/{}/M={}/N={}/K={}/{}/t={}", qk::ggml::info(c.type).name, isa_name(c.isa), c.m, c.n, c.k,
                     c.cold ? "cold" : "hot", c.threads);
}

void bm(benchmark::State& st, Case c) {
  std::mt19937_64 g(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> wf(static_cast<size_t>(c.n * c.k)), x(static_cast<size_t>(c.m * c.k));
  for (auto& v : wf) v = nd(g);
  for (auto& v : x) v = nd(g);
  const std::vector<uint8_t> w0 = qk::ggml::quantize(c.type, wf.data(), c.n, c.k);
  const size_t copies = c.cold ? std::max<size_t>(2, (kColdBytes + w0.size() - 1) / w0.size()) : 1;
  std::vector<std::vector<uint8_t>> w(copies, w0);
  std::vector<qk::ggml::BlockQ8_0> a(static_cast<size_t>(c.m * c.k / 32));
  quantize_rows_q8_0(x.data(), c.m, c.k, c.k, a.data());
  std::vector<float> y(static_cast<size_t>(c.m * c.n));
  const Exec ex{c.threads, c.isa};
  size_t i = 0;
  for (auto _ : st) {
    ggml_gemm(c.type, w[i].data(), c.n, c.k, a.data(), c.m, y.data(), c.n, ex);
    benchmark::DoNotOptimize(y.data());
    i = (i + 1) % copies;
  }
  st.counters["GFLOPs"] = benchmark::Counter(2e-9 * static_cast<double>(c.m * c.n * c.k),
                                             benchmark::Counter::kIsIterationInvariantRate);
  st.counters["Wbytes_GBps"] = benchmark::Counter(1e-9 * static_cast<double>(w0.size()),
                                                  benchmark::Counter::kIsIterationInvariantRate);
  st.SetLabel(ggml_kernel_name(c.type, c.isa));
}

// For comparison: the same Q4_0 product on qk's packed int4 layout (repack_q4_0 and acts_from_q8_0 of
// ggml_dot.hpp, then gemm_w4): what repacking at load buys the runtime. Wbytes counts the packed bytes (codes,
// fp16 scales and the zero-point bytes, 0.5625 + 1/32 bytes per weight against GGUF's 0.5625).
void bm_repacked(benchmark::State& st, Case c) {
  std::mt19937_64 g(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> wf(static_cast<size_t>(c.n * c.k)), x(static_cast<size_t>(c.m * c.k));
  for (auto& v : wf) v = nd(g);
  for (auto& v : x) v = nd(g);
  const std::vector<uint8_t> gguf = qk::ggml::quantize(Type::Q4_0, wf.data(), c.n, c.k);
  const PackedW4 w0 = repack_q4_0(gguf.data(), c.n, c.k);
  const size_t copies = c.cold ? std::max<size_t>(2, (kColdBytes + w0.weight_bytes() - 1) / w0.weight_bytes()) : 1;
  std::vector<PackedW4> w(copies, w0);
  std::vector<qk::ggml::BlockQ8_0> a8(static_cast<size_t>(c.m * c.k / 32));
  quantize_rows_q8_0(x.data(), c.m, c.k, c.k, a8.data());
  const QuantizedActs a = acts_from_q8_0(a8.data(), c.m, c.k);
  std::vector<float> y(static_cast<size_t>(c.m * c.n));
  const Exec ex{c.threads, c.isa};
  size_t i = 0;
  for (auto _ : st) {
    gemm_w4(a, w[i], nullptr, y.data(), c.n, ex);
    benchmark::DoNotOptimize(y.data());
    i = (i + 1) % copies;
  }
  st.counters["GFLOPs"] = benchmark::Counter(2e-9 * static_cast<double>(c.m * c.n * c.k),
                                             benchmark::Counter::kIsIterationInvariantRate);
  st.counters["Wbytes_GBps"] = benchmark::Counter(1e-9 * static_cast<double>(w0.weight_bytes()),
                                                  benchmark::Counter::kIsIterationInvariantRate);
  st.SetLabel(c.m == 1 ? kernel_names(c.isa).gemv_w4 : kernel_names(c.isa).gemm_w4);
}

void register_all(bool with_scalar, int64_t n) {
  std::vector<Isa> isas;
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512vnni})
    if (cpu_supports(isa) && (isa != Isa::scalar || with_scalar)) isas.push_back(isa);
  for (int t : {1, 2})
    for (bool cold : {false, true})
      for (Type type : {Type::Q4_0, Type::Q8_0})
        for (Isa isa : isas)
          for (int64_t m : {1, 8}) {
            const Case c{type, isa, m, n, 4096, cold, t};
            auto* b = benchmark::RegisterBenchmark(name(c).c_str(), [c](benchmark::State& st) { bm(st, c); })
                          ->Unit(benchmark::kMicrosecond)
                          ->MinTime(0.3);
            if (t > 1) b->UseRealTime();
            if (type == Type::Q4_0 && isa != Isa::scalar) {
              auto* r = benchmark::RegisterBenchmark(("repacked_" + name(c)).c_str(),
                                                     [c](benchmark::State& st) { bm_repacked(st, c); })
                            ->Unit(benchmark::kMicrosecond)
                            ->MinTime(0.3);
              if (t > 1) r->UseRealTime();
            }
          }
}

}  // namespace

int main(int argc, char** argv) {
  bool with_scalar = false;
  int64_t n_rows = 4096;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--qk_scalar") == 0) with_scalar = true;
    else if (std::strncmp(argv[i], "--qk_n=", 7) == 0) n_rows = std::max<int64_t>(1, std::atoll(argv[i] + 7));
    else args.push_back(argv[i]);
  }
  int argn = static_cast<int>(args.size());
  register_all(with_scalar, n_rows);
  benchmark::Initialize(&argn, args.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
