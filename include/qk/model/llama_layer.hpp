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

// How the inputs of a linear layer are rounded before the product. llama.cpp's CPU backend converts them to the
// weight type's "vec_dot_type" (ggml-cpu type_traits) and multiplies in that type: fp16 for F16 weights, Q8_0
// blocks of 32 for q4_0, q4_1 (Q8_1, the same values), q5_0, q5_1, q8_0 and iq4_nl, Q8_K blocks of 256 for the
// K-quants; F32 weights take float inputs. Emulating it (the values ggml's reference quantizers give, multiplied
// in float) makes qk's perplexity and KL agree with llama.cpp's on quantized files.
enum class InputRounding : uint8_t { None, F16, Q8_0, Q8_K };
// The rounding llama.cpp applies to the inputs of a weight stored as `t` (a TensorInfo of the file).
InputRounding input_rounding_for(const io::TensorInfo& t);

// A block's weights as float32, owned. Linear weights are [out, in]. round_*: the input rounding of each linear
// layer (None unless the model was loaded with llama.cpp's rounding, LoadOptions).
struct LlamaLayer {
  Eigen::VectorXf attn_norm, ffn_norm;
  RowMatrixXf wq, wk, wv, wo;
  RowMatrixXf w_gate, w_up, w_down;
  InputRounding round_q = InputRounding::None, round_k = InputRounding::None, round_v = InputRounding::None,
                round_o = InputRounding::None, round_gate = InputRounding::None, round_up = InputRounding::None,
                round_down = InputRounding::None;
};

// Where the forward pass reads a block's weights: contiguous float32, row-major [out, in], owned by a LlamaLayer or
// by a memory-mapped file.
struct LayerView {
  const float* attn_norm = nullptr;
  const float* ffn_norm = nullptr;
  const float *wq = nullptr, *wk = nullptr, *wv = nullptr, *wo = nullptr;
  const float *w_gate = nullptr, *w_up = nullptr, *w_down = nullptr;
  InputRounding round_q = InputRounding::None, round_k = InputRounding::None, round_v = InputRounding::None,
                round_o = InputRounding::None, round_gate = InputRounding::None, round_up = InputRounding::None,
                round_down = InputRounding::None;
};
LayerView view(const LlamaLayer& L);

// The linear weight `name` ("attn_q", ..., "ffn_down") of a layer; nullptr for another name.
RowMatrixXf* find_linear(LlamaLayer& L, std::string_view name);
// The norm weight `name` ("attn_norm", "ffn_norm") of a layer; nullptr for another name.
Eigen::VectorXf* find_norm(LlamaLayer& L, std::string_view name);

// A tensor of a Llama file by name, checked to be [rows, cols] (rows: the product of every dimension but the last).
// FormatError naming the file and tensor when it is missing or shaped otherwise.
const io::TensorInfo& checked_tensor(const io::TensorFile& f, const std::string& name, int64_t rows, int64_t cols);
// Tensor t as float32 (decoded: a copy), its mapped pages given back, so only the copy stays resident. FormatError
// naming the file and tensor when a value is NaN or Inf.
RowMatrixXf read_finite(const io::TensorFile& f, const io::TensorInfo& t);

// Reads block `layer` of a Llama file as float32 (decoding block types), checking shapes and finiteness:
// FormatError naming the file and tensor. llama_rounding: set each linear layer's input rounding from its stored
// type, as llama.cpp computes (InputRounding); otherwise products take float inputs.
LlamaLayer load_layer(const io::TensorFile& file, const LlamaConfig& cfg, int layer, bool llama_rounding = false);

// y = x · Wᵀ + beta·y for W [out, in] row-major at w (qk's f32 GEMM: each row's values depend on that row alone, so
// a batch of rows gives what each row gives alone, on any thread count), the input rows first rounded as `r` says.
void linear(RowMatrixXf& y, const RowMatrixXf& x, const float* w, int64_t out, InputRounding r = InputRounding::None,
            float beta = 0.0f, int threads = 1);

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
// so far) the new rows are appended and attention sees every cached position. threads: for the products (inside
// an OpenMP parallel region they run on the calling thread).
void layer_forward(const LlamaConfig& cfg, const LayerView& w, int layer, RowMatrixXf& x, int64_t pos0 = 0,
                   RowMatrixXf* kc = nullptr, RowMatrixXf* vc = nullptr, ForwardObserver* observer = nullptr,
                   int threads = 1);

// The seven linear layers of a block.
enum class LinearId : uint8_t { Q, K, V, O, Gate, Up, Down };

// A block's linear layers, however their weights are held (float32 views here; quantized blocks in qk/runtime).
// apply: y = x · Wᵀ + beta·y for the layer `which` (W [out, in]; beta 0 resizes y to [x.rows(), out]).
class BlockLinears {
 public:
  virtual ~BlockLinears() = default;
  virtual void apply(LinearId which, RowMatrixXf& y, const RowMatrixXf& x, float beta, int threads) const = 0;
};

// layer_forward with the norms (dim floats each) and the linear layers given apart: the same RMSNorm, RoPE,
// attention and SwiGLU, the products delegated to `lin`. layer_forward(cfg, w, ...) is this with w's float views.
void layer_forward(const LlamaConfig& cfg, const float* attn_norm, const float* ffn_norm, const BlockLinears& lin,
                   int layer, RowMatrixXf& x, int64_t pos0 = 0, RowMatrixXf* kc = nullptr, RowMatrixXf* vc = nullptr,
                   ForwardObserver* observer = nullptr, int threads = 1);

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
