#pragma once
// Model-level quality for `qtool eval --tokens / --text`: both files are loaded as Llama models (any ggml types,
// dequantized at load) and scored on the same token chunks as llama.cpp's perplexity tool does; a text is
// tokenized with A's vocabulary (qk/model/text.hpp).
#include <algorithm>
#include <string>

#include <fmt/format.h>

#include "output.hpp"
#include "qk/model/llama_model.hpp"
#include "qk/model/token_file.hpp"
#include "qk/model/perplexity.hpp"
#include "qk/model/text.hpp"
#include "qk/model/tokenizer.hpp"

namespace qtool {

struct ModelQualityOptions {
  std::string tokens;
  std::string text;
  int context = 128;
  int chunks = 0;
  int threads = 0;
};

inline qk::model::CompareResult model_quality(const qk::io::TensorFile& a, const qk::io::TensorFile& b,
                                             const ModelQualityOptions& o) {
  const auto base = qk::model::LlamaModel::load(a);
  const auto cand = qk::model::LlamaModel::load(b);
  qk::model::PerplexityOptions p;
  p.context = o.context;
  p.max_chunks = o.chunks;
  p.threads = o.threads;
  if (!o.text.empty()) return qk::model::compare_on_text(base, cand, qk::model::Tokenizer::from_gguf(a), o.text, p);
  const auto tokens = qk::model::read_tokens(o.tokens, base.config().vocab, static_cast<size_t>(std::max(o.context, 0)),
                                             fmt::format("one context of {} (--ctx)", o.context));
  return qk::model::compare(base, cand, tokens, p);
}

inline void model_quality_json(Json& j, const qk::model::CompareResult& r) {
  j.key("model").obj();
  j.kv("ppl_a", r.base.ppl);
  j.kv("ppl_b", r.candidate.ppl);
  j.kv("ppl_ratio", r.candidate.ppl / r.base.ppl);
  j.kv("kld", r.kld);
  j.kv("top1_agreement", r.top1_agree);
  j.kv("chunks", r.base.chunks);
  j.kv("scored", static_cast<long long>(r.base.scored));
  j.end();
}

inline void model_quality_text(const qk::model::CompareResult& r, const std::string& a, const std::string& b) {
  fmt::print("\nmodel quality on {} chunks ({} predictions):\n", r.base.chunks, r.base.scored);
  Table t({"model", "perplexity", "vs A", "KL(A||B)", "top-1 agree"});
  t.add({a, fmt::format("{:.4f}", r.base.ppl), "", "", ""});
  t.add({b, fmt::format("{:.4f}", r.candidate.ppl), fmt::format("{:+.2f}%", 100.0 * (r.candidate.ppl / r.base.ppl - 1.0)),
         fmt::format("{:.5f}", r.kld), fmt::format("{:.2f}%", 100.0 * r.top1_agree)});
  t.print();
}

}  // namespace qtool
