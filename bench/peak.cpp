// The machine's own limits, against which the kernels in bench_gemm are judged (docs/benchmarks.md):
//
//   vpdpbusd/<zmm|ymm>/acc=<A>/t=<T>   A independent accumulator chains of vpdpbusd held in registers, no memory
//                                      operand; GOPS counts 2 ops per u8*s8 multiply-add (128 per zmm instruction).
//                                      acc=1 exposes the latency, enough chains the throughput peak.
//   vpdpbusd_bcst/zmm/acc=<A>/t=<T>    the same with the 4-byte operand broadcast from memory ({1to16}), the form
//                                      the GEMM microkernel issues.
//   dram_read/pf=<D>/t=<T>             streaming read of a 512 MiB buffer (16x the L3 cache) with zmm loads;
//                                      pf = software prefetch distance in bytes ahead of the loads (0: none).
//                                      GBps = 10^9 bytes read per second, all threads together.
//   l3_read/t=<T>                      the same over 16 MiB (half the L3), repeated.
//
// Several threads (OpenMP, one team per iteration) time wall clock; one thread times the thread's CPU time.
// Only meaningful on an idle machine. Needs AVX-512 VNNI for the vpdpbusd runs (skipped otherwise).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <omp.h>

#include "qk/kernels/isa.hpp"

namespace {

constexpr int64_t kIters = 1 << 16;  // loop trips per thread and call

// One loop trip issues R instructions over A accumulators (R a multiple of A): acc[i % A] += u8 . s8.
// Written in asm so the compiler cannot drop, merge or spill anything; registers zmm0..zmm(A-1) are the
// accumulators, zmm30 / zmm31 the operands.
#define QK_DP_Z(i) "vpdpbusd %%zmm31, %%zmm30, %%zmm" #i "\n\t"
#define QK_DP_Y(i) "vpdpbusd %%ymm31, %%ymm30, %%ymm" #i "\n\t"
#define QK_DP_B(i) "vpdpbusd (%[p])%{1to16%}, %%zmm30, %%zmm" #i "\n\t"

#define QK_CHAINS_1(M) M(0) M(0) M(0) M(0) M(0) M(0) M(0) M(0) M(0) M(0) M(0) M(0) M(0) M(0) M(0) M(0) M(0) M(0) M(0) M(0) M(0) M(0) M(0) M(0)
#define QK_CHAINS_2(M) M(0) M(1) M(0) M(1) M(0) M(1) M(0) M(1) M(0) M(1) M(0) M(1) M(0) M(1) M(0) M(1) M(0) M(1) M(0) M(1) M(0) M(1) M(0) M(1)
#define QK_CHAINS_4(M) M(0) M(1) M(2) M(3) M(0) M(1) M(2) M(3) M(0) M(1) M(2) M(3) M(0) M(1) M(2) M(3) M(0) M(1) M(2) M(3) M(0) M(1) M(2) M(3)
#define QK_CHAINS_6(M) M(0) M(1) M(2) M(3) M(4) M(5) M(0) M(1) M(2) M(3) M(4) M(5) M(0) M(1) M(2) M(3) M(4) M(5) M(0) M(1) M(2) M(3) M(4) M(5)
#define QK_CHAINS_8(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)
#define QK_CHAINS_12(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)
#define QK_CHAINS_24(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23)
constexpr int kPerTrip = 24;  // instructions per loop trip in every variant above

enum class Form { zmm, ymm, bcst };

#define QK_DP_CLOBBERS                                                                                          \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", \
      "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm30", "xmm31", "cc"
// zmm30 = zmm31 = all ones (255 unsigned, -1 signed); the values do not change the timing.
#define QK_DP_SETUP                                                                                             \
  "vpternlogd $0xff, %%zmm30, %%zmm30, %%zmm30\n\t"                                                                       \
  "vpternlogd $0xff, %%zmm31, %%zmm31, %%zmm31\n\t"                                                              \
  ".p2align 5\n\t"

// The asm strings must be literals, so each (form, chains) pair is its own function, declared by this macro and
// picked by the Loop template below.
template <Form F, int A>
struct Loop;
#define QK_DP_LOOP(FORM, A, M, ...)                                                                         \
  template <>                                                                                              \
  struct Loop<Form::FORM, A> {                                                                             \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) static void run(int64_t trips, const void* p) { \
      __asm__ volatile(QK_DP_SETUP "1:\n\t" QK_CHAINS_##A(M) "dec %[n]\n\tjnz 1b\n\t"                        \
                       : [n] "+r"(trips)                                                                    \
                       : [p] "r"(p)                                                                         \
                       : QK_DP_CLOBBERS __VA_ARGS__);                                                       \
    }                                                                                                      \
  };
QK_DP_LOOP(zmm, 1, QK_DP_Z)
QK_DP_LOOP(zmm, 2, QK_DP_Z)
QK_DP_LOOP(zmm, 4, QK_DP_Z)
QK_DP_LOOP(zmm, 6, QK_DP_Z)
QK_DP_LOOP(zmm, 8, QK_DP_Z)
QK_DP_LOOP(zmm, 12, QK_DP_Z)
QK_DP_LOOP(zmm, 24, QK_DP_Z)
QK_DP_LOOP(ymm, 12, QK_DP_Y)
QK_DP_LOOP(ymm, 24, QK_DP_Y)
QK_DP_LOOP(bcst, 12, QK_DP_B, , "memory")
QK_DP_LOOP(bcst, 24, QK_DP_B, , "memory")

template <Form F, int A>
void bm_dp(benchmark::State& st, int threads) {
  if (!qk::kernels::cpu_supports(qk::kernels::Isa::avx512vnni)) {
    st.SkipWithError("AVX-512 VNNI not supported by this CPU");
    return;
  }
  alignas(64) static const uint32_t word[16] = {0x01010101u};
  for (auto _ : st) {
    if (threads == 1) {
      Loop<F, A>::run(kIters, word);
    } else {
#pragma omp parallel num_threads(threads)
      Loop<F, A>::run(kIters, word);
    }
  }
  const double lanes = F == Form::ymm ? 8 : 16;
  const double ops = 2.0 * 4.0 * lanes * kPerTrip * static_cast<double>(kIters) * threads;
  st.counters["GOPS"] = benchmark::Counter(1e-9 * ops, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["instr_per_ns"] = benchmark::Counter(1e-9 * kPerTrip * static_cast<double>(kIters) * threads,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

// ---------------------------------------------------------------- streaming reads
struct Buffer {
  uint8_t* p = nullptr;
  size_t bytes = 0;
};

const Buffer& buffer(size_t bytes) {
  static Buffer big, small;
  Buffer& b = bytes > (size_t{64} << 20) ? big : small;
  if (!b.p) {
    b.p = static_cast<uint8_t*>(std::aligned_alloc(4096, bytes));
    std::memset(b.p, 1, bytes);  // touch every page
    b.bytes = bytes;
  }
  return b;
}

template <int PF>
__attribute__((target("avx512f"))) uint64_t read_span(const uint8_t* p, size_t bytes) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < bytes; i += 256) {
    if constexpr (PF > 0) _mm_prefetch(reinterpret_cast<const char*>(p + i + PF), _MM_HINT_T0);
    if constexpr (PF > 0) _mm_prefetch(reinterpret_cast<const char*>(p + i + PF + 128), _MM_HINT_T0);
    a0 = _mm512_xor_si512(a0, _mm512_load_si512(p + i));
    a1 = _mm512_xor_si512(a1, _mm512_load_si512(p + i + 64));
    a2 = _mm512_xor_si512(a2, _mm512_load_si512(p + i + 128));
    a3 = _mm512_xor_si512(a3, _mm512_load_si512(p + i + 192));
  }
  const __m512i x = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, x);  // (not _mm512_reduce_*: GCC 12's header trips -Wuninitialized there)
  uint64_t r = 0;
  for (uint64_t v : lanes) r ^= v;
  return r;
}

template <int PF>
void bm_read(benchmark::State& st, size_t bytes, int threads) {
  if (!qk::kernels::cpu_supports(qk::kernels::Isa::avx512)) {
    st.SkipWithError("AVX-512 not supported by this CPU");
    return;
  }
  const Buffer& b = buffer(bytes);
  for (auto _ : st) {
    uint64_t sink = 0;
#pragma omp parallel num_threads(threads) reduction(^ : sink)
    {
      const int t = omp_get_thread_num(), n = omp_get_num_threads();
      const size_t chunk = b.bytes / static_cast<size_t>(n) / 256 * 256;
      sink ^= read_span<PF>(b.p + static_cast<size_t>(t) * chunk, chunk);
    }
    benchmark::DoNotOptimize(sink);
  }
  st.counters["GBps"] = benchmark::Counter(1e-9 * static_cast<double>(b.bytes), benchmark::Counter::kIsIterationInvariantRate);
}

template <Form F, int A>
void reg_dp(const char* form) {
  for (int t : {1, 2}) {
    auto* b = benchmark::RegisterBenchmark(fmt::format("{}/{}/acc={}/t={}", F == Form::bcst ? "vpdpbusd_bcst" : "vpdpbusd", form, A, t).c_str(),
                                           [t](benchmark::State& st) { bm_dp<F, A>(st, t); });
    b->Unit(benchmark::kMicrosecond)->MinTime(0.2);
    if (t > 1) b->UseRealTime();
  }
}

template <int PF>
void reg_read(const std::string& name, size_t bytes) {
  for (int t : {1, 2}) {
    auto* b = benchmark::RegisterBenchmark(fmt::format("{}/t={}", name, t).c_str(),
                                           [bytes, t](benchmark::State& st) { bm_read<PF>(st, bytes, t); });
    b->Unit(benchmark::kMillisecond)->MinTime(0.5)->UseRealTime();
  }
}

void register_all() {
  reg_dp<Form::zmm, 1>("zmm");
  reg_dp<Form::zmm, 2>("zmm");
  reg_dp<Form::zmm, 4>("zmm");
  reg_dp<Form::zmm, 6>("zmm");
  reg_dp<Form::zmm, 8>("zmm");
  reg_dp<Form::zmm, 12>("zmm");
  reg_dp<Form::zmm, 24>("zmm");
  reg_dp<Form::ymm, 12>("ymm");
  reg_dp<Form::ymm, 24>("ymm");
  reg_dp<Form::bcst, 12>("zmm");
  reg_dp<Form::bcst, 24>("zmm");
  reg_read<0>("dram_read/pf=0", size_t{512} << 20);
  reg_read<512>("dram_read/pf=512", size_t{512} << 20);
  reg_read<2048>("dram_read/pf=2048", size_t{512} << 20);
  reg_read<0>("l3_read", size_t{16} << 20);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
