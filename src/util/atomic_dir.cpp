// AtomicDirectory (qk/util/atomic_dir.hpp).
#include "qk/util/atomic_dir.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>

#include "qk/core/error.hpp"
#include "qk/util/temporaries.hpp"

namespace qk::util {
namespace fs = std::filesystem;

namespace {

fs::path without_trailing_separator(fs::path p) {
  while (!p.empty() && !p.has_filename() && p.has_relative_path()) p = p.parent_path();
  return p;
}

bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  if (fs::equivalent(a, b, ec)) return true;
  return fs::weakly_canonical(a, ec) == fs::weakly_canonical(b, ec);
}

}  // namespace

void AtomicDirectory::check_target() const {
  std::error_code ec;
  const auto st = fs::symlink_status(target_, ec);
  if (ec || !fs::exists(st)) return;
  if (!fs::is_directory(st))
    fail<IoError>("{}: exists and is not a directory (a checkpoint is written as a directory)", target_.string());
  if (!opts_.overwrite) fail<IoError>("{}: output exists (use --force to replace it)", target_.string());
  for (const auto& e : fs::directory_iterator(target_, ec)) {
    const std::string name = e.path().filename().string();
    const bool own = std::find(own_.begin(), own_.end(), name) != own_.end() && e.is_regular_file(ec) &&
                     !e.is_symlink(ec);
    if (!own)
      fail<IoError>("{}: holds '{}', which qk did not write: refusing to replace the directory", target_.string(),
                    name);
    for (const auto& in : opts_.inputs)
      if (!in.empty() && same_file(e.path(), in))
        fail<IoError>("{}: holds the input file '{}': refusing to replace the directory", target_.string(), name);
  }
  if (ec) fail<IoError>("{}: cannot list the existing output: {}", target_.string(), ec.message());
}

AtomicDirectory::AtomicDirectory(fs::path target, const WriteOptions& opts, std::vector<std::string> own_files)
    : target_(without_trailing_separator(std::move(target))), opts_(opts), own_(std::move(own_files)) {
  if (target_.empty()) fail<InvalidArgument>("AtomicDirectory: empty target path");
  for (const auto& in : opts_.inputs)
    if (!in.empty() && same_file(target_, in)) fail<IoError>("{}: refusing to overwrite the input", target_.string());
  check_target();
  const fs::path dir = target_.has_parent_path() ? target_.parent_path() : fs::path(".");
  remove_stale_temporaries(target_);
  std::string tmpl = (dir / (temporary_prefix(target_) + "XXXXXX")).string();
  if (!::mkdtemp(tmpl.data()))
    fail<IoError>("{}: cannot create a temporary directory in {}: {}", target_.string(), dir.string(),
                  std::strerror(errno));
  temp_ = tmpl;
  // on a signal: the files committed into it (the writers' own temporaries are registered by them), then it
  for (const auto& name : own_) slots_.push_back(register_temporary(temp_ / name, false));
  slots_.push_back(register_temporary(temp_, true));
}

void AtomicDirectory::unregister() {
  for (const int s : slots_) unregister_temporary(s);
  slots_.clear();
}

AtomicDirectory::~AtomicDirectory() {
  if (!committed_ && !temp_.empty()) {
    std::error_code ec;
    fs::remove_all(temp_, ec);
  }
  unregister();
}

void AtomicDirectory::commit() {
  if (committed_) fail<IoError>("{}: committed twice", target_.string());
  check_target();
  std::error_code ec;
  fs::path old;
  if (fs::exists(fs::symlink_status(target_, ec))) {
    old = temp_.string() + ".old";
    fs::rename(target_, old, ec);
    if (ec) fail<IoError>("{}: cannot move the old output aside: {}", target_.string(), ec.message());
  }
  fs::rename(temp_, target_, ec);
  if (ec) {
    std::error_code back;
    if (!old.empty()) fs::rename(old, target_, back);
    fail<IoError>("{}: cannot rename {} into place: {}", target_.string(), temp_.string(), ec.message());
  }
  committed_ = true;
  unregister();
  if (old.empty()) return;
  // the old directory held only own files (checked above): remove exactly those, then the directory itself
  for (const auto& name : own_) fs::remove(old / name, ec);
  fs::remove(old, ec);
}

}  // namespace qk::util
