#pragma once
// AtomicFile: write a file beside its target and move it into place only on commit().
// The temporary lives in the target's directory (so rename() stays on one file system) and is removed when the
// AtomicFile is destroyed without a commit: a failed write never leaves a partial output behind. The temporary is
// named `.NAME.tmp-PID-XXXXXX` and registered for removal on signals; stale ones of dead runs are removed first
// (qk/util/temporaries.hpp). The target may only be a regular file (or absent): never a directory, a device node
// or a FIFO, whatever opts.overwrite says.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

namespace qk::util {

// What a writer may and may not replace.
struct WriteOptions {
  bool overwrite = true;                          // false: IoError when the target already exists
  std::vector<std::filesystem::path> inputs;      // files the target must not be (IoError "refusing to overwrite")
};

class AtomicFile {
 public:
  // Creates the temporary file. Throws IoError when the target is one of opts.inputs, exists and overwrite is
  // false, exists as something other than a regular file, ends in a separator, or the directory is not writable.
  explicit AtomicFile(std::filesystem::path target, const WriteOptions& opts = {});
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write(std::span<const std::byte> data) { write(data.data(), data.size()); }
  void write_zeros(size_t n);
  uint64_t position() const { return pos_; }
  // Flushes, closes and renames the temporary onto the target (re-checking opts). Only once.
  void commit();
  bool committed() const { return committed_; }
  const std::filesystem::path& target() const { return target_; }
  const std::filesystem::path& temp_path() const { return temp_; }

 private:
  void check_target() const;
  std::filesystem::path target_, temp_;
  WriteOptions opts_;
  int fd_ = -1;
  int slot_ = -1;  // qk/util/temporaries.hpp
  uint64_t pos_ = 0;
  bool committed_ = false;
};

}  // namespace qk::util
