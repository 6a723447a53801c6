// The same input gives the same bytes on any thread count: calibrated GPTQ (with --act-order) and RTN with an
// importance matrix from --calib-generate, AWQ with its scale search, at 1, 2 and 3 threads (--threads and
// OMP_NUM_THREADS), and matrix-mode GPTQ. The calibration set (20 sequences) is not a multiple of the fixed batch
// of 16.
#include "qk/io/npy.hpp"
#include "tiny_model.hpp"

namespace qk::test {
namespace {

using Determinism = ScratchTest;

struct Case {
  const char* name;
  const char* args;
  const char* ext;  // "" for a checkpoint directory
};

class CalibratedDeterminism : public Determinism, public ::testing::WithParamInterface<Case> {};

TEST_P(CalibratedDeterminism, SameBytesOnOneTwoAndThreeThreads) {
  const Case& c = GetParam();
  const fs::path m = dir_ / "m.gguf";
  TinyModel o;
  o.blocks = 2;
  o.hidden = 256;  // ffn_gate/up rows of 256: integer-grid GPTQ splits rows over threads; ffn_down's Hessian is big
                   // enough for the threaded rank-k update
  write_tiny_model(m, o);
  std::vector<char> first;
  for (const int t : {1, 2, 3}) {
    const fs::path out = dir_ / fmt::format("{}-{}{}", c.name, t, c.ext);
    const auto r = qtool(fmt::format("quantize {} -o {} {} --calib-generate --calib-samples 20 -q --threads {}", q(m),
                                     q(out), c.args, t),
                         fmt::format("OMP_NUM_THREADS={}", t));
    ASSERT_EQ(r.code, 0) << c.name << " threads " << t << ": " << r.err;
    const auto bytes = read_bytes(*c.ext ? out : out / "model.safetensors");
    ASSERT_FALSE(bytes.empty());
    if (first.empty()) first = bytes;
    else EXPECT_TRUE(bytes == first) << c.name << ": " << t << " threads give other bytes than 1";
  }
}

// 20 sequences: one full batch of 16 and a partial one
INSTANTIATE_TEST_SUITE_P(Methods, CalibratedDeterminism,
                         ::testing::Values(Case{"gptq_act_order", "--type q8_0 --method gptq --act-order", ".gguf"},
                                           Case{"gptq_int", "--type int4-g32 --method gptq --act-order", ""},
                                           Case{"rtn_imatrix", "--type q4_0 --method rtn", ".gguf"},
                                           Case{"awq_scales", "--type q4_0 --method awq --awq-scales", ".gguf"}),
                         [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

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
