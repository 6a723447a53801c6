#pragma once
// Helpers of the reliability tests: a scratch directory, qtool runs inside it, and a tiny Llama GGUF written by the
// test itself (one block, rows of 64, so q4_0/q8_0 blocks fit; ffn_down's rows are 128) with hooks to plant
// hostile values (a huge weight, a NaN in a norm, a negative norm epsilon). tests/pipeline/tiny_llama.hpp is the
// plain generator of the pipeline tests; this one is separate for the edit hook and the qtool scratch fixture.
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <fmt/format.h>

#include "qk/io/gguf.hpp"
#include "qk/io/tensor_file.hpp"
#include "test_util.hpp"

#ifndef QK_QTOOL
#define QK_QTOOL ""
#endif

namespace qk::test {

namespace fs = std::filesystem;

struct TinyModel {
  int dim = 64, hidden = 128, vocab = 64, blocks = 1, heads = 4, context = 32;
  float eps = 1e-5f;
  // called on every tensor before it is written: plant values here
  std::function<void(const std::string& name, io::RowMatrixXf& m)> edit;
};

inline void write_tiny_model(const fs::path& p, const TinyModel& o = {}) {
  std::vector<std::pair<std::string, io::RowMatrixXf>> t;
  uint64_t seed = 1;
  auto add = [&](const std::string& n, int r, int c, float s, bool norm = false) {
    io::RowMatrixXf m = norm ? io::RowMatrixXf(uniform(1, c, seed++, 0.8f, 1.2f)) : io::RowMatrixXf(gaussian(r, c, seed++, s));
    t.emplace_back(n, std::move(m));
  };
  add("token_embd.weight", o.vocab, o.dim, 1.0f);
  for (int b = 0; b < o.blocks; ++b) {
    const std::string k = fmt::format("blk.{}.", b);
    add(k + "attn_norm.weight", 1, o.dim, 0, true);
    add(k + "attn_q.weight", o.dim, o.dim, 0.1f);
    add(k + "attn_k.weight", o.dim, o.dim, 0.1f);
    add(k + "attn_v.weight", o.dim, o.dim, 0.1f);
    add(k + "attn_output.weight", o.dim, o.dim, 0.1f);
    add(k + "ffn_norm.weight", 1, o.dim, 0, true);
    add(k + "ffn_gate.weight", o.hidden, o.dim, 0.1f);
    add(k + "ffn_up.weight", o.hidden, o.dim, 0.1f);
    add(k + "ffn_down.weight", o.dim, o.hidden, 0.1f);
  }
  add("output_norm.weight", 1, o.dim, 0, true);
  add("output.weight", o.vocab, o.dim, 0.1f);
  if (o.edit)
    for (auto& [n, m] : t) o.edit(n, m);
  io::GgufWriter g(p);
  g.set("general.architecture", std::string("llama"));
  g.set("llama.embedding_length", static_cast<uint32_t>(o.dim));
  g.set("llama.feed_forward_length", static_cast<uint32_t>(o.hidden));
  g.set("llama.block_count", static_cast<uint32_t>(o.blocks));
  g.set("llama.attention.head_count", static_cast<uint32_t>(o.heads));
  g.set("llama.attention.head_count_kv", static_cast<uint32_t>(o.heads));
  g.set("llama.context_length", static_cast<uint32_t>(o.context));
  g.set("llama.attention.layer_norm_rms_epsilon", o.eps);
  for (const auto& [n, m] : t)
    g.add_tensor(n, 0, m.rows() == 1 ? std::vector<int64_t>{m.cols()} : std::vector<int64_t>{m.rows(), m.cols()});
  for (const auto& [n, m] : t)
    g.write_tensor(n, {reinterpret_cast<const std::byte*>(m.data()), static_cast<size_t>(m.size()) * 4});
  g.commit();
}

// Token ids 1..vocab-1 repeated, as a little-endian int32 file.
inline void write_token_file(const fs::path& p, size_t n, int vocab = 64, int32_t offset = 0) {
  std::vector<int32_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>(1 + (i * 7) % static_cast<size_t>(vocab - 1)) + offset;
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(ids.data()), static_cast<std::streamsize>(ids.size() * 4));
}

// A fresh directory per test, removed afterwards; qtool runs with it as the place for its captured output.
class ScratchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string(QK_QTOOL).empty()) GTEST_SKIP() << "qtool is not built in this configuration";
    std::random_device rd;
    dir_ = fs::temp_directory_path() / fmt::format("qk-rel-{}-{:08x}", ::getpid(), rd());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  RunResult qtool(const std::string& args, const std::string& env = "") {
    return run_program(QK_QTOOL, args, dir_, env);
  }
  static std::string q(const fs::path& p) { return fmt::format("\"{}\"", p.string()); }
  // names in the scratch directory (or in `d`)
  std::vector<std::string> entries(const fs::path& d = {}) const {
    std::vector<std::string> v;
    for (const auto& e : fs::directory_iterator(d.empty() ? dir_ : d)) v.push_back(e.path().filename().string());
    std::sort(v.begin(), v.end());
    return v;
  }
  fs::path dir_;
};

}  // namespace qk::test
