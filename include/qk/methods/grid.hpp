#pragma once
// WeightGrid: the set of values a weight matrix may take after quantization, chosen block by block along the
// input dimension. GPTQ, AWQ and RTN quantize "to a grid" through this interface, so one algorithm serves the
// core's integer schemes (IntGrid, methods/rtn.hpp) and ggml's block encodings (formats/ggml.hpp, GgmlGrid).
//
// Protocol for a [rows, cols] weight (rows = output features, cols = input features):
//   grid.reset(rows, cols);
//   for each block b of block_size() columns (in any order; GPTQ act-order visits columns permuted, and then
//   fits every block up front from the original weight, "static groups"):
//     grid.fit(c0, W_block, importance_block)   // parameters for columns [c0, c0 + block_size())
//     for each column c of the block:
//       grid.quantize_column(c, w_col, out_col)  // out = the grid value chosen for each row; codes are recorded
// After every column went through quantize_column the subclass can emit its encoding (a QuantizedTensor,
// ggml block bytes, ...). quantize_column may be called again for the same column (the last call wins).
#include <cstdint>

#include <Eigen/Core>

namespace qk {

class WeightGrid {
 public:
  virtual ~WeightGrid() = default;
  // Columns whose parameters are fitted together (group size, ggml block or super-block; cols for per-channel).
  virtual int64_t block_size() const = 0;
  virtual void reset(int64_t rows, int64_t cols) = 0;
  // W: rows x block_size() current weights of columns [c0, c0 + block_size()).
  // importance: optional per-column weights (imatrix / activation energy) of the same columns, or nullptr.
  virtual void fit(int64_t c0, const Eigen::Ref<const Eigen::MatrixXf>& W, const float* importance) = 0;
  // Rounds column c (rows values) onto the grid fitted for its block; writes the dequantized values to out.
  virtual void quantize_column(int64_t c, const Eigen::Ref<const Eigen::VectorXf>& w,
                               Eigen::Ref<Eigen::VectorXf> out) = 0;
  // Short name for reports ("int4 g128 sym", "q4_K").
  virtual const char* name() const = 0;
};

}  // namespace qk
