#pragma once
// The kernels' instruction-set paths (chosen at run time, qk/util/isa.hpp) and the names of the kernels each path
// provides.
#include <string>

#include "qk/util/isa.hpp"

namespace qk::kernels {

// The ISA choice itself lives in qk/util/isa.hpp (the f32 GEMM shares it); these names keep the kernels' spelling.
using qk::Isa;
using qk::kAllIsas;
using qk::isa_name;
using qk::parse_isa;
using qk::cpu_supports;
using qk::supported_isas;
using qk::best_isa;
using qk::active_isa;

// Names of the kernels one path provides, e.g. "qk_gemm_u8s8s32_8x32c4__avx512vnni".
struct KernelNames {
  std::string gemm_s8;      // int8 x int8 -> int32 / f32 GEMM, M > 1
  std::string gemv_s8;      // the same, M = 1
  std::string gemm_w4;      // int4 weights x int8 activations, M > 1
  std::string gemv_w4;      // int4 weights x int8 activations, M = 1
  std::string gemm_w4_f32;  // int4 weights x f32 activations (dequantize on the fly)
};
KernelNames kernel_names(Isa isa);
// The kernels active_isa() uses.
KernelNames active_kernel_names();

}  // namespace qk::kernels
