// Writes a synthetic Llama GGUF of any shape: random weights (N(0, 0.02), norms N(1, 0.05)), F32 or F16, llama.*
// metadata, and a stand-in SentencePiece vocabulary (control tokens, the 256 byte tokens, then made-up pieces) so
// that llama.cpp loads and runs it. For measuring qk on model sizes the bundled models do not reach (peak memory of
// the calibration pipeline, runtime speed against llama.cpp): the weights carry no knowledge, the shapes are real.
//
//   qk_synthetic_llama OUT.gguf [--dim 2048] [--ffn 5632] [--blocks 8] [--heads 16] [--kv-heads 4] [--vocab 32000]
//                      [--ctx 2048] [--f16] [--seed 1]
// TinyLlama 1.1B: --dim 2048 --ffn 5632 --blocks 22 --heads 32 --kv-heads 4 --vocab 32000.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <qk/core/half.hpp>
#include <qk/io/gguf.hpp>

namespace {

struct Shape {
  int64_t dim = 2048, ffn = 5632, blocks = 8, heads = 16, kv_heads = 4, vocab = 32000, ctx = 2048;
  bool f16 = false;
  uint64_t seed = 1;
};

std::shared_ptr<qk::io::MetaArray> array(qk::io::GgufType t, std::vector<qk::io::MetaValue> v) {
  auto a = std::make_shared<qk::io::MetaArray>();
  a->element_type = static_cast<int>(t);
  a->values = std::move(v);
  return a;
}

void vocabulary(qk::io::GgufWriter& w, int64_t n) {
  std::vector<qk::io::MetaValue> tokens, scores, types;
  auto add = [&](std::string t, float score, int32_t type) {
    tokens.emplace_back(std::move(t));
    scores.emplace_back(score);
    types.emplace_back(type);
  };
  add("<unk>", 0.0f, 2);  // llama_token_type: 1 normal, 2 unknown, 3 control, 6 byte
  add("<s>", 0.0f, 3);
  add("</s>", 0.0f, 3);
  for (int b = 0; b < 256; ++b) {
    char s[8];
    std::snprintf(s, sizeof s, "<0x%02X>", b);
    add(s, 0.0f, 6);
  }
  const std::string letters = "abcdefghijklmnopqrstuvwxyz";
  for (int64_t i = static_cast<int64_t>(tokens.size()); i < n; ++i) {
    std::string piece = "\xe2\x96\x81";  // "▁"
    for (int64_t k = i; k > 0; k /= 26) piece += letters[static_cast<size_t>(k % 26)];
    add(piece, -static_cast<float>(i), 1);
  }
  w.set("tokenizer.ggml.model", std::string("llama"));
  w.set("tokenizer.ggml.tokens", array(qk::io::GgufType::String, std::move(tokens)));
  w.set("tokenizer.ggml.scores", array(qk::io::GgufType::F32, std::move(scores)));
  w.set("tokenizer.ggml.token_type", array(qk::io::GgufType::I32, std::move(types)));
  w.set("tokenizer.ggml.bos_token_id", uint32_t{1});
  w.set("tokenizer.ggml.eos_token_id", uint32_t{2});
  w.set("tokenizer.ggml.unknown_token_id", uint32_t{0});
}

int usage() {
  std::fprintf(stderr, "usage: qk_synthetic_llama OUT.gguf [--dim N] [--ffn N] [--blocks N] [--heads N] [--kv-heads N] "
                       "[--vocab N] [--ctx N] [--f16] [--seed N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  Shape s;
  const std::string out = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--f16") {
      s.f16 = true;
      continue;
    }
    if (i + 1 >= argc) return usage();
    const long long v = std::atoll(argv[++i]);
    if (v <= 0) return usage();
    if (a == "--dim") s.dim = v;
    else if (a == "--ffn") s.ffn = v;
    else if (a == "--blocks") s.blocks = v;
    else if (a == "--heads") s.heads = v;
    else if (a == "--kv-heads") s.kv_heads = v;
    else if (a == "--vocab") s.vocab = v;
    else if (a == "--ctx") s.ctx = v;
    else if (a == "--seed") s.seed = static_cast<uint64_t>(v);
    else return usage();
  }
  if (s.dim % s.heads || s.heads % s.kv_heads || s.vocab < 300) return usage();
  try {
    qk::io::GgufWriter w(out);
    w.set("general.architecture", std::string("llama"));
    w.set("general.name", std::string("synthetic"));
    w.set("llama.context_length", static_cast<uint32_t>(s.ctx));
    w.set("llama.embedding_length", static_cast<uint32_t>(s.dim));
    w.set("llama.feed_forward_length", static_cast<uint32_t>(s.ffn));
    w.set("llama.block_count", static_cast<uint32_t>(s.blocks));
    w.set("llama.attention.head_count", static_cast<uint32_t>(s.heads));
    w.set("llama.attention.head_count_kv", static_cast<uint32_t>(s.kv_heads));
    w.set("llama.rope.dimension_count", static_cast<uint32_t>(s.dim / s.heads));
    w.set("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    w.set("general.file_type", uint32_t{s.f16 ? 1u : 0u});
    vocabulary(w, s.vocab);
    const int64_t kv = s.dim / s.heads * s.kv_heads;
    struct T {
      std::string name;
      std::vector<int64_t> shape;
      bool norm;
    };
    std::vector<T> ts = {{"token_embd.weight", {s.vocab, s.dim}, false}};
    for (int64_t b = 0; b < s.blocks; ++b) {
      const std::string p = "blk." + std::to_string(b) + ".";
      ts.push_back({p + "attn_norm.weight", {s.dim}, true});
      ts.push_back({p + "attn_q.weight", {s.dim, s.dim}, false});
      ts.push_back({p + "attn_k.weight", {kv, s.dim}, false});
      ts.push_back({p + "attn_v.weight", {kv, s.dim}, false});
      ts.push_back({p + "attn_output.weight", {s.dim, s.dim}, false});
      ts.push_back({p + "ffn_norm.weight", {s.dim}, true});
      ts.push_back({p + "ffn_gate.weight", {s.ffn, s.dim}, false});
      ts.push_back({p + "ffn_up.weight", {s.ffn, s.dim}, false});
      ts.push_back({p + "ffn_down.weight", {s.dim, s.ffn}, false});
    }
    ts.push_back({"output_norm.weight", {s.dim}, true});
    ts.push_back({"output.weight", {s.vocab, s.dim}, false});
    for (const auto& t : ts) w.add_tensor(t.name, t.norm || !s.f16 ? 0 : 1, t.shape);
    std::mt19937_64 rng(s.seed);
    std::vector<float> f;
    std::vector<uint16_t> h;
    for (const auto& t : ts) {
      int64_t n = 1;
      for (int64_t d : t.shape) n *= d;
      std::normal_distribution<float> dist(t.norm ? 1.0f : 0.0f, t.norm ? 0.05f : 0.02f);
      f.resize(static_cast<size_t>(n));
      for (auto& x : f) x = dist(rng);
      if (t.norm || !s.f16) {
        w.write_tensor(t.name, std::as_bytes(std::span<const float>(f)));
      } else {
        h.resize(f.size());
        for (size_t i = 0; i < f.size(); ++i) h[i] = qk::fp32_to_fp16(f[i]);
        w.write_tensor(t.name, std::as_bytes(std::span<const uint16_t>(h)));
      }
    }
    w.commit();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qk_synthetic_llama: %s\n", e.what());
    return 1;
  }
  return 0;
}
