// Llama forward pass and perplexity (see include/qk/model/llama_model.hpp).
#include "qk/model/llama_model.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>

#include <omp.h>

#include "qk/core/error.hpp"
#include "qk/core/threads.hpp"
#include "qk/util/atomic_file.hpp"
#include "qk/formats/tensor_values.hpp"

namespace qk::model {

namespace {

// Integer or float metadata value as double; nullopt-like NaN when absent or not numeric.
double meta_number(const io::TensorFile& f, std::string_view key) {
  for (const auto& e : f.metadata()) {
    if (e.key != key) continue;
    return std::visit(
        [](const auto& v) -> double {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_arithmetic_v<T>) return static_cast<double>(v);
          else return std::numeric_limits<double>::quiet_NaN();
        },
        e.value);
  }
  return std::numeric_limits<double>::quiet_NaN();
}

int meta_int(const io::TensorFile& f, std::string_view key, int fallback = -1) {
  const double v = meta_number(f, key);
  if (std::isnan(v)) {
    if (fallback >= 0) return fallback;
    fail<FormatError>("{}: metadata '{}' is missing or not a number", f.path().string(), key);
  }
  return static_cast<int>(v);
}

RowMatrixXf read_weight(const io::TensorFile& f, const std::string& name, int64_t rows, int64_t cols) {
  const io::TensorInfo* t = f.find(name);
  if (!t) fail<FormatError>("{}: tensor '{}' is missing", f.path().string(), name);
  RowMatrixXf m = formats::read_matrix(f, *t);
  if (m.rows() != rows || m.cols() != cols)
    fail<FormatError>("{}: tensor '{}' is [{}, {}], expected [{}, {}]", f.path().string(), name, m.rows(), m.cols(),
                      rows, cols);
  if (!m.allFinite()) fail<FormatError>("{}: tensor '{}' holds NaN or Inf", f.path().string(), name);
  return m;
}

Eigen::VectorXf vec(const io::TensorFile& f, const std::string& name, int64_t n) {
  RowMatrixXf m = read_weight(f, name, 1, n);
  return m.row(0).transpose();
}

// x <- x / rms(x) * w, row by row.
void rmsnorm(RowMatrixXf& out, const RowMatrixXf& x, const Eigen::VectorXf& w, float eps) {
  out.resize(x.rows(), x.cols());
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    const float ss = x.row(t).squaredNorm() / static_cast<float>(x.cols());
    const float inv = 1.0f / std::sqrt(ss + eps);
    out.row(t) = (x.row(t).array() * inv * w.transpose().array()).matrix();
  }
}

// RoPE on adjacent pairs (llama2.c run.c; llama.cpp rope type "norm"): pair (2i, 2i+1) of each head rotates by
// pos * theta^(-2i/head_dim).
// Row t of x is at position pos0 + t.
void rope(RowMatrixXf& x, int head_dim, float theta, int64_t pos0) {
  for (Eigen::Index t = 0; t < x.rows(); ++t)
    for (Eigen::Index c = 0; c + 1 < x.cols(); c += 2) {
      const int i = static_cast<int>(c % head_dim);
      const float freq = std::pow(theta, -static_cast<float>(i) / static_cast<float>(head_dim));
      const float a = static_cast<float>(pos0 + t) * freq;
      const float cs = std::cos(a), sn = std::sin(a);
      const float v0 = x(t, c), v1 = x(t, c + 1);
      x(t, c) = v0 * cs - v1 * sn;
      x(t, c + 1) = v0 * sn + v1 * cs;
    }
}

// log-softmax helpers over one row of logits.
double log_sum_exp(const float* z, int n) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < n; ++i) mx = std::max(mx, z[i]);
  double s = 0;
  for (int i = 0; i < n; ++i) s += std::exp(static_cast<double>(z[i]) - mx);
  return mx + std::log(s);
}

}  // namespace

LlamaModel LlamaModel::load(const std::filesystem::path& path) { return load(*io::TensorFile::open(path)); }

LlamaModel LlamaModel::load(const io::TensorFile& f) {
  LlamaModel m;
  LlamaConfig& c = m.cfg_;
  c.dim = meta_int(f, "llama.embedding_length");
  c.hidden = meta_int(f, "llama.feed_forward_length");
  c.n_layers = meta_int(f, "llama.block_count");
  c.n_heads = meta_int(f, "llama.attention.head_count");
  c.n_kv_heads = meta_int(f, "llama.attention.head_count_kv", c.n_heads);
  c.context = meta_int(f, "llama.context_length", 0);
  const double eps = meta_number(f, "llama.attention.layer_norm_rms_epsilon");
  if (!std::isnan(eps)) c.norm_eps = static_cast<float>(eps);
  const double theta = meta_number(f, "llama.rope.freq_base");
  if (!std::isnan(theta)) c.rope_theta = static_cast<float>(theta);
  if (c.dim <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.dim % c.n_heads != 0 || c.n_heads % c.n_kv_heads != 0 ||
      c.n_layers <= 0 || c.hidden <= 0)
    fail<FormatError>("{}: inconsistent llama hyper-parameters (dim {}, heads {}/{}, layers {}, ffn {})",
                      f.path().string(), c.dim, c.n_heads, c.n_kv_heads, c.n_layers, c.hidden);
  const io::TensorInfo* emb = f.find("token_embd.weight");
  if (!emb || emb->shape.size() != 2)
    fail<FormatError>("{}: tensor 'token_embd.weight' is missing or not 2-D", f.path().string());
  c.vocab = static_cast<int>(emb->shape[0]);
  m.tok_embd_ = read_weight(f, "token_embd.weight", c.vocab, c.dim);
  m.output_norm_ = vec(f, "output_norm.weight", c.dim);
  m.tied_output_ = f.find("output.weight") == nullptr;
  m.output_ = m.tied_output_ ? m.tok_embd_ : read_weight(f, "output.weight", c.vocab, c.dim);
  const int head_dim = c.dim / c.n_heads, kv_dim = head_dim * c.n_kv_heads;
  m.layers_.resize(static_cast<size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LlamaLayer& L = m.layers_[static_cast<size_t>(l)];
    L.attn_norm = vec(f, p + "attn_norm.weight", c.dim);
    L.ffn_norm = vec(f, p + "ffn_norm.weight", c.dim);
    L.wq = read_weight(f, p + "attn_q.weight", c.dim, c.dim);
    L.wk = read_weight(f, p + "attn_k.weight", kv_dim, c.dim);
    L.wv = read_weight(f, p + "attn_v.weight", kv_dim, c.dim);
    L.wo = read_weight(f, p + "attn_output.weight", c.dim, c.dim);
    L.w_gate = read_weight(f, p + "ffn_gate.weight", c.hidden, c.dim);
    L.w_up = read_weight(f, p + "ffn_up.weight", c.hidden, c.dim);
    L.w_down = read_weight(f, p + "ffn_down.weight", c.dim, c.hidden);
  }
  return m;
}

std::vector<std::string> linear_names(LinearInput in) {
  switch (in) {
    case LinearInput::AttnQkv: return {"attn_q", "attn_k", "attn_v"};
    case LinearInput::AttnOutput: return {"attn_output"};
    case LinearInput::FfnGateUp: return {"ffn_gate", "ffn_up"};
    case LinearInput::FfnDown: return {"ffn_down"};
  }
  return {};
}

std::string layer_weight_name(int layer, std::string_view name) {
  return "blk." + std::to_string(layer) + "." + std::string(name) + ".weight";
}

RowMatrixXf LlamaModel::embed(std::span<const int32_t> tokens) const {
  const auto T = static_cast<Eigen::Index>(tokens.size());
  RowMatrixXf x(T, cfg_.dim);
  for (Eigen::Index t = 0; t < T; ++t) {
    const int32_t id = tokens[static_cast<size_t>(t)];
    if (id < 0 || id >= cfg_.vocab) fail<InvalidArgument>("token id {} at position {} is outside the vocabulary of {}", id, t, cfg_.vocab);
    x.row(t) = tok_embd_.row(id);
  }
  return x;
}

RowMatrixXf LlamaModel::logits(const RowMatrixXf& x) const {
  if (x.cols() != cfg_.dim) fail<ShapeError>("llama logits: hidden states have {} columns, the model {}", x.cols(), cfg_.dim);
  RowMatrixXf h;
  rmsnorm(h, x, output_norm_, cfg_.norm_eps);
  return h * output_.transpose();
}

void LlamaModel::forward_layer(int layer, RowMatrixXf& x, ForwardObserver* observer) const {
  layer_pass(layer, x, 0, nullptr, nullptr, observer);
}

// One block over rows x (positions pos0 ..). Without a cache the keys and values are those of x alone; with one
// (kc, vc: this layer's [pos0, kv_dim] so far) the new rows are appended and attention sees every cached position.
void LlamaModel::layer_pass(int layer, RowMatrixXf& x, int64_t pos0, RowMatrixXf* kc, RowMatrixXf* vc,
                            ForwardObserver* observer) const {
  if (layer < 0 || layer >= cfg_.n_layers) fail<InvalidArgument>("llama: layer {} outside [0, {})", layer, cfg_.n_layers);
  if (x.cols() != cfg_.dim) fail<ShapeError>("llama layer {}: hidden states have {} columns, the model {}", layer, x.cols(), cfg_.dim);
  const LlamaLayer& L = layers_[static_cast<size_t>(layer)];
  const auto T = x.rows();
  const int head_dim = cfg_.dim / cfg_.n_heads, group = cfg_.n_heads / cfg_.n_kv_heads;
  RowMatrixXf h, q, k, v, att(T, cfg_.dim), g, u;
  const float inv_sqrt = 1.0f / std::sqrt(static_cast<float>(head_dim));
  rmsnorm(h, x, L.attn_norm, cfg_.norm_eps);
  if (observer) observer->on_linear_input(layer, LinearInput::AttnQkv, h);
  q = h * L.wq.transpose();
  k = h * L.wk.transpose();
  v = h * L.wv.transpose();
  rope(q, head_dim, cfg_.rope_theta, pos0);
  rope(k, head_dim, cfg_.rope_theta, pos0);
  if (kc) {
    kc->conservativeResize(pos0 + T, k.cols());
    vc->conservativeResize(pos0 + T, v.cols());
    kc->bottomRows(T) = k;
    vc->bottomRows(T) = v;
  }
  const RowMatrixXf& K = kc ? *kc : k;
  const RowMatrixXf& V = vc ? *vc : v;
  const int64_t base = kc ? 0 : pos0;  // position of K's first row
  std::vector<float> score(static_cast<size_t>(pos0 + T));
  for (int hd = 0; hd < cfg_.n_heads; ++hd) {
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
  if (observer) observer->on_linear_input(layer, LinearInput::AttnOutput, att);
  x += att * L.wo.transpose();
  rmsnorm(h, x, L.ffn_norm, cfg_.norm_eps);
  if (observer) observer->on_linear_input(layer, LinearInput::FfnGateUp, h);
  g = h * L.w_gate.transpose();
  u = h * L.w_up.transpose();
  g = (g.array() / (1.0f + (-g.array()).exp()) * u.array()).matrix();  // silu(gate) * up
  if (observer) observer->on_linear_input(layer, LinearInput::FfnDown, g);
  x += g * L.w_down.transpose();
}

RowMatrixXf LlamaModel::forward(std::span<const int32_t> tokens, ForwardObserver* observer) const {
  RowMatrixXf x = embed(tokens);
  for (int l = 0; l < cfg_.n_layers; ++l) layer_pass(l, x, 0, nullptr, nullptr, observer);
  return logits(x);
}

RowMatrixXf LlamaModel::decode(std::span<const int32_t> tokens, KvCache& cache) const {
  const auto L = static_cast<size_t>(cfg_.n_layers);
  if (cache.length == 0 && cache.k.size() != L) {
    cache.k.assign(L, RowMatrixXf());
    cache.v.assign(L, RowMatrixXf());
  }
  if (cache.k.size() != L || cache.v.size() != L)
    fail<InvalidArgument>("llama decode: the cache holds {} layers, the model {}", cache.k.size(), L);
  RowMatrixXf x = embed(tokens);
  for (int l = 0; l < cfg_.n_layers; ++l) {
    auto& kc = cache.k[static_cast<size_t>(l)];
    auto& vc = cache.v[static_cast<size_t>(l)];
    if (kc.rows() != cache.length || vc.rows() != cache.length)
      fail<InvalidArgument>("llama decode: layer {} caches {} positions, the cache says {}", l, kc.rows(), cache.length);
    layer_pass(l, x, cache.length, &kc, &vc, nullptr);
  }
  cache.length += static_cast<int64_t>(tokens.size());
  return logits(x);
}

RowMatrixXf* LlamaModel::find_weight(const std::string& name) {
  if (name == "output.weight") return tied_output_ ? nullptr : &output_;
  if (name.rfind("blk.", 0) != 0) return nullptr;
  const size_t dot = name.find('.', 4);
  if (dot == std::string::npos) return nullptr;
  int l = -1;
  try {
    size_t used = 0;
    l = std::stoi(name.substr(4, dot - 4), &used);
    if (used != dot - 4) return nullptr;
  } catch (const std::exception&) {
    return nullptr;
  }
  if (l < 0 || l >= cfg_.n_layers) return nullptr;
  LlamaLayer& L = layers_[static_cast<size_t>(l)];
  const std::string rest = name.substr(dot + 1);
  if (rest == "attn_q.weight") return &L.wq;
  if (rest == "attn_k.weight") return &L.wk;
  if (rest == "attn_v.weight") return &L.wv;
  if (rest == "attn_output.weight") return &L.wo;
  if (rest == "ffn_gate.weight") return &L.w_gate;
  if (rest == "ffn_up.weight") return &L.w_up;
  if (rest == "ffn_down.weight") return &L.w_down;
  return nullptr;
}

const RowMatrixXf& LlamaModel::weight(const std::string& name) const {
  const RowMatrixXf* w = const_cast<LlamaModel*>(this)->find_weight(name);
  if (!w) fail<InvalidArgument>("llama: '{}' is not a linear weight of this model", name);
  return *w;
}

void LlamaModel::set_weight(const std::string& name, const RowMatrixXf& w) {
  RowMatrixXf* p = find_weight(name);
  if (!p) fail<InvalidArgument>("llama: '{}' is not a linear weight of this model", name);
  if (w.rows() != p->rows() || w.cols() != p->cols())
    fail<ShapeError>("llama: '{}' is [{}, {}], the new value [{}, {}]", name, p->rows(), p->cols(), w.rows(), w.cols());
  if (!w.allFinite()) fail<NumericError>("llama: the new value of '{}' holds NaN or Inf", name);
  *p = w;
}

namespace {

struct ChunkPlan {
  int context, first, chunks;
};

ChunkPlan plan(std::span<const int32_t> tokens, const PerplexityOptions& o) {
  if (o.context < 2) fail<InvalidArgument>("perplexity: context must be >= 2, got {}", o.context);
  const int first = o.first < 0 ? o.context / 2 : o.first;
  if (first > o.context - 2) fail<InvalidArgument>("perplexity: first scored position {} leaves nothing to score in a context of {}", first, o.context);
  int chunks = static_cast<int>(tokens.size() / static_cast<size_t>(o.context));
  if (o.max_chunks > 0) chunks = std::min(chunks, o.max_chunks);
  if (chunks == 0) fail<InvalidArgument>("perplexity: {} tokens do not fill one context of {}", tokens.size(), o.context);
  return {o.context, first, chunks};
}

std::vector<int32_t> chunk_tokens(std::span<const int32_t> tokens, const ChunkPlan& p, int c, int bos) {
  std::vector<int32_t> t(tokens.begin() + static_cast<ptrdiff_t>(c) * p.context,
                         tokens.begin() + static_cast<ptrdiff_t>(c + 1) * p.context);
  if (bos >= 0) t[0] = bos;
  return t;
}

}  // namespace

PerplexityResult perplexity(const LlamaModel& m, std::span<const int32_t> tokens, const PerplexityOptions& o) {
  return compare(m, m, tokens, o).base;
}

CompareResult compare(const LlamaModel& base, const LlamaModel& cand, std::span<const int32_t> tokens,
                      const PerplexityOptions& o) {
  if (base.config().vocab != cand.config().vocab)
    fail<ShapeError>("compare: vocabularies differ ({} vs {})", base.config().vocab, cand.config().vocab);
  const ChunkPlan p = plan(tokens, o);
  const bool same = &base == &cand;
  const int V = base.config().vocab;
  std::vector<double> nll_b(static_cast<size_t>(p.chunks)), nll_c(static_cast<size_t>(p.chunks)),
      kld(static_cast<size_t>(p.chunks)), agree(static_cast<size_t>(p.chunks));
  const int threads = resolve_threads(o.threads);
  // Chunks are independent; errors are collected and rethrown outside the parallel region.
  std::string error;
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int c = 0; c < p.chunks; ++c) {
    try {
      const std::vector<int32_t> t = chunk_tokens(tokens, p, c, o.bos);
      const RowMatrixXf lb = base.forward(t);
      const RowMatrixXf lc = same ? RowMatrixXf() : cand.forward(t);
      double sb = 0, sc = 0, sk = 0, sa = 0;
      for (int j = p.first; j <= p.context - 2; ++j) {
        const int next = t[static_cast<size_t>(j + 1)];
        const double zb = log_sum_exp(lb.row(j).data(), V);
        sb += zb - lb(j, next);
        if (same) continue;
        const double zc = log_sum_exp(lc.row(j).data(), V);
        sc += zc - lc(j, next);
        double k = 0;
        for (int i = 0; i < V; ++i) {
          const double lpb = lb(j, i) - zb, lpc = lc(j, i) - zc;
          k += std::exp(lpb) * (lpb - lpc);
        }
        sk += k;
        Eigen::Index ab, ac;
        lb.row(j).maxCoeff(&ab);
        lc.row(j).maxCoeff(&ac);
        sa += ab == ac ? 1.0 : 0.0;
      }
      nll_b[static_cast<size_t>(c)] = sb;
      nll_c[static_cast<size_t>(c)] = same ? sb : sc;
      kld[static_cast<size_t>(c)] = sk;
      agree[static_cast<size_t>(c)] = same ? p.context - 1 - p.first : sa;
    } catch (const std::exception& e) {
#pragma omp critical
      if (error.empty()) error = e.what();
    }
  }
  if (!error.empty()) throw InvalidArgument(error);
  const int64_t n = static_cast<int64_t>(p.chunks) * (p.context - 1 - p.first);
  auto total = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s;
  };
  CompareResult r;
  r.base.nll = total(nll_b) / static_cast<double>(n);
  r.base.ppl = std::exp(r.base.nll);
  r.base.scored = n;
  r.base.chunks = p.chunks;
  r.candidate = r.base;
  r.candidate.nll = total(nll_c) / static_cast<double>(n);
  r.candidate.ppl = std::exp(r.candidate.nll);
  r.kld = total(kld) / static_cast<double>(n);
  r.top1_agree = total(agree) / static_cast<double>(n);
  return r;
}

std::vector<int32_t> sample(const LlamaModel& m, const SampleOptions& o) {
  if (o.samples <= 0 || o.length <= 0)
    fail<InvalidArgument>("sample: {} sequences of {} tokens is nothing to sample", o.samples, o.length);
  if (!(o.temperature > 0.0f) || !std::isfinite(o.temperature))
    fail<InvalidArgument>("sample: temperature must be positive, got {}", o.temperature);
  const int V = m.config().vocab;
  if (o.bos < 0 || o.bos >= V) fail<InvalidArgument>("sample: BOS id {} is outside the vocabulary of {}", o.bos, V);
  std::vector<int32_t> out(static_cast<size_t>(o.samples) * static_cast<size_t>(o.length));
  const int threads = resolve_threads(o.threads);
  std::string error;
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int s = 0; s < o.samples; ++s) {
    try {
      // splitmix64 of (seed, s): one independent generator per sequence
      uint64_t state = o.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(s) + 1;
      auto next = [&state] {
        uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
      };
      int32_t* seq = out.data() + static_cast<size_t>(s) * static_cast<size_t>(o.length);
      seq[0] = o.bos;
      KvCache cache;
      std::vector<double> p(static_cast<size_t>(V));
      for (int t = 1; t < o.length; ++t) {
        const RowMatrixXf z = m.decode(std::span<const int32_t>(seq + t - 1, 1), cache);
        const float mx = z.row(0).maxCoeff();
        double total = 0;
        for (int i = 0; i < V; ++i) total += (p[static_cast<size_t>(i)] = std::exp(static_cast<double>(z(0, i) - mx) / o.temperature));
        const double u = static_cast<double>(next() >> 11) * 0x1.0p-53 * total;
        double c = 0;
        int pick = V - 1;
        for (int i = 0; i < V; ++i) {
          c += p[static_cast<size_t>(i)];
          if (u < c) {
            pick = i;
            break;
          }
        }
        seq[t] = pick;
      }
    } catch (const std::exception& e) {
#pragma omp critical
      if (error.empty()) error = e.what();
    }
  }
  if (!error.empty()) throw InvalidArgument(error);
  return out;
}

void write_tokens(const std::filesystem::path& path, std::span<const int32_t> tokens) {
  util::AtomicFile f(path);
  f.write(tokens.data(), tokens.size() * sizeof(int32_t));  // little-endian hosts only (as read_tokens)
  f.commit();
}

std::vector<int32_t> read_tokens(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail<IoError>("{}: cannot open token file", path.string());
  const auto size = static_cast<size_t>(in.tellg());
  if (size % 4 != 0) fail<FormatError>("{}: {} bytes is not a whole number of int32 token ids", path.string(), size);
  std::vector<int32_t> t(size / 4);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(t.data()), static_cast<std::streamsize>(size));
  if (!in) fail<IoError>("{}: short read", path.string());
  return t;
}

}  // namespace qk::model
