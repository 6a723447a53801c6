// One Llama block: loading, views and the forward pass (qk/model/llama_layer.hpp).
#include "qk/model/llama_layer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "qk/core/error.hpp"
#include "qk/core/half.hpp"
#include "qk/detail/omp.hpp"
#include "qk/formats/ggml.hpp"
#include "qk/formats/tensor_values.hpp"
#include "qk/linalg/sgemm.hpp"

namespace qk::model {
namespace {

// The tensor as float (a copy), its mapped pages given back: loading a block leaves only the copy resident.
RowMatrixXf read_weight(const io::TensorFile& f, const std::string& name, int64_t rows, int64_t cols) {
  return read_finite(f, checked_tensor(f, name, rows, cols));
}

Eigen::VectorXf read_vector(const io::TensorFile& f, const std::string& name, int64_t n) {
  return read_weight(f, name, 1, n).row(0).transpose();
}

// RoPE on adjacent pairs (llama2.c run.c; llama.cpp rope type "norm"): pair (2i, 2i+1) of each head rotates by
// pos * theta^(-2i/head_dim). Row t of x is at position pos0 + t * step (step 0: every row at pos0).
void rope(RowMatrixXf& x, int head_dim, float theta, int64_t pos0, int64_t step) {
  for (Eigen::Index t = 0; t < x.rows(); ++t)
    for (Eigen::Index c = 0; c + 1 < x.cols(); c += 2) {
      const int i = static_cast<int>(c % head_dim);
      const float freq = std::pow(theta, -static_cast<float>(i) / static_cast<float>(head_dim));
      const float a = static_cast<float>(pos0 + t * step) * freq;
      const float cs = std::cos(a), sn = std::sin(a);
      const float v0 = x(t, c), v1 = x(t, c + 1);
      x(t, c) = v0 * cs - v1 * sn;
      x(t, c + 1) = v0 * sn + v1 * cs;
    }
}

// The inputs x as the product sees them after rounding r (InputRounding): ggml's reference quantizer for the
// block types (encode, then decode), round to nearest even for fp16.
const RowMatrixXf& rounded(const RowMatrixXf& x, InputRounding r, RowMatrixXf& buf) {
  if (r == InputRounding::None) return x;
  buf.resize(x.rows(), x.cols());
  const int64_t n = x.size();
  if (r == InputRounding::F16) {
    for (int64_t i = 0; i < n; ++i) buf.data()[i] = fp16_to_fp32(fp32_to_fp16(x.data()[i]));
    return buf;
  }
  const ggml::Type t = r == InputRounding::Q8_0 ? ggml::Type::Q8_0 : ggml::Type::Q8_K;
  const auto enc = ggml::quantize(t, x.data(), x.rows(), x.cols(), nullptr, 1);
  ggml::dequantize_rows(t, enc.data(), x.rows(), x.cols(), buf.data(), 1);
  return buf;
}

// Causal attention of the query rows q (row t at position pos0 + t) over K/V rows [0, last_t] where
// last_t = pos0 + t - base (base: the position of K's first row), into att.
void attend(const LlamaConfig& cfg, const RowMatrixXf& q, const RowMatrixXf& K, const RowMatrixXf& V, int64_t pos0,
            int64_t base, RowMatrixXf& att) {
  const int head_dim = cfg.head_dim(), group = cfg.n_heads / cfg.n_kv_heads;
  const float inv_sqrt = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const auto T = q.rows();
  std::vector<float> score(static_cast<size_t>(pos0 + T - base));
  for (int hd = 0; hd < cfg.n_heads; ++hd) {
    const int kvh = hd / group;
    for (Eigen::Index t = 0; t < T; ++t) {
      const int64_t last = pos0 + t - base;  // attend to K rows [0, last]
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t s = 0; s <= last; ++s) {
        const float d = q.row(t).segment(hd * head_dim, head_dim).dot(K.row(s).segment(kvh * head_dim, head_dim)) * inv_sqrt;
        score[static_cast<size_t>(s)] = d;
        mx = std::max(mx, d);
      }
      float sum = 0;
      for (int64_t s = 0; s <= last; ++s) sum += (score[static_cast<size_t>(s)] = std::exp(score[static_cast<size_t>(s)] - mx));
      auto out = att.row(t).segment(hd * head_dim, head_dim);
      out.setZero();
      for (int64_t s = 0; s <= last; ++s) out += (score[static_cast<size_t>(s)] / sum) * V.row(s).segment(kvh * head_dim, head_dim);
    }
  }
}

// The float32 linear layers of a LayerView, each input rounded as the view says.
class ViewLinears final : public BlockLinears {
 public:
  ViewLinears(const LlamaConfig& cfg, const LayerView& w) : cfg_(cfg), w_(w) {}
  void apply(LinearId which, RowMatrixXf& y, const RowMatrixXf& x, float beta, int threads) const override {
    switch (which) {
      case LinearId::Q: return linear(y, x, w_.wq, cfg_.dim, w_.round_q, beta, threads);
      case LinearId::K: return linear(y, x, w_.wk, cfg_.kv_dim(), w_.round_k, beta, threads);
      case LinearId::V: return linear(y, x, w_.wv, cfg_.kv_dim(), w_.round_v, beta, threads);
      case LinearId::O: return linear(y, x, w_.wo, cfg_.dim, w_.round_o, beta, threads);
      case LinearId::Gate: return linear(y, x, w_.w_gate, cfg_.hidden, w_.round_gate, beta, threads);
      case LinearId::Up: return linear(y, x, w_.w_up, cfg_.hidden, w_.round_up, beta, threads);
      case LinearId::Down: return linear(y, x, w_.w_down, cfg_.dim, w_.round_down, beta, threads);
    }
  }

 private:
  const LlamaConfig& cfg_;
  const LayerView& w_;
};

// The FFN half of a block: x += down(silu(gate h) * up h), h = rmsnorm(x).
void ffn(const LlamaConfig& cfg, const float* ffn_norm, const BlockLinears& lin, int layer, RowMatrixXf& x,
         ForwardObserver* observer, int threads) {
  RowMatrixXf h;
  rms_norm(h, x, ffn_norm, cfg.norm_eps);
  if (observer) {
    observer->on_linear_input(layer, LinearInput::FfnGateUp, h);
    if (observer->stop_after(LinearInput::FfnGateUp)) return;
  }
  RowMatrixXf g, u;
  lin.apply(LinearId::Gate, g, h, 0.0f, threads);
  lin.apply(LinearId::Up, u, h, 0.0f, threads);
  g = (g.array() / (1.0f + (-g.array()).exp()) * u.array()).matrix();  // silu(gate) * up
  if (observer) {
    observer->on_linear_input(layer, LinearInput::FfnDown, g);
    if (observer->stop_after(LinearInput::FfnDown)) return;
  }
  lin.apply(LinearId::Down, x, g, 1.0f, threads);
}

}  // namespace

const io::TensorInfo& checked_tensor(const io::TensorFile& f, const std::string& name, int64_t rows, int64_t cols) {
  const io::TensorInfo* t = f.find(name);
  if (!t) fail<FormatError>("{}: tensor '{}' is missing", f.path().string(), name);
  const int64_t c = t->shape.empty() ? 1 : t->shape.back();
  const int64_t r = c == 0 ? 0 : t->numel() / c;
  if (r != rows || c != cols)
    fail<FormatError>("{}: tensor '{}' is [{}, {}], expected [{}, {}]", f.path().string(), name, r, c, rows, cols);
  return *t;
}

RowMatrixXf read_finite(const io::TensorFile& f, const io::TensorInfo& t) {
  RowMatrixXf m = formats::read_matrix(f, t);
  f.release(t);
  if (!m.allFinite()) fail<FormatError>("{}: tensor '{}' holds NaN or Inf", f.path().string(), t.name);
  return m;
}

LayerView view(const LlamaLayer& L) {
  return {L.attn_norm.data(), L.ffn_norm.data(), L.wq.data(), L.wk.data(), L.wv.data(), L.wo.data(),
          L.w_gate.data(), L.w_up.data(), L.w_down.data(), L.round_q, L.round_k, L.round_v, L.round_o,
          L.round_gate, L.round_up, L.round_down};
}

InputRounding input_rounding_for(const io::TensorInfo& t) {
  if (t.dtype == io::DType::F16) return InputRounding::F16;
  if (t.dtype != io::DType::Ggml) return InputRounding::None;
  switch (t.ggml_type) {
    case 2: case 3: case 6: case 7: case 8: case 20: return InputRounding::Q8_0;  // q4_0 q4_1 q5_0 q5_1 q8_0 iq4_nl
    case 10: case 11: case 12: case 13: case 14: return InputRounding::Q8_K;       // q2_K .. q6_K
    default: return InputRounding::None;
  }
}

void linear(RowMatrixXf& y, const RowMatrixXf& x, const float* w, int64_t out, InputRounding r, float beta,
            int threads) {
  RowMatrixXf buf;
  const RowMatrixXf& a = rounded(x, r, buf);
  const int64_t T = a.rows(), in = a.cols();
  if (beta == 0.0f) y.resize(T, out);
  else if (y.rows() != T || y.cols() != out)
    fail<ShapeError>("linear: accumulating into [{}, {}], the product is [{}, {}]", y.rows(), y.cols(), T, out);
  linalg::sgemm(T, out, in, 1.0f, {a.data(), in, 1}, {w, 1, in}, beta, {y.data(), out, 1}, threads);
}

RowMatrixXf* find_linear(LlamaLayer& L, std::string_view n) {
  if (n == "attn_q") return &L.wq;
  if (n == "attn_k") return &L.wk;
  if (n == "attn_v") return &L.wv;
  if (n == "attn_output") return &L.wo;
  if (n == "ffn_gate") return &L.w_gate;
  if (n == "ffn_up") return &L.w_up;
  if (n == "ffn_down") return &L.w_down;
  return nullptr;
}

Eigen::VectorXf* find_norm(LlamaLayer& L, std::string_view n) {
  if (n == "attn_norm") return &L.attn_norm;
  if (n == "ffn_norm") return &L.ffn_norm;
  return nullptr;
}

LlamaLayer load_layer(const io::TensorFile& f, const LlamaConfig& c, int l, bool llama_rounding) {
  if (l < 0 || l >= c.n_layers) fail<InvalidArgument>("llama: layer {} outside [0, {})", l, c.n_layers);
  LlamaLayer L;
  L.attn_norm = read_vector(f, layer_weight_name(l, "attn_norm"), c.dim);
  L.ffn_norm = read_vector(f, layer_weight_name(l, "ffn_norm"), c.dim);
  L.wq = read_weight(f, layer_weight_name(l, "attn_q"), c.dim, c.dim);
  L.wk = read_weight(f, layer_weight_name(l, "attn_k"), c.kv_dim(), c.dim);
  L.wv = read_weight(f, layer_weight_name(l, "attn_v"), c.kv_dim(), c.dim);
  L.wo = read_weight(f, layer_weight_name(l, "attn_output"), c.dim, c.dim);
  L.w_gate = read_weight(f, layer_weight_name(l, "ffn_gate"), c.hidden, c.dim);
  L.w_up = read_weight(f, layer_weight_name(l, "ffn_up"), c.hidden, c.dim);
  L.w_down = read_weight(f, layer_weight_name(l, "ffn_down"), c.dim, c.hidden);
  if (llama_rounding) {
    auto r = [&](const char* n) { return input_rounding_for(f.tensor(layer_weight_name(l, n))); };
    L.round_q = r("attn_q");
    L.round_k = r("attn_k");
    L.round_v = r("attn_v");
    L.round_o = r("attn_output");
    L.round_gate = r("ffn_gate");
    L.round_up = r("ffn_up");
    L.round_down = r("ffn_down");
  }
  return L;
}

LayerView LayerLoader::acquire(int l) {
  release();
  if (l < 0 || l >= cfg_.n_layers) fail<InvalidArgument>("llama: layer {} outside [0, {})", l, cfg_.n_layers);
  struct Part {
    const char* name;
    int64_t rows, cols;
    const float** slot;
  };
  LayerView v;
  const Part parts[] = {{"attn_norm", 1, cfg_.dim, &v.attn_norm},     {"ffn_norm", 1, cfg_.dim, &v.ffn_norm},
                        {"attn_q", cfg_.dim, cfg_.dim, &v.wq},        {"attn_k", cfg_.kv_dim(), cfg_.dim, &v.wk},
                        {"attn_v", cfg_.kv_dim(), cfg_.dim, &v.wv},   {"attn_output", cfg_.dim, cfg_.dim, &v.wo},
                        {"ffn_gate", cfg_.hidden, cfg_.dim, &v.w_gate}, {"ffn_up", cfg_.hidden, cfg_.dim, &v.w_up},
                        {"ffn_down", cfg_.dim, cfg_.hidden, &v.w_down}};
  bool in_place = true;
  for (const Part& p : parts) {
    const io::TensorInfo& t = checked_tensor(file_, layer_weight_name(l, p.name), p.rows, p.cols);
    in_place = in_place && t.dtype == io::DType::F32 &&
               reinterpret_cast<uintptr_t>(file_.bytes(t).data()) % alignof(float) == 0;
  }
  if (!in_place) {
    storage_ = load_layer(file_, cfg_, l);
    return view(storage_);
  }
  for (const Part& p : parts) {
    const auto b = file_.bytes(file_.tensor(layer_weight_name(l, p.name)));
    *p.slot = reinterpret_cast<const float*>(b.data());
    mapped_.push_back(b);
  }
  return v;
}

void LayerLoader::release() {
  for (const auto& b : mapped_) file_.release(b);
  mapped_.clear();
  storage_ = LlamaLayer();
}

void rms_norm(RowMatrixXf& out, const RowMatrixXf& x, const float* w, float eps) {
  out.resize(x.rows(), x.cols());
  const Eigen::Map<const Eigen::VectorXf> wv(w, x.cols());
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    const float ss = x.row(t).squaredNorm() / static_cast<float>(x.cols());
    const float inv = 1.0f / std::sqrt(ss + eps);
    out.row(t) = (x.row(t).array() * inv * wv.transpose().array()).matrix();
  }
}

void layer_forward(const LlamaConfig& cfg, const LayerView& w, int layer, RowMatrixXf& x, int64_t pos0,
                   RowMatrixXf* kc, RowMatrixXf* vc, ForwardObserver* observer, int threads) {
  layer_forward(cfg, w.attn_norm, w.ffn_norm, ViewLinears(cfg, w), layer, x, pos0, kc, vc, observer, threads);
}

void layer_forward(const LlamaConfig& cfg, const float* attn_norm, const float* ffn_norm, const BlockLinears& lin,
                   int layer, RowMatrixXf& x, int64_t pos0, RowMatrixXf* kc, RowMatrixXf* vc,
                   ForwardObserver* observer, int threads) {
  if (x.cols() != cfg.dim)
    fail<ShapeError>("llama layer {}: hidden states have {} columns, the model {}", layer, x.cols(), cfg.dim);
  const auto T = x.rows();
  RowMatrixXf h;
  rms_norm(h, x, attn_norm, cfg.norm_eps);
  if (observer) {
    observer->on_linear_input(layer, LinearInput::AttnQkv, h);
    if (observer->stop_after(LinearInput::AttnQkv)) return;
  }
  RowMatrixXf q, k, v;
  lin.apply(LinearId::Q, q, h, 0.0f, threads);
  lin.apply(LinearId::K, k, h, 0.0f, threads);
  lin.apply(LinearId::V, v, h, 0.0f, threads);
  rope(q, cfg.head_dim(), cfg.rope_theta, pos0, 1);
  rope(k, cfg.head_dim(), cfg.rope_theta, pos0, 1);
  if (kc) {
    kc->conservativeResize(pos0 + T, k.cols());
    vc->conservativeResize(pos0 + T, v.cols());
    kc->bottomRows(T) = k;
    vc->bottomRows(T) = v;
  }
  RowMatrixXf att(T, cfg.dim);
  attend(cfg, q, kc ? *kc : k, vc ? *vc : v, pos0, kc ? 0 : pos0, att);
  if (observer) {
    observer->on_linear_input(layer, LinearInput::AttnOutput, att);
    if (observer->stop_after(LinearInput::AttnOutput)) return;
  }
  lin.apply(LinearId::O, x, att, 1.0f, threads);
  ffn(cfg, ffn_norm, lin, layer, x, observer, threads);
}

void layer_step(const LlamaConfig& cfg, const LayerView& w, RowMatrixXf& x, int64_t pos, std::span<RowMatrixXf> kc,
                std::span<RowMatrixXf> vc, int threads) {
  const auto S = x.rows();
  if (x.cols() != cfg.dim) fail<ShapeError>("llama step: hidden states have {} columns, the model {}", x.cols(), cfg.dim);
  if (static_cast<Eigen::Index>(kc.size()) != S || static_cast<Eigen::Index>(vc.size()) != S)
    fail<InvalidArgument>("llama step: {} sequences, {} caches", S, kc.size());
  const ViewLinears lin(cfg, w);
  RowMatrixXf h;
  rms_norm(h, x, w.attn_norm, cfg.norm_eps);
  RowMatrixXf q, k, v;
  lin.apply(LinearId::Q, q, h, 0.0f, threads);
  lin.apply(LinearId::K, k, h, 0.0f, threads);
  lin.apply(LinearId::V, v, h, 0.0f, threads);
  rope(q, cfg.head_dim(), cfg.rope_theta, pos, 0);
  rope(k, cfg.head_dim(), cfg.rope_theta, pos, 0);
  RowMatrixXf att(S, cfg.dim);
  qk::detail::FirstException errors;  // shapes were checked; an allocation may still fail inside the region
#pragma omp parallel for schedule(static) num_threads(std::max(1, threads))
  for (Eigen::Index s = 0; s < S; ++s) errors.run([&] {
    RowMatrixXf& K = kc[static_cast<size_t>(s)];
    RowMatrixXf& V = vc[static_cast<size_t>(s)];
    K.conservativeResize(pos + 1, cfg.kv_dim());
    V.conservativeResize(pos + 1, cfg.kv_dim());
    K.row(pos) = k.row(s);
    V.row(pos) = v.row(s);
    const RowMatrixXf qs = q.row(s);
    RowMatrixXf as(1, cfg.dim);
    attend(cfg, qs, K, V, pos, 0, as);
    att.row(s) = as;
  });
  errors.rethrow();
  lin.apply(LinearId::O, x, att, 1.0f, threads);
  ffn(cfg, w.ffn_norm, lin, 0, x, nullptr, threads);
}

RowMatrixXf embed(const io::TensorFile& f, const LlamaConfig& cfg, std::span<const int32_t> tokens) {
  const io::TensorInfo& e = checked_tensor(f, "token_embd.weight", cfg.vocab, cfg.dim);
  const auto T = static_cast<Eigen::Index>(tokens.size());
  RowMatrixXf x(T, cfg.dim);
  for (Eigen::Index t = 0; t < T; ++t) {
    const int32_t id = tokens[static_cast<size_t>(t)];
    if (id < 0 || id >= cfg.vocab)
      fail<InvalidArgument>("token id {} at position {} is outside the vocabulary of {}", id, t, cfg.vocab);
    formats::read_rows(f, e, id, 1, x.row(t).data());
  }
  // The rows were copied: give the table's pages back (a tied table stays, it is read again as the output).
  if (!cfg.tied_output) f.release(e);
  if (!x.allFinite()) fail<FormatError>("{}: tensor 'token_embd.weight' holds NaN or Inf", f.path().string());
  return x;
}

}  // namespace qk::model
