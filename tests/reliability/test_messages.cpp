// Messages and exit codes: runtime problems with a file are exit 1 and one line naming the file (and the tensor);
// an exception inside a parallel region reaches the caller as an error, never std::terminate.
#include <limits>

#include "qk/io/npy.hpp"
#include "qk/io/safetensors.hpp"
#include "tiny_model.hpp"

namespace qk::test {
namespace {

using Messages = ScratchTest;

TEST_F(Messages, BadTokenFilesAreExit1NamingTheFileInEvalAndQuantize) {
  const fs::path m = dir_ / "m.gguf";
  write_tiny_model(m);
  const fs::path oov = dir_ / "oov.i32", empty = dir_ / "empty.i32", shrt = dir_ / "short.i32", odd = dir_ / "odd.i32";
  write_token_file(oov, 256, 64, 1000);
  write_token_file(empty, 0);
  write_token_file(shrt, 5);
  { std::ofstream(odd, std::ios::binary) << "abcdefg"; }
  for (const auto& f : {oov, empty, shrt, odd}) {
    const auto e = qtool(fmt::format("eval {} {} --tokens {} --ctx 16", q(m), q(m), q(f)));
    EXPECT_EQ(e.code, 1) << "eval " << f.filename() << ": " << e.err;
    EXPECT_NE(e.err.find(f.filename().string()), std::string::npos) << e.err;
    EXPECT_EQ(std::count(e.err.begin(), e.err.end(), '\n'), 1) << "one line: " << e.err;
    const auto qz = qtool(fmt::format("quantize {} -o {} --type q8_0 --method gptq --calib-tokens {} --calib-ctx 16 -q",
                                      q(m), q(dir_ / "o.gguf"), q(f)));
    EXPECT_EQ(qz.code, 1) << "quantize " << f.filename() << ": " << qz.err;
    EXPECT_NE(qz.err.find(f.filename().string()), std::string::npos) << qz.err;
  }
  EXPECT_FALSE(fs::exists(dir_ / "o.gguf"));
}

TEST_F(Messages, ErrorsNameTheFileAndTensor) {
  // a method's error (GPTQ on a zero Hessian) in model mode names the model file and the tensor
  const fs::path m0 = dir_ / "m0.gguf", acts = dir_ / "acts.safetensors";
  write_tiny_model(m0);
  {
    io::SafetensorsWriter w(acts);
    w.add_tensor("blk.0.attn_q.weight", io::DType::F32, {16, 64});
    const std::vector<float> zeros(16 * 64, 0.0f);
    w.write_tensor(std::as_bytes(std::span<const float>(zeros)));
    w.commit();
  }
  const auto r = qtool(fmt::format("quantize {} -o {} --type q8_0 --method gptq --calib {} -q", q(m0),
                                   q(dir_ / "o.gguf"), q(acts)));
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("m0.gguf: tensor 'blk.0.attn_q.weight'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Hessian is zero"), std::string::npos) << r.err;
  // a block count that does not fit an int is printed as the file holds it
  const fs::path m = dir_ / "m.gguf";
  {
    write_tiny_model(m);
    const auto f = io::TensorFile::open(m);
    io::GgufWriter g(dir_ / "big.gguf");
    g.copy_metadata(f->metadata());
    g.set("llama.block_count", uint32_t{0xffffffffu});
    for (const auto& t : f->tensors()) g.add_tensor(t.name, t.ggml_type, t.shape);
    for (const auto& t : f->tensors()) g.write_tensor(t.name, f->bytes(t));
    g.commit();
  }
  const auto big = qtool(fmt::format("eval {} {} --tokens {}", q(m), q(dir_ / "big.gguf"), q(dir_ / "none.i32")));
  EXPECT_EQ(big.err.find("-2147483648"), std::string::npos) << big.err;
  write_token_file(dir_ / "ids.i32", 64);
  const auto big2 = qtool(fmt::format("eval {} {} --tokens {} --ctx 16", q(m), q(dir_ / "big.gguf"), q(dir_ / "ids.i32")));
  EXPECT_EQ(big2.code, 1) << big2.err;
  EXPECT_NE(big2.err.find("4294967295"), std::string::npos) << big2.err;
  EXPECT_NE(big2.err.find("big.gguf"), std::string::npos) << big2.err;
}

TEST_F(Messages, AnExceptionInsideAParallelRegionIsAnErrorNotAnAbort) {
  // GPTQ with a row of ±1e38: the grid's scales overflow inside GPTQ's parallel region
  io::RowMatrixXf W = gaussian(64, 64, 1);
  for (int c = 0; c < 64; ++c) W(7, c) = c % 2 ? 1e38f : -1e38f;
  const fs::path w = dir_ / "w.npy", x = dir_ / "x.npy";
  io::write_npy(w, W);
  io::write_npy(x, io::RowMatrixXf(gaussian(128, 64, 2)));
  for (const char* t : {"1", "3"}) {
    const auto r = qtool(fmt::format("quantize {} --method gptq --bits 4 --group 32 --calib {} -o {} -q --threads {}", q(w),
                                     q(x), q(dir_ / "o.safetensors"), t));
    EXPECT_EQ(r.code, 1) << "threads " << t << ": " << r.err;
    EXPECT_NE(r.err.find("w.npy"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("non-finite weight"), std::string::npos) << "the weights are finite: " << r.err;
  }
  // the same in model mode, through the calibration run (q8_0 blocks and int4 groups)
  const fs::path m = dir_ / "m.gguf";
  TinyModel o;
  o.edit = [](const std::string& n, io::RowMatrixXf& mm) {
    if (n == "blk.0.attn_v.weight")
      for (int c = 0; c < mm.cols(); ++c) mm(7, c) = c % 2 ? 1e38f : -1e38f;
  };
  write_tiny_model(m, o);
  for (const char* type : {"q8_0", "int4-g32"}) {
    const fs::path out = dir_ / (std::string(type) == "q8_0" ? "o.gguf" : "o");
    const auto r = qtool(fmt::format("quantize {} -o {} --type {} --method gptq --calib-generate --calib-samples 4 -q "
                                     "--threads 3",
                                     q(m), q(out), type));
    EXPECT_EQ(r.code, 1) << type << ": " << r.err;
    EXPECT_NE(r.err.find("blk.0.attn_v.weight"), std::string::npos) << type << ": " << r.err;
  }
  EXPECT_FALSE(fs::exists(dir_ / "o"));
  EXPECT_FALSE(fs::exists(dir_ / "o.gguf"));
}

}  // namespace
}  // namespace qk::test
