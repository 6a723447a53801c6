// CPU feature detection and the process-wide ISA choice (qk/util/isa.hpp). Compiled without ISA flags.
#include "qk/util/isa.hpp"

#include <cpuid.h>

#include <cstdint>
#include <cstdlib>

#include "qk/core/error.hpp"

namespace qk {
namespace {

// CPUID leaf 1 ECX / leaf 7 EBX, ECX bits / leaf 7 subleaf 1 EAX bit 4 (AVX-VNNI) (Intel SDM vol. 2A, CPUID) and
// XCR0 state bits (SDM vol. 1, 13.3).
struct CpuFeatures {
  bool avx2 = false, avxvnni = false, avx512 = false, avx512vnni = false;
};

uint64_t read_xcr0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = read_xcr0();
  const bool os_avx = (xcr0 & 0x6) == 0x6;                 // XMM and YMM state
  const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM state
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  const bool avx2 = (b >> 5) & 1, bmi2 = (b >> 8) & 1;
  const bool f512 = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
  const bool vnni = (c >> 11) & 1;
  f.avx2 = os_avx && avx2 && fma && f16c && bmi2;
  f.avx512 = f.avx2 && os_avx512 && f512 && dq && bw && vl;
  f.avx512vnni = f.avx512 && vnni;
  if (a >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avxvnni = f.avx2 && ((a >> 4) & 1);
  return f;
}

const CpuFeatures& features() {
  static const CpuFeatures f = detect();
  return f;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avxvnni: return "avxvnni";
    case Isa::avx512: return "avx512";
    case Isa::avx512vnni: return "avx512vnni";
  }
  return "?";
}

Isa parse_isa(std::string_view name) {
  for (Isa i : kAllIsas)
    if (name == isa_name(i)) return i;
  fail<InvalidArgument>("unknown kernel path '{}' (expected scalar, avx2, avxvnni, avx512 or avx512vnni)", name);
}

bool cpu_supports(Isa isa) {
  const CpuFeatures& f = features();
  switch (isa) {
    case Isa::scalar: return true;
    case Isa::avx2: return f.avx2;
    case Isa::avxvnni: return f.avxvnni;
    case Isa::avx512: return f.avx512;
    case Isa::avx512vnni: return f.avx512vnni;
  }
  return false;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> v;
  for (Isa i : kAllIsas)
    if (cpu_supports(i)) v.push_back(i);
  return v;
}

Isa best_isa() { return supported_isas().back(); }

Isa active_isa() {
  static const Isa chosen = [] {
    const char* env = std::getenv("QK_ISA");
    if (!env || !*env) return best_isa();
    const Isa want = parse_isa(env);
    if (!cpu_supports(want)) fail<InvalidArgument>("QK_ISA={}: this CPU (or its OS) does not support that path", env);
    return want;
  }();
  return chosen;
}

}  // namespace qk
