// The same input gives the same bytes on any thread count: calibrated GPTQ (with --act-order) and RTN with an
// importance matrix from --calib-generate, at 1, 2 and 3 threads (--threads and OMP_NUM_THREADS), and matrix-mode
// GPTQ. The calibration set (40 sequences) is not a multiple of the fixed batch of 16.
#include "qk/io/npy.hpp"
#include "tiny_model.hpp"

namespace qk::test {
namespace {

using Determinism = ScratchTest;

TEST_F(Determinism, CalibratedRunsGiveTheSameBytesOnOneTwoAndThreeThreads) {
  const fs::path m = dir_ / "m.gguf";
  TinyLlama o;
  o.blocks = 2;
  o.hidden = 256;  // ffn_gate/up rows of 256: integer-grid GPTQ splits rows over threads; ffn_down's Hessian is big
                   // enough for the threaded rank-k update
  write_tiny_llama(m, o);
  struct Case {
    const char* name;
    const char* args;
    const char* ext;  // "" for a checkpoint directory
  };
  const Case cases[] = {
      {"gptq-act-order", "--type q8_0 --method gptq --act-order --calib-generate --calib-samples 40", ".gguf"},
      {"gptq-int", "--type int4-g32 --method gptq --act-order --calib-generate --calib-samples 40", ""},
      {"rtn-imatrix", "--type q4_0 --method rtn --calib-generate --calib-samples 40", ".gguf"},
      {"awq", "--type q4_0 --method awq --awq-scales --calib-generate --calib-samples 40", ".gguf"},
  };
  for (const auto& c : cases) {
    std::vector<char> first;
    for (const int t : {1, 2, 3}) {
      const fs::path out = dir_ / fmt::format("{}-{}{}", c.name, t, c.ext);
      const auto r = qtool(fmt::format("quantize {} -o {} {} -q --threads {}", q(m), q(out), c.args, t),
                           fmt::format("OMP_NUM_THREADS={}", t));
      ASSERT_EQ(r.code, 0) << c.name << " threads " << t << ": " << r.err;
      const auto bytes = read_bytes(*c.ext ? out : out / "model.safetensors");
      ASSERT_FALSE(bytes.empty());
      if (first.empty()) first = bytes;
      else EXPECT_TRUE(bytes == first) << c.name << ": " << t << " threads give other bytes than 1";
    }
  }
}

TEST_F(Determinism, MatrixGptqGivesTheSameBytesOnOneTwoAndThreeThreads) {
  const fs::path w = dir_ / "w.npy", x = dir_ / "x.npy";
  io::write_npy(w, io::RowMatrixXf(gaussian(200, 160, 1)));
  io::write_npy(x, io::RowMatrixXf(gaussian(300, 160, 2)));
  std::vector<char> first;
  for (const int t : {1, 2, 3}) {
    const fs::path out = dir_ / fmt::format("o{}.safetensors", t);
    const auto r = qtool(fmt::format("quantize {} --method gptq --bits 4 --group 32 --act-order --calib {} -o {} -q "
                                     "--threads {}",
                                     q(w), q(x), q(out), t),
                         fmt::format("OMP_NUM_THREADS={}", t));
    ASSERT_EQ(r.code, 0) << r.err;
    const auto bytes = read_bytes(out);
    if (first.empty()) first = bytes;
    else EXPECT_TRUE(bytes == first) << t << " threads give other bytes than 1";
  }
}

}  // namespace
}  // namespace qk::test
