#pragma once
// AtomicDirectory: an output made of several files (a GPTQ checkpoint directory), written into a temporary
// directory beside the target and renamed into place only on commit(); removed when destroyed without a commit.
//
// What an existing target may lose: with opts.overwrite it is replaced only when it is a directory holding nothing
// but files of this kind of output (`own_files`, e.g. model.safetensors and quantize_config.json) and none of them
// is one of opts.inputs. A directory holding anything else (the input model, a notes file, a subdirectory) is an
// IoError naming what qk did not write: --force never deletes files qk did not make. The temporary directory is
// `.NAME.tmp-PID-XXXXXX`, removed on signals and by later runs once PID is dead (qk/util/temporaries.hpp).
#include <filesystem>
#include <string>
#include <vector>

#include "qk/util/atomic_file.hpp"

namespace qk::util {

class AtomicDirectory {
 public:
  // Checks the target (IoError as above, or when it exists as something other than a directory) and creates the
  // temporary directory. A trailing separator in `target` is ignored.
  AtomicDirectory(std::filesystem::path target, const WriteOptions& opts, std::vector<std::string> own_files);
  ~AtomicDirectory();
  AtomicDirectory(const AtomicDirectory&) = delete;
  AtomicDirectory& operator=(const AtomicDirectory&) = delete;

  // The temporary directory to write the files into.
  const std::filesystem::path& path() const { return temp_; }
  const std::filesystem::path& target() const { return target_; }
  // Re-checks the target, moves an old one aside, renames the temporary into place and deletes the old one's files.
  void commit();

 private:
  void check_target() const;
  void unregister();
  std::filesystem::path target_, temp_;
  std::vector<int> slots_;  // qk/util/temporaries.hpp
  WriteOptions opts_;
  std::vector<std::string> own_;
  bool committed_ = false;
};

}  // namespace qk::util
