// AtomicFile and the writers' commit-by-rename: nothing appears until commit, a failure leaves nothing, inputs
// are never overwritten.
#include <gtest/gtest.h>

#include "io_util.hpp"
#include "qk/io/gguf.hpp"
#include "qk/io/npy.hpp"
#include "qk/io/safetensors.hpp"
#include "qk/util/atomic_file.hpp"

namespace qk::io {
namespace {

using util::AtomicFile;

using test::ScratchDir;

TEST(AtomicFile, NothingAppearsBeforeCommit) {
  ScratchDir dir;
  const auto target = dir / "out.bin";
  {
    AtomicFile f(target);
    f.write("abc", 3);
    f.write_zeros(5000);
    EXPECT_EQ(f.position(), 5003u);
    EXPECT_FALSE(std::filesystem::exists(target));
    EXPECT_TRUE(std::filesystem::exists(f.temp_path()));
    EXPECT_EQ(f.temp_path().parent_path(), target.parent_path()) << "temporary beside the target";
    f.commit();
    EXPECT_THROW(f.commit(), IoError);
    EXPECT_THROW(f.write("x", 1), IoError);
  }
  EXPECT_EQ(std::filesystem::file_size(target), 5003u);
  EXPECT_EQ(dir.count(), 1u);
}

TEST(AtomicFile, DestructionWithoutCommitRemovesTheTemporaryAndKeepsTheOldFile) {
  ScratchDir dir;
  const auto target = dir / "keep.bin";
  test::write_file(target, std::vector<std::byte>(7));
  {
    AtomicFile f(target);
    f.write("new contents", 12);
  }
  EXPECT_EQ(std::filesystem::file_size(target), 7u);
  EXPECT_EQ(dir.count(), 1u);
  // An exception in the middle of a writer leaves the old file as it was.
  try {
    SafetensorsWriter w(target);
    w.add_tensor("a", DType::F32, {4});
    w.write_tensor(std::vector<std::byte>(3));
  } catch (const InvalidArgument&) {
  }
  EXPECT_EQ(std::filesystem::file_size(target), 7u);
  EXPECT_EQ(dir.count(), 1u);
}

TEST(AtomicFile, RefusesInputsAndExistingOutputs) {
  ScratchDir dir;
  const auto in = dir / "in.npy";
  write_npy(in, test::gaussian(2, 2, 3));
  WriteOptions protect;
  protect.inputs = {in};
  EXPECT_THROW(AtomicFile(in, protect), IoError);
  // The same file through another spelling of its path.
  EXPECT_THROW(AtomicFile(dir.path() / "." / "in.npy", protect), IoError);
  EXPECT_THROW(GgufWriter(in, protect), IoError);
  WriteOptions no_overwrite;
  no_overwrite.overwrite = false;
  try {
    write_npy(in, test::gaussian(2, 2, 4), no_overwrite);
    ADD_FAILURE();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("exists"), std::string::npos);
  }
  EXPECT_EQ(load_matrix(in), test::gaussian(2, 2, 3));
  EXPECT_NO_THROW(AtomicFile(dir / "other.bin", protect));
  EXPECT_EQ(dir.count(), 1u);
}

TEST(AtomicFile, UnwritableDirectoryIsAnIoError) {
  EXPECT_THROW(AtomicFile("/nonexistent-dir-qk/x.bin"), IoError);
}

}  // namespace
}  // namespace qk::io
