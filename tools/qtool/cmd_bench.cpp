// `qtool bench`: time the kernel the library chooses for one shape.
//   qtool bench gemm --m M --n N --k K --weights s8|w4 [--group G] [--threads T] [--cold] [--json]
//   qtool bench --list
// gemm runs gemm_s8_f32 (uint8 activations, fused f32 epilogue) or gemm_w4 (int8 activations quantized per row
// beforehand; M = 1 takes the GEMV kernel) on random data: one warm-up call, then the median of several timed
// calls (at least 5, more while under half a second). GOPS = 2*M*N*K / s; weight GB/s = packed weight bytes
// (codes + scales + zero-points) / s. --cold rotates through weight copies totalling >= 64 MiB (twice the L3
// cache of the reference machine) so every call reads its weights from DRAM.
#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "output.hpp"
#include "qk/core/threads.hpp"
#include "qk/kernels/gemm.hpp"

namespace qtool {
namespace {

struct BenchOptions {
  bool list = false;
  int64_t m = 1, n = 4096, k = 4096;
  std::string weights = "s8";
  int64_t group = 128;
  int threads = 0;
  bool cold = false;
  bool json = false;
};

int run_list() {
  using namespace qk::kernels;
  Table t({"path", "active", "gemm_s8", "gemv_s8", "gemm_w4", "gemv_w4", "gemm_w4_f32"});
  const Isa active = active_isa();
  for (Isa i : supported_isas()) {
    const KernelNames k = kernel_names(i);
    t.add({isa_name(i), i == active ? "*" : "", k.gemm_s8, k.gemv_s8, k.gemm_w4, k.gemv_w4, k.gemm_w4_f32});
  }
  t.print();
  std::vector<std::string> missing;
  for (Isa i : kAllIsas)
    if (!cpu_supports(i)) missing.push_back(isa_name(i));
  if (!missing.empty()) fmt::print("not supported by this CPU: {}\n", fmt::join(missing, ", "));
  return 0;
}

template <typename Packed>
std::vector<Packed> copies(Packed p, bool cold) {
  const size_t bytes = std::max<size_t>(1, p.weight_bytes());
  const size_t count = cold ? std::max<size_t>(2, ((size_t{64} << 20) + bytes - 1) / bytes) : 1;
  return std::vector<Packed>(count, p);
}

int run_gemm(const BenchOptions& o) {
  using namespace qk::kernels;
  if (o.m < 1 || o.n < 1 || o.k < 1) throw UsageError(fmt::format("--m, --n and --k must be >= 1 (got {}, {}, {})", o.m, o.n, o.k));
  if (o.k > kMaxK) throw UsageError(fmt::format("--k {} exceeds the kernels' limit {}", o.k, kMaxK));
  if (o.threads < 0) throw UsageError(fmt::format("--threads must be >= 0, got {}", o.threads));
  if (o.weights == "w4" && (o.group <= 0 || o.group % 8 != 0 || o.k % o.group != 0))
    throw UsageError(fmt::format("--group {} must be a positive multiple of 8 dividing --k {}", o.group, o.k));
  const int threads = qk::resolve_threads(o.threads);
  const Exec ex{threads, {}};
  std::mt19937_64 g(42);
  std::vector<float> y(static_cast<size_t>(o.m * o.n));
  std::string kernel;
  double weight_bytes = 0;
  std::function<void(size_t)> call;

  std::vector<PackedS8> w8;
  std::vector<PackedW4> w4;
  std::vector<uint8_t> a8;
  std::vector<float> a_scale;
  QuantizedActs qa;
  if (o.weights == "s8") {
    std::uniform_int_distribution<int> d8(-128, 127), du(0, 255);
    std::vector<int8_t> w(static_cast<size_t>(o.n * o.k));
    for (auto& v : w) v = static_cast<int8_t>(d8(g));
    const std::vector<float> ws(static_cast<size_t>(o.n), 0.01f);
    w8 = copies(pack_s8(w.data(), o.n, o.k, o.k, ws.data()), o.cold);
    a8.resize(static_cast<size_t>(o.m * o.k));
    for (auto& v : a8) v = static_cast<uint8_t>(du(g));
    a_scale.assign(static_cast<size_t>(o.m), 0.02f);
    weight_bytes = static_cast<double>(w8[0].weight_bytes());
    kernel = o.m == 1 ? active_kernel_names().gemv_s8 : active_kernel_names().gemm_s8;
    call = [&](size_t i) { gemm_s8_f32(a8.data(), o.m, o.k, 128, a_scale.data(), w8[i], nullptr, y.data(), o.n, ex); };
  } else {
    std::uniform_int_distribution<int> d4(0, 15);
    std::normal_distribution<float> dn(0.0f, 1.0f);
    std::vector<uint8_t> codes(static_cast<size_t>(o.n * o.k));
    for (auto& v : codes) v = static_cast<uint8_t>(d4(g));
    const std::vector<float> sc(static_cast<size_t>(o.n * (o.k / o.group)), 0.01f);
    w4 = copies(pack_w4(codes.data(), o.n, o.k, o.k, o.group, sc.data()), o.cold);
    std::vector<float> x(static_cast<size_t>(o.m * o.k));
    for (auto& v : x) v = dn(g);
    qa = quantize_acts(x.data(), o.m, o.k, o.k, o.group, ActQuant::per_row);
    weight_bytes = static_cast<double>(w4[0].weight_bytes());
    kernel = o.m == 1 ? active_kernel_names().gemv_w4 : active_kernel_names().gemm_w4;
    call = [&](size_t i) { gemm_w4(qa, w4[i], nullptr, y.data(), o.n, ex); };
  }
  const size_t ncopies = o.weights == "s8" ? w8.size() : w4.size();

  using clock = std::chrono::steady_clock;
  call(0);  // warm-up (and first touch of the output)
  std::vector<double> secs;
  const auto start = clock::now();
  size_t next = 1 % ncopies;
  while (secs.size() < 5 || (secs.size() < 200 && std::chrono::duration<double>(clock::now() - start).count() < 0.5)) {
    const auto t0 = clock::now();
    call(next);
    secs.push_back(std::chrono::duration<double>(clock::now() - t0).count());
    next = (next + 1) % ncopies;
  }
  std::sort(secs.begin(), secs.end());
  const double med = secs.size() % 2 ? secs[secs.size() / 2] : 0.5 * (secs[secs.size() / 2 - 1] + secs[secs.size() / 2]);
  const double gops = 2.0 * static_cast<double>(o.m) * static_cast<double>(o.n) * static_cast<double>(o.k) / med * 1e-9;
  const double gbps = weight_bytes / med * 1e-9;
  const std::string isa = isa_name(active_isa());

  if (o.json) {
    Json j;
    j.obj()
        .kv("op", "gemm")
        .kv("weights", o.weights)
        .kv("m", static_cast<long long>(o.m))
        .kv("n", static_cast<long long>(o.n))
        .kv("k", static_cast<long long>(o.k));
    if (o.weights == "w4") j.kv("group", static_cast<long long>(o.group));
    j.kv("cold", o.cold)
        .kv("threads", threads)
        .kv("isa", isa)
        .kv("kernel", kernel)
        .kv("runs", secs.size())
        .kv("median_us", med * 1e6)
        .kv("gops", gops)
        .kv("weight_gbps", gbps)
        .end();
    fmt::print("{}\n", j.str());
  } else {
    Table t({"kernel", "isa", "threads", "M", "N", "K", "median us", "GOPS", "weight GB/s"});
    t.add({kernel, isa, std::to_string(threads), std::to_string(o.m), std::to_string(o.n), std::to_string(o.k),
           fmt::format("{:.1f}", med * 1e6), fmt::format("{:.1f}", gops), fmt::format("{:.2f}", gbps)});
    t.print();
    fmt::print("{} weights{}, median of {} runs after a warm-up{}\n", o.weights,
               o.weights == "w4" ? fmt::format(" (group {})", o.group) : std::string(), secs.size(),
               o.cold ? fmt::format(", cold: {} weight copies rotated", ncopies) : std::string(", hot"));
  }
  return 0;
}

}  // namespace

void setup_bench(CLI::App& app, Runner& run) {
  auto opts = std::make_shared<BenchOptions>();
  auto* sub = app.add_subcommand("bench", "Time qk's kernels on this machine");
  sub->add_flag("--list", opts->list, "List every kernel path this machine supports and the kernels of each");
  auto* gemm = sub->add_subcommand("gemm", "Time one quantized matrix product (the kernel the library would choose)");
  gemm->add_option("--m", opts->m, "Rows of the activations (tokens); 1 runs the GEMV kernel")->required();
  gemm->add_option("--n", opts->n, "Output features (weight rows)")->required();
  gemm->add_option("--k", opts->k, "Input features (reduction length)")->required();
  gemm->add_option("--weights", opts->weights, "Weight type: s8 (W8A8) or w4 (int4 per group)")
      ->check(CLI::IsMember({"s8", "w4"}));
  gemm->add_option("--group", opts->group, "int4 group size (multiple of 8 dividing K)")->capture_default_str();
  gemm->add_option("--threads", opts->threads, "Threads (0: QK_NUM_THREADS or all cores)")->capture_default_str();
  gemm->add_flag("--cold", opts->cold, "Rotate weight copies larger than the L3 cache");
  gemm->add_flag("--json", opts->json, "Print one JSON object instead of a table");
  sub->callback([sub, gemm, opts, &run] {
    if (gemm->parsed()) {
      run = [opts] { return run_gemm(*opts); };
    } else if (opts->list) {
      run = [] { return run_list(); };
    } else {
      (void)sub;
      run = [] () -> int { throw UsageError("qtool bench: give --list or the gemm subcommand (qtool bench gemm --help)"); };
    }
  });
}

}  // namespace qtool
