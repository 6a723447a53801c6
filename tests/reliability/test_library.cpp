// The library pieces behind docs/reliability.md, without qtool: FirstException carries an exception out of an
// OpenMP region (barriers included); stale temporaries of dead processes are removed and live ones kept; atomic
// writers refuse FIFOs and paths ending in a separator; GPTQ refuses a zero Hessian and a row of ±1e38 with an error.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>

#include <gtest/gtest.h>

#include <fmt/format.h>

#include "qk/detail/omp.hpp"
#include "qk/methods/gptq.hpp"
#include "qk/util/atomic_dir.hpp"
#include "qk/util/atomic_file.hpp"
#include "qk/util/temporaries.hpp"
#include "test_util.hpp"

namespace qk::test {
namespace {

namespace fs = std::filesystem;

struct Scratch {
  Scratch() {
    std::random_device rd;
    dir = fs::temp_directory_path() / fmt::format("qk-rel-lib-{}-{:08x}", ::getpid(), rd());
    fs::create_directories(dir);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  size_t count() const { return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator())); }
  fs::path dir;
};

TEST(FirstException, CarriesTheFirstErrorOutOfARegionWithBarriers) {
  qk::detail::FirstException errors;
  int after = 0, team = 0;
#pragma omp parallel num_threads(4) reduction(+ : after)
  {
#pragma omp single
    team = omp_get_num_threads();
    for (int i = 0; i < 3; ++i) {
#pragma omp barrier
      errors.run([&] {
        if (omp_get_thread_num() == 1 && i == 1) throw NumericError("thread 1 failed");
      });
    }
#pragma omp barrier
    after += 1;  // every thread got through every barrier
  }
  EXPECT_EQ(after, team);
  EXPECT_TRUE(errors.failed());
  EXPECT_THROW(errors.rethrow(), NumericError);
  qk::detail::FirstException none;
  none.run([] {});
  EXPECT_NO_THROW(none.rethrow());
}

pid_t dead_pid() {
  const pid_t p = ::fork();
  if (p == 0) ::_exit(0);
  int st;
  ::waitpid(p, &st, 0);
  return p;  // reaped: no such process any more (barring reuse within microseconds)
}

TEST(Temporaries, StaleOnesOfDeadProcessesGoLiveOnesStay) {
  Scratch s;
  const fs::path target = s.dir / "out.gguf";
  const pid_t dead = dead_pid();
  const fs::path stale = s.dir / fmt::format(".out.gguf.tmp-{}-aaaaaa", dead);
  const fs::path stale_dir = s.dir / fmt::format(".out.gguf.tmp-{}-bbbbbb", dead);
  const fs::path live = s.dir / fmt::format(".out.gguf.tmp-{}-cccccc", ::getpid());
  const fs::path other = s.dir / fmt::format(".other.gguf.tmp-{}-dddddd", dead);
  const fs::path odd = s.dir / ".out.gguf.tmp-notapid";
  for (const auto& p : {stale, live, other, odd}) std::ofstream(p) << "x";
  fs::create_directories(stale_dir);
  std::ofstream(stale_dir / "model.safetensors") << "x";
  EXPECT_EQ(util::remove_stale_temporaries(target), 2);
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_FALSE(fs::exists(stale_dir));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(other));
  EXPECT_TRUE(fs::exists(odd));
  // a writer does the same when it starts
  std::ofstream(stale) << "x";
  {
    util::AtomicFile f(target);
    EXPECT_EQ(f.temp_path().filename().string().rfind(util::temporary_prefix(target), 0), 0u);
  }
  EXPECT_FALSE(fs::exists(stale));
}

TEST(AtomicWriters, RefuseFifosDirectoriesAndTrailingSeparators) {
  Scratch s;
  const fs::path fifo = s.dir / "p.bin";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  util::WriteOptions force;
  force.overwrite = true;
  EXPECT_THROW(util::AtomicFile(fifo, force), IoError);
  fs::create_directories(s.dir / "d");
  EXPECT_THROW(util::AtomicFile(s.dir / "d", force), IoError);
  EXPECT_THROW(util::AtomicFile(fs::path(s.dir.string() + "/x.bin/"), force), IoError);
  EXPECT_THROW(util::AtomicDirectory(fifo, force, {"a"}), IoError);
  EXPECT_TRUE(fs::is_fifo(fifo));
  EXPECT_EQ(s.count(), 2u) << "no temporary left";
}

TEST(Gptq, RefusesAZeroHessianAndOverflowingErrorFeedback) {
  const RowMat W = gaussian(256, 64, 1);
  IntGrid g(QuantScheme::per_group(4, 32, true, false));
  GptqOptions o;
  o.threads = 3;
  EXPECT_THROW(gptq(W, Eigen::MatrixXf(Eigen::MatrixXf::Zero(64, 64)), g, o), NumericError);
  RowMat Wb = W;
  for (int c = 0; c < 64; ++c) Wb(200, c) = c % 2 ? 1e38f : -1e38f;
  const RowMat X = gaussian(128, 64, 2);
  const Eigen::MatrixXf H = 2.0f / 128.0f * (X.transpose() * X);
  try {
    gptq(Wb, H, g, o);
    ADD_FAILURE() << "no error";
  } catch (const NumericError& e) {
    EXPECT_NE(std::string(e.what()).find("row 200"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qk::test
