#pragma once
// One Llama block: its float weights (owned, or viewed in place in a memory-mapped file) and its forward pass.
// A block is the unit the calibration pipeline holds in memory: it loads one, runs the calibration sequences
// through it, quantizes its weights, and moves on (qk/pipeline). LlamaModel (llama_model.hpp) holds them all.
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include <Eigen/Core>

#include "qk/io/tensor_file.hpp"
#include "qk/model/llama_config.hpp"

namespace qk::model {

using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A block's weights as float32, owned. Linear weights are [out, in].
struct LlamaLayer {
  Eigen::VectorXf attn_norm, ffn_norm;
  RowMatrixXf wq, wk, wv, wo;
  RowMatrixXf w_gate, w_up, w_down;
};

// Where the forward pass reads a block's weights: contiguous float32, row-major [out, in], owned by a LlamaLayer or
// by a memory-mapped file.
struct LayerView {
  const float* attn_norm = nullptr;
  const float* ffn_norm = nullptr;
  const float *wq = nullptr, *wk = nullptr, *wv = nullptr, *wo = nullptr;
  const float *w_gate = nullptr, *w_up = nullptr, *w_down = nullptr;
};
LayerView view(const LlamaLayer& L);

// The linear weight `name` ("attn_q", ..., "ffn_down") of a layer; nullptr for another name.
RowMatrixXf* find_linear(LlamaLayer& L, std::string_view name);
// The norm weight `name` ("attn_norm", "ffn_norm") of a layer; nullptr for another name.
Eigen::VectorXf* find_norm(LlamaLayer& L, std::string_view name);

// Reads block `layer` of a Llama file as float32 (decoding block types), checking shapes and finiteness:
// FormatError naming the file and tensor.
LlamaLayer load_layer(const io::TensorFile& file, const LlamaConfig& cfg, int layer);

// Block `layer` viewed in place when every weight is stored as float32 in the file (no copy), or loaded into
// `storage` (decoded) otherwise. release() gives the mapped pages of the viewed tensors back to the page cache, so
// a pass that visits every block in turn keeps about one block resident.
class LayerLoader {
 public:
  LayerLoader(const io::TensorFile& file, const LlamaConfig& cfg) : file_(file), cfg_(cfg) {}
  ~LayerLoader() { release(); }
  LayerLoader(const LayerLoader&) = delete;
  LayerLoader& operator=(const LayerLoader&) = delete;
  LayerView acquire(int layer);
  void release();

 private:
  const io::TensorFile& file_;
  LlamaConfig cfg_;
  LlamaLayer storage_;
  std::vector<std::span<const std::byte>> mapped_;
};

// Sees the inputs of the linear layers during a forward pass. x is [tokens, in_features] and only valid during the
// call. stop_after(in): true ends the block's pass right after `in` was seen (what follows is not computed and the
// hidden states are left undefined): a calibration pass that only needs one group's inputs stops there.
class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;
  virtual void on_linear_input(int layer, LinearInput in, const RowMatrixXf& x) = 0;
  virtual bool stop_after(LinearInput) const { return false; }
};

// One block over the rows of x, consecutive positions pos0 .. of one sequence (x: the residual stream, updated in
// place). Without a cache the keys and values are those of x alone; with one (kc, vc: this layer's [pos0, kv_dim]
// so far) the new rows are appended and attention sees every cached position.
void layer_forward(const LlamaConfig& cfg, const LayerView& w, int layer, RowMatrixXf& x, int64_t pos0 = 0,
                   RowMatrixXf* kc = nullptr, RowMatrixXf* vc = nullptr, ForwardObserver* observer = nullptr);

// One block over a batch of sequences, one new token each at position `pos` (row s of x is sequence s; kc[s], vc[s]
// its cache of `pos` rows, to which the new key and value are appended). Row s gives the same values as
// layer_forward on that sequence alone.
void layer_step(const LlamaConfig& cfg, const LayerView& w, RowMatrixXf& x, int64_t pos, std::span<RowMatrixXf> kc,
                std::span<RowMatrixXf> vc, int threads = 1);

// x <- x / rms(x) * w, row by row.
void rms_norm(RowMatrixXf& out, const RowMatrixXf& x, const float* w, float eps);

// The hidden states of `tokens` entering block 0, read from the file's token embedding (only those rows are
// touched). InvalidArgument for an id outside the vocabulary.
RowMatrixXf embed(const io::TensorFile& file, const LlamaConfig& cfg, std::span<const int32_t> tokens);

}  // namespace qk::model
