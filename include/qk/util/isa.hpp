#pragma once
// Instruction-set paths and the run-time choice between them, shared by the kernels (qk/kernels) and the f32 GEMM
// (qk/linalg/sgemm.hpp).
//
// The choice is made once per process (the first call that needs it): CPUID says what the CPU has, XGETBV says
// whether the operating system saves the AVX / AVX-512 registers; the best path both allow wins. The environment
// variable QK_ISA=scalar|avx2|avxvnni|avx512|avx512vnni forces one path (an error if the CPU or OS cannot run it).
// This choice is the only global mutable state of qk.
#include <string_view>
#include <vector>

namespace qk {

// Ordered by preference, from the most portable to the fastest: the best path a CPU supports is the last of them
// it has. Every SIMD path implies avx2; avxvnni and the AVX-512 paths are independent of each other (AVX-VNNI
// client CPUs lack AVX-512, early AVX-512 CPUs lack AVX-VNNI).
enum class Isa {
  scalar,      // the reference: plain C++ loops, the oracle every other path is tested against
  avx2,        // AVX2 + FMA + F16C (int8 products through vpmaddwd on 16-bit lanes)
  avxvnni,     // AVX-VNNI: VEX-encoded vpdpbusd on ymm, with AVX2 + FMA + F16C
  avx512,      // AVX-512 F/BW/DQ/VL (vpmaddwd on zmm)
  avx512vnni,  // AVX-512 VNNI (vpdpbusd)
};

inline constexpr Isa kAllIsas[] = {Isa::scalar, Isa::avx2, Isa::avxvnni, Isa::avx512, Isa::avx512vnni};

// "scalar", "avx2", "avxvnni", "avx512", "avx512vnni" (the QK_ISA spellings).
const char* isa_name(Isa isa);
// Parses a QK_ISA spelling; throws qk::InvalidArgument for anything else.
Isa parse_isa(std::string_view name);

// True when this CPU (and its operating system) can run the path.
bool cpu_supports(Isa isa);
// Every path this machine can run, in kAllIsas order.
std::vector<Isa> supported_isas();
// The best path the machine supports, ignoring QK_ISA.
Isa best_isa();
// The path in use: QK_ISA if set (throws qk::InvalidArgument when it names an unknown or unsupported path),
// otherwise best_isa(). Decided once; later calls return the same answer.
Isa active_isa();

}  // namespace qk
