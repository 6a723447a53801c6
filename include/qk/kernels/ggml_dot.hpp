#pragma once
// Products on ggml block types as GGUF stores them: Y[M, N] = A[M, K] · Wᵀ where W is N rows of Q4_0 or Q8_0
// blocks (row-major, K a multiple of 32, read in place: no repacking) and A is M rows of Q8_0 blocks, the
// "dynamic int8 activations" of llama.cpp (its vec_dot_q4_0_q8_0 / vec_dot_q8_0_q8_0).
//
// Semantics (every path): for each output, per block b of 32,
//   sumi_b = sum_j qw[j] * qa[j]              (int32, exact; Q4_0 codes as nibble - 8, Q8_0 codes as stored)
//   y      = sum_b float(sumi_b) * (d_w[b] * d_a[b])   (d's are the blocks' fp16 scales, accumulated in float)
// The scalar path (the oracle) adds the blocks in order; the SIMD paths keep 8 to 64 partial float sums per
// output and add them at the end, so they agree with the oracle within float summation error, not bit for bit
// (docs/kernels.md, "ggml block products", states the bound the tests check). Every output is computed by one
// thread in a fixed order: the bytes do not depend on the thread count.
//
// Paths (Exec::isa, or active_isa() / QK_ISA): scalar; avx2 (also taken for avxvnni and avx512, which have no
// kernel of their own here); avx512vnni. ggml_kernel_name() says which kernel a path runs.
#include <cstdint>
#include <string>

#include "qk/formats/ggml.hpp"
#include "qk/kernels/gemm.hpp"

namespace qk::kernels {

// How Q8_0 activation codes are rounded. Both store d = max|x| / 127 as fp16 per block of 32.
enum class Q8Rounding {
  // ggml's reference quantize_row_q8_0_ref: q = roundf(x * (1 / d)), halves away from zero; the same bytes as
  // qk::ggml::quantize(Type::Q8_0, ...).
  reference,
  // What llama.cpp's CPU backend runs for activations on AVX/AVX2 machines (ggml-cpu-quants.c quantize_row_q8_0,
  // commit c392e50): q = round-to-nearest-even(x * (127 / max|x|)). Differs from the reference in a code now and
  // then (a tie, or x * (127 / max) and x * (1 / d) rounding apart); needed to reproduce llama.cpp's logits.
  ggml_x86,
};

// Quantizes one row of k floats (k a multiple of 32) into k / 32 Q8_0 blocks. NaN/Inf: NumericError.
void quantize_row_q8_0(const float* x, int64_t k, ggml::BlockQ8_0* y, Q8Rounding r = Q8Rounding::reference);
// M rows of X (row stride ldx) into M * k / 32 blocks, row after row.
void quantize_rows_q8_0(const float* x, int64_t m, int64_t k, int64_t ldx, ggml::BlockQ8_0* y,
                        Q8Rounding r = Q8Rounding::reference);

// Y[m, n] (row stride ldy) = the product above. w: N rows of ggml::row_size(wtype, k) bytes each; a: M rows of
// k / 32 Q8_0 blocks whose codes lie in -127..127 (what quantize_row_q8_0 writes; -128 is refused with
// InvalidArgument because the AVX2 path's sign trick cannot hold it). wtype: Type::Q4_0 or Type::Q8_0, others
// InvalidArgument. Work is split over N.
void ggml_gemm(ggml::Type wtype, const void* w, int64_t n, int64_t k, const ggml::BlockQ8_0* a, int64_t m, float* y,
               int64_t ldy, const Exec& ex = {});
// Quantizes X to Q8_0 (quantize_rows_q8_0 with rounding r) and calls ggml_gemm: llama.cpp's path for these
// weight types.
void ggml_linear(ggml::Type wtype, const void* w, int64_t n, int64_t k, const float* x, int64_t m, int64_t ldx,
                 float* y, int64_t ldy, const Exec& ex = {}, Q8Rounding r = Q8Rounding::reference);

// ---- Q4_0 on qk's packed int4 kernels (gemm.hpp), the faster route where a runtime may repack at load.
// Q4_0 is int4 with group 32 and fp16 scales, so it repacks without loss: a block d (q - 8) with d >= 0 becomes
// scale d, codes q, zero-point 8; with d < 0 (ggml's encoder gives d the sign of the block's largest-magnitude
// value) scale -d, codes 15 - q, zero-point 7, since -d ((15 - q) - 7) = d (q - 8). w: N rows of Q4_0 blocks as
// in ggml_gemm. Non-finite scales: InvalidArgument (pack_w4's check).
PackedW4 repack_q4_0(const void* w, int64_t n, int64_t k);
// Q8_0 activation rows as the int4 kernels' QuantizedActs (group 32: codes, d as float, block sums). With these,
// gemm_w4(acts, repack_q4_0(w), ...) computes ggml_gemm's Q4_0 product with the same per-block terms, added in
// block order with one fma each (the scalar oracle adds float(sumi) * (d_w * d_a) with a multiply and an add).
QuantizedActs acts_from_q8_0(const ggml::BlockQ8_0* a, int64_t m, int64_t k);

// The kernel a path runs for a weight type, e.g. "qk_ggml_q4_0q8_0_4x4__avx512vnni"; InvalidArgument for a type
// without a kernel.
std::string ggml_kernel_name(ggml::Type wtype, Isa isa);

}  // namespace qk::kernels
