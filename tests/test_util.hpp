#pragma once
// Shared helpers for qk's tests: seeded random data and the two data locations.
//  - tests/data (QK_TEST_DATA): small fixtures committed with the tests, always present;
//  - QK_REFERENCE_DATA (configure-time -DQK_REFERENCE_DATA=../shared/data): larger conformance data.
//    Tests that need it call QK_REQUIRE_REFERENCE(subpath) and skip with a message when it is absent.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <Eigen/Core>

#include <fmt/format.h>

namespace qk::test {

inline std::filesystem::path test_data(const std::string& rel) { return std::filesystem::path(QK_TEST_DATA) / rel; }

// The bundled models and texts (examples/models, examples/text), always present in the repository.
inline std::filesystem::path bundled_model(const std::string& name = "stories260K") {
  return std::filesystem::path(QK_TEST_DATA) / ".." / ".." / "examples" / "models" / (name + ".gguf");
}
inline std::filesystem::path bundled_text(const std::string& name = "tinystories-valid.joined.txt") {
  return std::filesystem::path(QK_TEST_DATA) / ".." / ".." / "examples" / "text" / name;
}
inline std::filesystem::path bundled_train_text() { return bundled_text("tinystories-train.slice.joined.txt"); }

inline std::filesystem::path reference_root() { return std::filesystem::path(QK_REFERENCE_DATA); }

// Empty path when the reference data (or that file) is not there.
inline std::filesystem::path reference_data(const std::string& rel) {
  std::string root = QK_REFERENCE_DATA;
  if (root.empty()) return {};
  auto p = std::filesystem::path(root) / rel;
  return std::filesystem::exists(p) ? p : std::filesystem::path{};
}

#define QK_REQUIRE_REFERENCE(var, rel)                                                                  \
  const std::filesystem::path var = ::qk::test::reference_data(rel);                                    \
  if (var.empty())                                                                                      \
  GTEST_SKIP() << "reference data '" << (rel)                                                           \
               << "' not available: configure with -DQK_REFERENCE_DATA=<path to shared/data> to run this"

// The whole content of a file ("" when it cannot be read).
inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// What one run of a program printed and its exit code (-1 when it did not exit normally).
struct RunResult {
  int code = -1;
  std::string out, err;
};

// Runs `env exe args` through the shell (env: optional assignments such as "QK_ISA=scalar"), stdout and stderr
// captured through two files in `work_dir` (named after the process and call, removed after), so any directory,
// the shared temporary one included, is safe for tests that run in parallel.
inline RunResult run_program(const std::string& exe, const std::string& args,
                             const std::filesystem::path& work_dir = std::filesystem::temp_directory_path(),
                             const std::string& env = "") {
  static int calls = 0;
  const std::string tag = fmt::format("qk-run-{}-{}", ::getpid(), calls++);
  const std::filesystem::path o = work_dir / (tag + ".out"), e = work_dir / (tag + ".err");
  const std::string cmd = fmt::format("{} \"{}\" {} >\"{}\" 2>\"{}\"", env, exe, args, o.string(), e.string());
  const int st = std::system(cmd.c_str());
  RunResult r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = slurp(o);
  r.err = slurp(e);
  std::error_code ec;
  std::filesystem::remove(o, ec);
  std::filesystem::remove(e, ec);
  return r;
}

// qtool (the build's, QK_QTOOL) run with `args`.
#ifdef QK_QTOOL
inline RunResult run_qtool(const std::string& args,
                           const std::filesystem::path& work_dir = std::filesystem::temp_directory_path(),
                           const std::string& env = "") {
  return run_program(QK_QTOOL, args, work_dir, env);
}
#endif

// A deterministic generator: every test seeds its own (XNNPACK's replicable random device idea).
inline std::mt19937_64 rng(uint64_t seed = 0x9e3779b97f4a7c15ULL) { return std::mt19937_64(seed); }

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

inline RowMat gaussian(Eigen::Index rows, Eigen::Index cols, uint64_t seed, float stddev = 1.0f) {
  auto g = rng(seed);
  std::normal_distribution<float> d(0.0f, stddev);
  RowMat m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = d(g);
  return m;
}

inline RowMat uniform(Eigen::Index rows, Eigen::Index cols, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  auto g = rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  RowMat m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = d(g);
  return m;
}

inline std::vector<char> read_bytes(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace qk::test
