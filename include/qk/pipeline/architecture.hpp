#pragma once
// An architecture adapter tells the pipeline how a model computes, block by block, without the pipeline knowing
// the architecture: which linear weights of a block read the same input (and so share calibration statistics), in
// which order the block computes them (the order they are quantized in), which norm produces each group's input
// (where AWQ's input scales fold), and how to run one block on a sequence's hidden states. Llama is one adapter
// (llama_adapter.cpp); a second architecture is a new adapter, not edits across the pipeline.
//
// The adapter holds at most one block's float weights at a time (load_block), read from the memory-mapped input:
// calibration carries the sequences' hidden states from block to block and never holds the whole model.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "qk/io/tensor_file.hpp"

namespace qk::pipeline {

using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct LinearGroup {
  std::string input;                 // what the group reads, for messages ("attn_q/k/v input")
  std::vector<std::string> weights;  // full tensor names, in the order the block computes them
  std::string norm;                  // full name of the norm weight producing the input, or "" (nothing to fold)
};

// Sees a group's input during a block pass: (group index, [tokens, in_features]) valid during the call.
using GroupCapture = std::function<void(int group, const RowMatrixXf& x)>;

struct SampleSpec {
  int samples = 128;          // sequences
  int length = 128;           // tokens per sequence, the first one BOS
  uint64_t seed = 1;
  float temperature = 1.0f;
  int threads = 0;
};

class ArchitectureAdapter {
 public:
  virtual ~ArchitectureAdapter() = default;
  virtual std::string name() const = 0;
  virtual int blocks() const = 0;
  virtual int vocab() const = 0;
  virtual int context() const = 0;  // the model's context length, 0 when unknown
  virtual int bos() const = 0;      // the BOS token id

  // True for the weights of a block's linear layers (what calibration reaches).
  virtual bool is_block_linear(const std::string& tensor) const = 0;
  // The groups of block b, in the order the block computes them.
  virtual std::vector<LinearGroup> groups(int block) const = 0;

  // The hidden states of one sequence entering block 0. InvalidArgument for a token outside the vocabulary.
  virtual RowMatrixXf embed(std::span<const int32_t> tokens) const = 0;
  // Reads block b's weights as float (the only block held; the previous one is dropped).
  virtual void load_block(int block) = 0;
  virtual void release_block() = 0;
  // Runs the loaded block on one sequence's hidden states x (in place). capture sees each group's input; with
  // stop_after_group >= 0 the pass ends once that group's input was seen (x is then left undefined). Safe to call
  // from several threads at once for different sequences.
  virtual void forward(RowMatrixXf& x, const GroupCapture& capture = {}, int stop_after_group = -1) const = 0;
  // A weight of the loaded block by full name, and its replacement (by what the output file will hold, so later
  // groups and blocks are calibrated on the partly quantized model).
  virtual const RowMatrixXf& weight(const std::string& name) const = 0;
  virtual void set_weight(const std::string& name, const RowMatrixXf& w) = 0;
  // A norm weight of the loaded block by full name (AWQ folds its scales into it in the output file).
  virtual Eigen::VectorXf norm(const std::string& name) const = 0;

  // Token sequences drawn from the model itself (ancestral sampling), samples * length ids, independent of the
  // thread count.
  virtual std::vector<int32_t> sample(const SampleSpec& spec) = 0;
};

// The adapter for the model in `file` (GGUF general.architecture, or the tensor names), or nullptr when qk has no
// adapter for it. FormatError when the file claims an architecture qk knows but its tensors do not fit it.
std::unique_ptr<ArchitectureAdapter> make_adapter(const io::TensorFile& file);

}  // namespace qk::pipeline
