// What qtool may touch on disk: --force replaces a previous qtool output and nothing else (never a directory's
// foreign files, the input, a device node or a FIFO); a trailing slash names the same output; an interrupted run
// (SIGINT, SIGTERM, SIGHUP) leaves no temporary, and a later run removes the temporaries of a killed one;
// --calib-save is committed only with the main output.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "tiny_model.hpp"

namespace qk::test {
namespace {

class Outputs : public ScratchTest {
 protected:
  void SetUp() override {
    ScratchTest::SetUp();
    if (IsSkipped()) return;
    model_ = dir_ / "m.gguf";
    write_tiny_model(model_);
  }
  fs::path model_;
};

TEST_F(Outputs, ForceKeepsADirectoryHoldingTheInputOrForeignFiles) {
  const fs::path d = dir_ / "d";
  fs::create_directories(d);
  fs::copy_file(model_, d / "m.gguf");
  { std::ofstream(d / "notes.txt") << "keep\n"; }
  const auto r = qtool(fmt::format("quantize {} -o {} --type int4-g32 -f -q", q(d / "m.gguf"), q(d)));
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("did not write"), std::string::npos) << r.err;
  EXPECT_EQ(entries(d), (std::vector<std::string>{"m.gguf", "notes.txt"}));
  EXPECT_EQ(slurp(d / "notes.txt"), "keep\n");
  EXPECT_EQ(entries(), (std::vector<std::string>{"d", "m.gguf"})) << "no temporary left";
  // with only the input in it: still refused
  fs::remove(d / "notes.txt");
  EXPECT_EQ(qtool(fmt::format("quantize {} -o {} --type int4-g32 -f -q", q(d / "m.gguf"), q(d))).code, 1);
  EXPECT_TRUE(fs::exists(d / "m.gguf"));
}

TEST_F(Outputs, ForceReplacesAPreviousCheckpointDirectoryAndATrailingSlashIsTheSameOutput) {
  const fs::path e = dir_ / "e";
  ASSERT_EQ(qtool(fmt::format("quantize {} -o {} --type int4-g32 -q", q(model_), q(e))).code, 0);
  EXPECT_EQ(entries(e), (std::vector<std::string>{"model.safetensors", "quantize_config.json"}));
  const std::string slash = q(e.string() + "/");
  const auto again = qtool(fmt::format("quantize {} -o {} --type int4-g32 -q", q(model_), slash));
  EXPECT_EQ(again.code, 2) << "an existing output without --force: " << again.err;
  const auto r = qtool(fmt::format("quantize {} -o {} --type int4-g32 -f -q", q(model_), slash));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(entries(e), (std::vector<std::string>{"model.safetensors", "quantize_config.json"}));
  EXPECT_EQ(entries(), (std::vector<std::string>{"e", "m.gguf"}));
  // a file output with a trailing slash is a usage or runtime error, never a file named "e.gguf/"
  const auto f = qtool(fmt::format("quantize {} -o {} --type q8_0 -q", q(model_), q(dir_.string() + "/x.gguf/")));
  EXPECT_NE(f.code, 0);
  EXPECT_EQ(entries(), (std::vector<std::string>{"e", "m.gguf"}));
}

TEST_F(Outputs, ForceRefusesFifosAndDeviceNodes) {
  const fs::path fifo = dir_ / "pipe.gguf";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const auto r = qtool(fmt::format("quantize {} -o {} --type q8_0 -f -q", q(model_), q(fifo)));
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("not a regular file"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::is_fifo(fifo));
  // the same check guards every writer (here qtool convert's and the matrix mode's)
  const fs::path dev = dir_ / "null.gguf";
  if (::mknod(dev.c_str(), S_IFCHR | 0666, makedev(1, 3)) != 0) {
    GTEST_SKIP() << "cannot make a device node here (not root): the FIFO case covers the check";
  }
  const auto d = qtool(fmt::format("quantize {} -o {} --type f16 -f -q", q(model_), q(dev)));
  EXPECT_EQ(d.code, 1) << d.err;
  EXPECT_TRUE(fs::is_character_file(dev));
  EXPECT_EQ(entries(), (std::vector<std::string>{"m.gguf", "null.gguf", "pipe.gguf"}));
}

// Starts qtool in the background, waits until its temporary output exists, sends `sig`, and returns its status.
int interrupt_run(const std::string& args, const fs::path& dir, const std::string& tmp_prefix, int sig) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(null, 2);
    ::execl("/bin/sh", "sh", "-c", fmt::format("exec \"{}\" {}", QK_QTOOL, args).c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const auto t0 = std::chrono::steady_clock::now();
  bool seen = false;
  while (!seen && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20)) {
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().filename().string().rfind(tmp_prefix, 0) == 0) seen = true;
    int st;
    if (!seen && ::waitpid(pid, &st, WNOHANG) == pid) return -1;  // finished before it could be interrupted
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ::kill(pid, sig);
  int st = 0;
  ::waitpid(pid, &st, 0);
  return st;
}

class Signals : public Outputs, public ::testing::WithParamInterface<int> {};

TEST_P(Signals, RemoveTheTemporaries) {
  // GPTQ from generated calibration: long enough to be caught with its temporary open
  const int sig = GetParam();
  const fs::path out = dir_ / "o.gguf";
  const int st = interrupt_run(fmt::format("quantize {} -o {} --type q8_0 --method gptq --calib-generate "
                                           "--calib-samples 512 -q --threads 1",
                                           q(model_), q(out)),
                               dir_, ".o.gguf.tmp-", sig);
  if (st == -1) GTEST_SKIP() << "the run ended before the signal";
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == sig) << "dies of the signal, as a shell expects";
  EXPECT_EQ(entries(), (std::vector<std::string>{"m.gguf"}));
}

INSTANTIATE_TEST_SUITE_P(IntSigTermHup, Signals, ::testing::Values(SIGINT, SIGTERM, SIGHUP));

TEST_F(Outputs, ALaterRunRemovesTheTemporariesOfAKilledOne) {
  const fs::path out = dir_ / "o.gguf";
  const int st = interrupt_run(fmt::format("quantize {} -o {} --type q8_0 --method gptq --calib-generate "
                                           "--calib-samples 512 -q --threads 1",
                                           q(model_), q(out)),
                               dir_, ".o.gguf.tmp-", SIGKILL);
  if (st == -1) GTEST_SKIP() << "the run ended before the signal";
  ASSERT_EQ(entries().size(), 2u) << "SIGKILL leaves the temporary";
  // a temporary of a live process (this test's) with the same pattern is not touched
  const fs::path live = dir_ / fmt::format(".o.gguf.tmp-{}-abcdef", ::getpid());
  { std::ofstream(live) << "x"; }
  const auto r = qtool(fmt::format("quantize {} -o {} --type q8_0 -q", q(model_), q(out)));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(entries(), (std::vector<std::string>{".o.gguf.tmp-" + std::to_string(::getpid()) + "-abcdef", "m.gguf",
                                                 "o.gguf"}));
}

TEST_F(Outputs, CalibSaveIsNotCommittedWhenTheMainOutputFails) {
  // the output's place turns into a directory while the run goes: the main commit fails
  const fs::path out = dir_ / "o.gguf", ids = dir_ / "ids.i32";
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(null, 2);
    ::execl("/bin/sh", "sh", "-c",
            fmt::format("exec \"{}\" quantize {} -o {} --type q8_0 --method gptq --calib-generate --calib-samples 256 "
                        "--calib-save {} -q --threads 1",
                        QK_QTOOL, q(model_), q(out), q(ids))
                .c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // wait for the temporary, then put a non-empty directory where the output goes
  const auto t0 = std::chrono::steady_clock::now();
  bool seen = false;
  while (!seen && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20)) {
    for (const auto& e : fs::directory_iterator(dir_))
      if (e.path().filename().string().rfind(".o.gguf.tmp-", 0) == 0) seen = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  fs::create_directories(out / "x");
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (!seen) GTEST_SKIP() << "the run ended before the output was blocked";
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1);
  EXPECT_FALSE(fs::exists(ids)) << "the calibration ids of a failed run";
  EXPECT_EQ(entries(), (std::vector<std::string>{"m.gguf", "o.gguf"}));
}

}  // namespace
}  // namespace qk::test
