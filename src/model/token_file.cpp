// Token-id files (qk/model/token_file.hpp).
#include "qk/model/token_file.hpp"

#include <fstream>

#include "qk/core/error.hpp"
#include "qk/util/atomic_file.hpp"

namespace qk::model {

void write_tokens(const std::filesystem::path& path, std::span<const int32_t> tokens, const util::WriteOptions& opts) {
  util::AtomicFile f(path, opts);
  f.write(tokens.data(), tokens.size() * sizeof(int32_t));  // little-endian hosts only (as read_tokens)
  f.commit();
}

std::vector<int32_t> read_tokens(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail<IoError>("{}: cannot open token file", path.string());
  const auto size = static_cast<size_t>(in.tellg());
  if (size % 4 != 0) fail<FormatError>("{}: {} bytes is not a whole number of int32 token ids", path.string(), size);
  std::vector<int32_t> t(size / 4);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(t.data()), static_cast<std::streamsize>(size));
  if (!in) fail<IoError>("{}: short read", path.string());
  return t;
}

std::vector<int32_t> read_tokens(const std::filesystem::path& path, int vocab, size_t min_count,
                                 const std::string& what) {
  std::vector<int32_t> t = read_tokens(path);
  if (t.empty()) fail<FormatError>("{}: the token file is empty", path.string());
  if (t.size() < min_count)
    fail<FormatError>("{}: {} token ids do not fill {}", path.string(), t.size(), what);
  for (size_t i = 0; i < t.size(); ++i)
    if (t[i] < 0 || t[i] >= vocab)
      fail<FormatError>("{}: token id {} at index {} is outside the model's vocabulary of {}", path.string(), t[i], i,
                        vocab);
  return t;
}

}  // namespace qk::model
