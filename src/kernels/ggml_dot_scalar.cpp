// The scalar oracle of the ggml block products: straight from the definition in qk/kernels/ggml_dot.hpp, one
// output at a time, reading the weight and activation blocks through the block structs of qk/formats/ggml.hpp
// (not the unpacked panel the SIMD paths read). Never optimise.
#include <cstring>

#include "ggml_dot_internal.hpp"
#include "qk/core/half.hpp"

namespace qk::kernels::detail {
namespace {

template <typename Block>
Block block_at(const uint8_t* row, int64_t b) {
  Block blk;
  std::memcpy(&blk, row + b * static_cast<int64_t>(sizeof(Block)), sizeof(Block));
  return blk;
}

// Q4_0 code j of a block: byte j's low nibble for j < 16, byte j - 16's high nibble after, minus 8.
int q4_0_code(const ggml::BlockQ4_0& b, int j) { return (j < 16 ? (b.qs[j] & 0x0f) : (b.qs[j - 16] >> 4)) - 8; }

template <typename Block, typename Code>
void product(const GgmlDotProblem& p, int64_t n0, int64_t n1, Code code) {
  for (int64_t m = 0; m < p.m; ++m) {
    const ggml::BlockQ8_0* a = p.a + m * p.nb;
    for (int64_t n = n0; n < n1; ++n) {
      const uint8_t* row = p.w + n * p.row_bytes;
      float sum = 0.0f;
      for (int64_t b = 0; b < p.nb; ++b) {
        const Block wb = block_at<Block>(row, b);
        int32_t sumi = 0;
        for (int j = 0; j < 32; ++j) sumi += code(wb, j) * static_cast<int32_t>(a[b].qs[j]);
        const float d = fp16_to_fp32(wb.d) * fp16_to_fp32(a[b].d);
        sum = sum + static_cast<float>(sumi) * d;
      }
      p.y[m * p.ldy + n] = sum;
    }
  }
}

void q4_0_ref(const GgmlDotProblem& p, int64_t n0, int64_t n1) {
  product<ggml::BlockQ4_0>(p, n0, n1, [](const ggml::BlockQ4_0& b, int j) { return q4_0_code(b, j); });
}

void q8_0_ref(const GgmlDotProblem& p, int64_t n0, int64_t n1) {
  product<ggml::BlockQ8_0>(p, n0, n1, [](const ggml::BlockQ8_0& b, int j) { return static_cast<int32_t>(b.qs[j]); });
}

}  // namespace

const GgmlDotTable& ggml_dot_scalar() {
  static const GgmlDotTable t{Isa::scalar, false, nullptr, "qk_ggml_q4_0q8_0_1x1__scalar", q4_0_ref,
                              "qk_ggml_q8_0q8_0_1x1__scalar", q8_0_ref};
  return t;
}

}  // namespace qk::kernels::detail
