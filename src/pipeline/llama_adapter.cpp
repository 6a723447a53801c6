// The Llama architecture adapter (qk/pipeline/architecture.hpp) over the model floor's block functions.
#include <regex>
#include <variant>

#include "qk/core/error.hpp"
#include "qk/io/gguf.hpp"
#include "qk/model/llama_config.hpp"
#include "qk/model/llama_layer.hpp"
#include "qk/model/sample.hpp"
#include "qk/pipeline/architecture.hpp"

namespace qk::pipeline {
namespace {

using model::LinearInput;

int group_index(LinearInput in) {
  for (int i = 0; i < 4; ++i)
    if (model::kLinearInputs[i] == in) return i;
  return -1;
}

class Capture final : public model::ForwardObserver {
 public:
  Capture(const GroupCapture& fn, int stop) : fn_(fn), stop_(stop) {}
  void on_linear_input(int, LinearInput in, const model::RowMatrixXf& x) override {
    if (fn_) fn_(group_index(in), x);
  }
  bool stop_after(LinearInput in) const override { return stop_ >= 0 && group_index(in) >= stop_; }

 private:
  const GroupCapture& fn_;
  int stop_;
};

class LlamaAdapter final : public ArchitectureAdapter {
 public:
  explicit LlamaAdapter(const io::TensorFile& f) : file_(f), cfg_(model::read_llama_config(f)) {
    if (const auto* b = io::find_meta(f.metadata(), "tokenizer.ggml.bos_token_id")) {
      if (const auto* u = std::get_if<uint32_t>(b); u && *u < static_cast<uint32_t>(cfg_.vocab)) bos_ = static_cast<int>(*u);
      if (const auto* i = std::get_if<int32_t>(b); i && *i >= 0 && *i < cfg_.vocab) bos_ = *i;
    }
  }
  std::string name() const override { return "llama"; }
  int blocks() const override { return cfg_.n_layers; }
  int vocab() const override { return cfg_.vocab; }
  int context() const override { return cfg_.context; }
  int bos() const override { return bos_; }

  bool is_block_linear(const std::string& n) const override {
    static const std::regex re(R"(blk\.(\d+)\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight)");
    std::smatch m;
    if (!std::regex_match(n, m, re)) return false;
    const auto l = std::stoll(m[1].str());
    return l >= 0 && l < cfg_.n_layers;
  }

  std::vector<LinearGroup> groups(int b) const override {
    std::vector<LinearGroup> g;
    for (const LinearInput in : model::kLinearInputs) {
      LinearGroup grp;
      for (const auto& n : model::linear_names(in)) {
        grp.weights.push_back(model::layer_weight_name(b, n));
        if (!grp.input.empty()) grp.input += '/';
        grp.input += n;
      }
      grp.input += " input";
      const std::string norm = model::norm_name(in);
      if (!norm.empty()) grp.norm = model::layer_weight_name(b, norm);
      g.push_back(std::move(grp));
    }
    return g;
  }

  RowMatrixXf embed(std::span<const int32_t> tokens) const override { return model::embed(file_, cfg_, tokens); }

  void load_block(int b) override {
    release_block();
    layer_ = model::load_layer(file_, cfg_, b);
    block_ = b;
  }
  void release_block() override {
    layer_ = model::LlamaLayer();
    block_ = -1;
  }

  void forward(RowMatrixXf& x, const GroupCapture& capture, int stop_after_group) const override {
    check_loaded();
    Capture cap(capture, stop_after_group);
    model::layer_forward(cfg_, model::view(layer_), block_, x, 0, nullptr, nullptr, &cap);
  }

  const RowMatrixXf& weight(const std::string& name) const override {
    return *const_cast<LlamaAdapter*>(this)->linear(name);
  }
  void set_weight(const std::string& name, const RowMatrixXf& w) override {
    RowMatrixXf* p = linear(name);
    if (w.rows() != p->rows() || w.cols() != p->cols())
      fail<ShapeError>("llama: '{}' is [{}, {}], the new value [{}, {}]", name, p->rows(), p->cols(), w.rows(), w.cols());
    if (!w.allFinite()) fail<NumericError>("llama: the new value of '{}' holds NaN or Inf", name);
    *p = w;
  }
  Eigen::VectorXf norm(const std::string& name) const override { return *const_cast<LlamaAdapter*>(this)->norm_ref(name); }

  std::vector<int32_t> sample(const SampleSpec& spec) override {
    model::SampleOptions so;
    so.samples = spec.samples;
    so.length = spec.length;
    so.seed = spec.seed;
    so.temperature = spec.temperature;
    so.bos = bos_;
    so.threads = spec.threads;
    return model::sample(file_, so);
  }

 private:
  void check_loaded() const {
    if (block_ < 0) fail<InvalidArgument>("llama adapter: no block is loaded");
  }
  // "blk.N.<short>.weight" of the loaded block -> short name
  std::string short_name(const std::string& name) const {
    check_loaded();
    const std::string prefix = "blk." + std::to_string(block_) + ".";
    if (!name.starts_with(prefix) || !name.ends_with(".weight"))
      fail<InvalidArgument>("llama: '{}' is not a weight of the loaded block {}", name, block_);
    return name.substr(prefix.size(), name.size() - prefix.size() - 7);
  }
  RowMatrixXf* linear(const std::string& name) {
    RowMatrixXf* p = model::find_linear(layer_, short_name(name));
    if (!p) fail<InvalidArgument>("llama: '{}' is not a linear weight of block {}", name, block_);
    return p;
  }
  Eigen::VectorXf* norm_ref(const std::string& name) {
    Eigen::VectorXf* p = model::find_norm(layer_, short_name(name));
    if (!p) fail<InvalidArgument>("llama: '{}' is not a norm of block {}", name, block_);
    return p;
  }

  const io::TensorFile& file_;
  model::LlamaConfig cfg_;
  int bos_ = 1;
  model::LlamaLayer layer_;
  int block_ = -1;
};

}  // namespace

std::unique_ptr<ArchitectureAdapter> make_adapter(const io::TensorFile& file) {
  std::string arch;
  if (const auto* a = io::find_meta(file.metadata(), "general.architecture"))
    if (const auto* s = std::get_if<std::string>(a)) arch = *s;
  if (arch == "llama" || (arch.empty() && file.find("token_embd.weight") && file.find("blk.0.attn_q.weight")))
    return std::make_unique<LlamaAdapter>(file);
  return nullptr;
}

}  // namespace qk::pipeline
