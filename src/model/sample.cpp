// Ancestral sampling from a Llama model (qk/model/sample.hpp): every sequence advances one token per step, the
// steps batched over the sequences (one pass over each block's weights per step), with each sequence's own
// generator, so the result depends neither on the thread count nor on how many sequences run together.
#include "qk/model/sample.hpp"

#include <cmath>
#include <string>
#include <vector>

#include "qk/core/error.hpp"
#include "qk/core/threads.hpp"
#include "qk/formats/tensor_values.hpp"

namespace qk::model {
namespace {

// Where the sampler finds the model: in memory, or block by block in a file.
class Source {
 public:
  virtual ~Source() = default;
  virtual RowMatrixXf embed(std::span<const int32_t> tokens) = 0;
  virtual LayerView acquire(int layer) = 0;
  virtual void release() = 0;
  virtual RowMatrixXf logits(const RowMatrixXf& x, int threads) = 0;
};

class InMemory final : public Source {
 public:
  explicit InMemory(const LlamaModel& m) : m_(m) {}
  RowMatrixXf embed(std::span<const int32_t> tokens) override { return m_.embed(tokens); }
  LayerView acquire(int layer) override { return view(m_.layer(layer)); }
  void release() override {}
  RowMatrixXf logits(const RowMatrixXf& x, int threads) override {
    return output_logits(m_.config(), x, m_.output_norm(), m_.output(), m_.output_rounding(), threads);
  }

 private:
  const LlamaModel& m_;
};

// One block's weights at a time (LayerLoader: viewed in the mapping, or decoded), given back after each step; the
// output projection and the final norm are held for the whole run.
class Streamed final : public Source {
 public:
  Streamed(const io::TensorFile& f, const LlamaConfig& cfg) : f_(f), cfg_(cfg), loader_(f, cfg) {
    const std::string out = cfg.tied_output ? "token_embd.weight" : "output.weight";
    const io::TensorInfo& t = f.tensor(out);
    if (t.dtype == io::DType::F32 && t.numel() == static_cast<int64_t>(cfg.vocab) * cfg.dim &&
        reinterpret_cast<uintptr_t>(f.bytes(t).data()) % alignof(float) == 0) {
      output_ = reinterpret_cast<const float*>(f.bytes(t).data());
    } else {
      owned_output_ = formats::read_matrix(f, t);
      if (owned_output_.rows() != cfg.vocab || owned_output_.cols() != cfg.dim)
        fail<FormatError>("{}: tensor '{}' is not [{}, {}]", f.path().string(), out, cfg.vocab, cfg.dim);
      output_ = owned_output_.data();
    }
    norm_ = formats::read_matrix(f, f.tensor("output_norm.weight"));
    if (norm_.size() != cfg.dim) fail<FormatError>("{}: tensor 'output_norm.weight' has {} values", f.path().string(), norm_.size());
  }
  ~Streamed() override {
    if (owned_output_.size() == 0) f_.release(f_.tensor(cfg_.tied_output ? "token_embd.weight" : "output.weight"));
  }
  RowMatrixXf embed(std::span<const int32_t> tokens) override { return model::embed(f_, cfg_, tokens); }
  LayerView acquire(int layer) override { return loader_.acquire(layer); }
  void release() override { loader_.release(); }
  RowMatrixXf logits(const RowMatrixXf& x, int threads) override {
    return output_logits(cfg_, x, norm_.data(), output_, InputRounding::None, threads);
  }

 private:
  const io::TensorFile& f_;
  LlamaConfig cfg_;
  LayerLoader loader_;
  const float* output_ = nullptr;
  RowMatrixXf owned_output_, norm_;
};

std::vector<int32_t> run(const LlamaConfig& cfg, Source& src, const SampleOptions& o) {
  if (o.samples <= 0 || o.length <= 0)
    fail<InvalidArgument>("sample: {} sequences of {} tokens is nothing to sample", o.samples, o.length);
  if (!(o.temperature > 0.0f) || !std::isfinite(o.temperature))
    fail<InvalidArgument>("sample: temperature must be positive, got {}", o.temperature);
  const int V = cfg.vocab, S = o.samples;
  if (o.bos < 0 || o.bos >= V) fail<InvalidArgument>("sample: BOS id {} is outside the vocabulary of {}", o.bos, V);
  const int threads = resolve_threads(o.threads);
  std::vector<int32_t> out(static_cast<size_t>(S) * static_cast<size_t>(o.length));
  // splitmix64 of (seed, s): one independent generator per sequence
  std::vector<uint64_t> state(static_cast<size_t>(S));
  for (int s = 0; s < S; ++s) {
    state[static_cast<size_t>(s)] = o.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(s) + 1;
    out[static_cast<size_t>(s) * static_cast<size_t>(o.length)] = o.bos;
  }
  auto next = [&state](int s) {
    uint64_t z = (state[static_cast<size_t>(s)] += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  };
  // keys and values per layer, per sequence
  std::vector<std::vector<RowMatrixXf>> kc(static_cast<size_t>(cfg.n_layers), std::vector<RowMatrixXf>(static_cast<size_t>(S))),
      vc = kc;
  std::vector<double> p(static_cast<size_t>(V));
  std::vector<int32_t> last(static_cast<size_t>(S));
  for (int t = 1; t < o.length; ++t) {
    for (int s = 0; s < S; ++s) last[static_cast<size_t>(s)] = out[static_cast<size_t>(s) * o.length + t - 1];
    RowMatrixXf x = src.embed(last);
    for (int l = 0; l < cfg.n_layers; ++l) {
      const LayerView w = src.acquire(l);
      layer_step(cfg, w, x, t - 1, kc[static_cast<size_t>(l)], vc[static_cast<size_t>(l)], threads);
      src.release();
    }
    const RowMatrixXf z = src.logits(x, threads);
    for (int s = 0; s < S; ++s) {
      const float mx = z.row(s).maxCoeff();
      double total = 0;
      for (int i = 0; i < V; ++i)
        total += (p[static_cast<size_t>(i)] = std::exp(static_cast<double>(z(s, i) - mx) / o.temperature));
      const double u = static_cast<double>(next(s) >> 11) * 0x1.0p-53 * total;
      double c = 0;
      int pick = V - 1;
      for (int i = 0; i < V; ++i) {
        c += p[static_cast<size_t>(i)];
        if (u < c) {
          pick = i;
          break;
        }
      }
      out[static_cast<size_t>(s) * o.length + t] = pick;
    }
  }
  return out;
}

}  // namespace

std::vector<int32_t> sample(const LlamaModel& m, const SampleOptions& o) {
  InMemory src(m);
  return run(m.config(), src, o);
}

std::vector<int32_t> sample(const io::TensorFile& file, const SampleOptions& o) {
  const LlamaConfig cfg = read_llama_config(file);
  Streamed src(file, cfg);
  return run(cfg, src, o);
}

}  // namespace qk::model
