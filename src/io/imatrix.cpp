// Importance matrices of llama.cpp (qk/io/imatrix.hpp).
#include "qk/io/imatrix.hpp"

#include <cstdint>
#include <cstring>
#include <fstream>

#include "qk/core/error.hpp"
#include "qk/io/tensor_file.hpp"

namespace qk::io {

std::map<std::string, std::vector<float>> read_imatrix(const std::filesystem::path& path) {
  std::map<std::string, std::vector<float>> out;
  std::ifstream f(path, std::ios::binary);
  if (!f) fail<IoError>("{}: cannot open the importance matrix", path.string());
  char magic[4] = {};
  f.read(magic, 4);
  if (f && std::memcmp(magic, "GGUF", 4) == 0) {
    f.close();
    auto tf = TensorFile::open(path);
    for (const auto& t : tf->tensors()) {
      if (!t.name.ends_with(".in_sum2")) continue;
      const std::string w = t.name.substr(0, t.name.size() - 8);
      const TensorInfo* c = tf->find(w + ".counts");
      if (!c) fail<FormatError>("{}: '{}' has no matching '{}.counts'", path.string(), t.name, w);
      const auto sums = tf->read_matrix(t);
      const auto counts = tf->read_matrix(*c);
      if (counts.size() != sums.rows())
        fail<FormatError>("{}: '{}.counts' has {} values for {} rows of sums", path.string(), w, counts.size(),
                                  sums.rows());
      std::vector<float> e(static_cast<size_t>(sums.size()));
      for (Eigen::Index r = 0; r < sums.rows(); ++r) {
        const float n = counts.data()[r];
        for (Eigen::Index i = 0; i < sums.cols(); ++i)
          e[static_cast<size_t>(r * sums.cols() + i)] = n > 0 ? sums(r, i) / n : 1.0f;
      }
      out[w] = std::move(e);
    }
    if (out.empty()) fail<FormatError>("{}: no '*.in_sum2' tensors: not an importance matrix", path.string());
    return out;
  }
  f.clear();
  f.seekg(0);
  auto rd = [&](void* p, size_t n, const char* what) {
    f.read(static_cast<char*>(p), static_cast<std::streamsize>(n));
    if (!f) fail<FormatError>("{}: truncated legacy imatrix ({})", path.string(), what);
  };
  int32_t entries = 0;
  rd(&entries, 4, "entry count");
  if (entries <= 0 || entries > 1000000)
    fail<FormatError>("{}: {} entries: not an importance matrix", path.string(), entries);
  for (int32_t i = 0; i < entries; ++i) {
    int32_t len = 0, ncall = 0, nval = 0;
    rd(&len, 4, "name length");
    if (len <= 0 || len > 4096) fail<FormatError>("{}: entry {} has a name of {} bytes", path.string(), i, len);
    std::string name(static_cast<size_t>(len), '\0');
    rd(name.data(), name.size(), "name");
    rd(&ncall, 4, "call count");
    rd(&nval, 4, "value count");
    if (nval <= 0 || nval > (1 << 28)) fail<FormatError>("{}: entry '{}' has {} values", path.string(), name, nval);
    std::vector<float> e(static_cast<size_t>(nval));
    rd(e.data(), e.size() * 4, "values");
    if (ncall > 0)
      for (float& v : e) v /= static_cast<float>(ncall);
    out[name] = std::move(e);
  }
  return out;
}

}  // namespace qk::io
