// AtomicFile: temporary beside the target, rename on commit, unlink otherwise.
#include "qk/util/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>

#include "qk/core/error.hpp"
#include "qk/util/temporaries.hpp"

namespace qk::util {

namespace {
bool same_file(const std::filesystem::path& a, const std::filesystem::path& b) {
  std::error_code ec;
  if (std::filesystem::equivalent(a, b, ec)) return true;
  // Not existing yet: compare the normalised absolute paths.
  return std::filesystem::weakly_canonical(a, ec) == std::filesystem::weakly_canonical(b, ec);
}
}  // namespace

void AtomicFile::check_target() const {
  if (!target_.has_filename())
    fail<IoError>("{}: names a directory, not a file to write", target_.string());
  for (const auto& in : opts_.inputs)
    if (!in.empty() && same_file(target_, in))
      fail<IoError>("{}: refusing to overwrite the input file", target_.string());
  std::error_code ec;
  const auto st = std::filesystem::status(target_, ec);
  if (!std::filesystem::exists(st)) return;
  // rename() would put a plain file where a device node, a FIFO or a directory was: never replace those
  if (!std::filesystem::is_regular_file(st))
    fail<IoError>("{}: exists and is not a regular file (a {}): refusing to replace it", target_.string(),
                  std::filesystem::is_directory(st) ? "directory" : "device, FIFO or socket");
  if (!opts_.overwrite) fail<IoError>("{}: output exists (use --force to replace it)", target_.string());
}

AtomicFile::AtomicFile(std::filesystem::path target, const WriteOptions& opts)
    : target_(std::move(target)), opts_(opts) {
  check_target();
  const auto dir = target_.has_parent_path() ? target_.parent_path() : std::filesystem::path(".");
  remove_stale_temporaries(target_);
  std::string tmpl = (dir / (temporary_prefix(target_) + "XXXXXX")).string();
  fd_ = mkstemp(tmpl.data());
  if (fd_ < 0) fail<IoError>("{}: cannot create a temporary file in {}: {}", target_.string(), dir.string(),
                             std::strerror(errno));
  temp_ = tmpl;
  slot_ = register_temporary(temp_, false);
  // mkstemp makes the file 0600; give it the usual rw-r--r-- of a written file.
  ::fchmod(fd_, 0644);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !temp_.empty()) {
    std::error_code ec;
    std::filesystem::remove(temp_, ec);
  }
  unregister_temporary(slot_);
}

void AtomicFile::write(const void* data, size_t n) {
  if (fd_ < 0) fail<IoError>("{}: write after commit", target_.string());
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail<IoError>("{}: write failed: {}", temp_.string(), std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
    pos_ += static_cast<uint64_t>(w);
  }
}

void AtomicFile::write_zeros(size_t n) {
  static constexpr char zeros[4096] = {};
  while (n > 0) {
    const size_t k = n < sizeof(zeros) ? n : sizeof(zeros);
    write(zeros, k);
    n -= k;
  }
}

void AtomicFile::commit() {
  if (committed_) fail<IoError>("{}: committed twice", target_.string());
  check_target();
  if (::fsync(fd_) != 0 && errno != EINVAL)
    fail<IoError>("{}: fsync failed: {}", temp_.string(), std::strerror(errno));
  if (::close(fd_) != 0) {
    fd_ = -1;
    fail<IoError>("{}: close failed: {}", temp_.string(), std::strerror(errno));
  }
  fd_ = -1;
  std::error_code ec;
  std::filesystem::rename(temp_, target_, ec);
  if (ec) fail<IoError>("{}: cannot rename {} onto it: {}", target_.string(), temp_.string(), ec.message());
  committed_ = true;
  unregister_temporary(slot_);
  slot_ = -1;
}

}  // namespace qk::util
