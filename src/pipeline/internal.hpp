#pragma once
// Private to src/pipeline: reading a tensor's float rows from the input, the per-tensor encoders, and the
// calibration run that quantizes a model's block weights in order.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qk/core/error.hpp"
#include "qk/formats/checkpoint.hpp"
#include "qk/methods/awq.hpp"
#include "qk/pipeline/architecture.hpp"
#include "qk/pipeline/calibration.hpp"
#include "qk/pipeline/plan.hpp"
#include "qk/pipeline/quantize.hpp"
#include "qk/pipeline/sink.hpp"

namespace qk::pipeline::detail {

// The adapter that runs the input for calibration from tokens: FormatError when qk cannot run it.
std::unique_ptr<ArchitectureAdapter> runnable_model(const formats::QuantizedCheckpoint& in);

// "<file>: tensor '<name>'", the prefix of every message about a tensor.
std::string where(const formats::QuantizedCheckpoint& in, const std::string& tensor);

// Runs f; a qk::Error from it that does not already name the input file is rethrown, of the same kind, as
// "<file>: tensor '<name>': <message>", so a method's message (GPTQ, a grid) says where it happened.
void rethrow_with_context(const formats::QuantizedCheckpoint& in, const std::string& tensor);
template <typename F>
auto with_context(const formats::QuantizedCheckpoint& in, const std::string& tensor, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error&) {
    rethrow_with_context(in, tensor);
    throw;  // not reached
  }
}

// Float rows of one logical tensor of the input: plain and ggml tensors row range by row range straight from the
// mapping (pages given back with release()); quantized checkpoint layers decoded whole on first use.
class RowReader {
 public:
  RowReader(const formats::QuantizedCheckpoint& in, const formats::LogicalTensor& t);
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  // Rows [r0, r0 + n) as floats into dst (n x cols). Finite or not: callers check.
  void read(int64_t r0, int64_t n, float* dst);
  // The same rows as a pointer into the mapping when the tensor is float32 there (no copy), else nullptr.
  const float* direct(int64_t r0) const;
  // Gives the input pages of rows [r0, r0 + n) back to the page cache.
  void release(int64_t r0, int64_t n) const;
  io::RowMatrixXf all();
  void release_all() const { release(0, rows_); }

 private:
  const formats::QuantizedCheckpoint& in_;
  const formats::LogicalTensor& t_;
  int64_t rows_ = 0, cols_ = 0;
  io::RowMatrixXf decoded_;  // quantized checkpoint layers
  bool logical_ = false;
};

// Sums ||W - Ŵ||² and ||W||² for a report's weight error.
struct ErrorSum {
  double noise = 0, signal = 0;
  void add(const float* w, const float* q, int64_t n);
  double relative() const { return signal > 0 ? noise / signal : (noise > 0 ? 1.0 : 0.0); }
};

// err += the error of `rows` x `cols` weights w against their ggml encoding enc (decoded here), in parallel.
void add_ggml_error(ErrorSum& err, ggml::Type type, const float* w, const std::byte* enc, int64_t rows, int64_t cols,
                    int threads);

// Checks that every value is finite: NumericError "<where>: NaN or Inf at [row, col]" otherwise.
void check_finite(const float* x, int64_t rows, int64_t cols, int64_t row0, const std::string& where);

// Encodes a tensor that needs no calibration: Copy, Convert, Ggml with RTN (importance: an imatrix vector or
// nullptr), Int with RTN, Nf4. Streams row chunks where the encoding allows; `on_rows(bytes_read)` after each
// chunk. err: the weight error of quantized tensors.
EncodedTensor encode_plain(const formats::QuantizedCheckpoint& in, const TensorPlan& t, const Plan& plan,
                           const float* importance, int threads, ErrorSum* err,
                           const std::function<void(uint64_t)>& on_rows);

// GPTQ / AWQ of one weight with the activations of an ActivationFile.
EncodedTensor encode_with_activations(const formats::QuantizedCheckpoint& in, const TensorPlan& t, const Plan& plan,
                                      const ActivationFile& acts, const QuantizeOptions& o, ErrorSum* err);

// Quantization of one float weight onto the plan's type with a method (shared by the two paths above and the
// calibration run): integer codes with fp16-representable scales for RTN, GPTQ with a Hessian, AWQ with inputs.
QuantizedTensor int_rtn(const io::RowMatrixXf& W, const TensorPlan& t, bool sym, const std::string& where);
QuantScheme scheme_of(const TensorPlan& t, bool sym);
GptqOptions gptq_options(const QuantizeOptions& o, bool int_grid);
AwqOptions awq_options(const QuantizeOptions& o);

// The calibration run of a token source: block by block through the model, every calibrated tensor of a block
// (GPTQ, AWQ, rtn+imatrix) quantized in the order the block computes it, on the inputs of the partly quantized
// model. The writer asks for tensors in plan order; blocks run when first needed, and what they produce is held
// until taken.
class CalibrationRun {
 public:
  CalibrationRun(const formats::QuantizedCheckpoint& in, const Plan& plan, TokenSource& source,
                 const QuantizeOptions& o, const ProgressFn& progress);
  ~CalibrationRun();
  // True when the calibration run produces this tensor (a calibrated weight, or a norm AWQ's scales fold into).
  bool produces(const std::string& name) const;
  // The tensor's encoding (running blocks as needed). err: its weight error.
  EncodedTensor take(const std::string& name, ErrorSum* err);
  const std::string& description() const { return description_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  int awq_scaled() const { return awq_scaled_; }
  int awq_norms() const { return awq_norms_; }

 private:
  void start();
  void run_block(int b);

  const formats::QuantizedCheckpoint& in_;
  const Plan& plan_;
  TokenSource& source_;
  const QuantizeOptions& o_;
  const ProgressFn& progress_;
  std::unique_ptr<ArchitectureAdapter> model_;
  std::vector<io::RowMatrixXf> xs_;  // each sequence's hidden states entering block next_
  std::vector<int32_t> tokens_;
  std::string description_;
  int next_ = 0;  // the next block to run
  std::map<std::string, int> block_of_;  // produced tensor -> its block
  struct Done {
    EncodedTensor enc;
    ErrorSum err;
  };
  std::map<std::string, Done> done_;
  int awq_scaled_ = 0, awq_norms_ = 0;
};

}  // namespace qk::pipeline::detail
