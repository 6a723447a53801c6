#pragma once
// Private to src/kernels: the problem descriptions every path receives and the descriptor table each ISA file
// exports. dispatch.cpp validates arguments, splits the work over threads and calls one table's functions.
#include <cstdint>
#include <cstring>

#include "qk/kernels/gemm.hpp"

namespace qk::kernels::detail {

struct S8Problem {
  const uint8_t* a = nullptr;
  int64_t lda = 0;
  int32_t a_zp = 0;
  const PackedS8* w = nullptr;
  int32_t* c32 = nullptr;  // int32 output, or
  float* cf = nullptr;     // f32 output with the epilogue below
  int64_t ldc = 0;
  const float* a_scale = nullptr;  // [m]
  const float* bias = nullptr;     // [n] or nullptr
};

struct W4Problem {
  const int8_t* qa = nullptr;  // [m, k]
  int64_t lda = 0;
  const float* a_scale = nullptr;  // [m, groups]
  const int32_t* a_sum = nullptr;  // [m, groups]
  const PackedW4* w = nullptr;
  float* c = nullptr;
  int64_t ldc = 0;
  const float* bias = nullptr;
};

struct W4F32Problem {
  const float* a = nullptr;
  int64_t lda = 0;
  const PackedW4* w = nullptr;
  float* c = nullptr;
  int64_t ldc = 0;
  const float* bias = nullptr;
};

// Each function computes rows [m0, m1) and column tiles [t0, t1) (16 columns each, the last one partial).
using S8Fn = void (*)(const S8Problem&, int64_t m0, int64_t m1, int64_t t0, int64_t t1);
using W4Fn = void (*)(const W4Problem&, int64_t m0, int64_t m1, int64_t t0, int64_t t1);
using W4F32Fn = void (*)(const W4F32Problem&, int64_t m0, int64_t m1, int64_t t0, int64_t t1);

struct KernelTable {
  Isa isa;
  const char* gemm_s8_name;
  const char* gemv_s8_name;  // the M = 1 path inside gemm_s8
  S8Fn gemm_s8;
  const char* gemm_w4_name;
  W4Fn gemm_w4;
  const char* gemv_w4_name;
  W4Fn gemv_w4;
  const char* gemm_w4_f32_name;
  W4F32Fn gemm_w4_f32;
};

const KernelTable& table_scalar();
const KernelTable& table_avx2();
const KernelTable& table_avxvnni();
const KernelTable& table_avx512();
const KernelTable& table_avx512vnni();

inline uint32_t load_u32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace qk::kernels::detail
