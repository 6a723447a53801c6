#pragma once
// Helpers for the io tests: a scratch folder per test, byte builders for hand-made files.
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace qk::test {

// A fresh folder removed at the end of the test.
class ScratchDir {
 public:
  ScratchDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info ? info->test_suite_name() : "io") + "." + (info ? info->name() : "t");
    for (char& c : name)
      if (c == '/') c = '_';
    dir_ = std::filesystem::temp_directory_path() / ("qk-io-" + std::to_string(::getpid()) + "-" + name);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::filesystem::path operator/(const std::string& f) const { return dir_ / f; }
  const std::filesystem::path& path() const { return dir_; }
  // Files in the folder (to check that no temporary is left behind).
  size_t count() const {
    size_t n = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir_)) ++n;
    return n;
  }

 private:
  std::filesystem::path dir_;
};

// Little-endian byte builder.
struct Bytes {
  std::vector<std::byte> v;
  template <typename T>
  Bytes& put(T x) {
    const auto* p = reinterpret_cast<const std::byte*>(&x);
    v.insert(v.end(), p, p + sizeof(T));
    return *this;
  }
  Bytes& str(std::string_view s) {
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    v.insert(v.end(), p, p + s.size());
    return *this;
  }
  Bytes& gguf_str(std::string_view s) { return put<uint64_t>(s.size()).str(s); }
  Bytes& zeros(size_t n) {
    v.insert(v.end(), n, std::byte{0});
    return *this;
  }
  Bytes& pad_to(size_t a) { return zeros((a - v.size() % a) % a); }
  std::span<const std::byte> span() const { return v; }
};

inline std::vector<std::byte> file_bytes(const std::filesystem::path& p) {
  auto c = read_bytes(p);
  std::vector<std::byte> out(c.size());
  if (!c.empty()) std::memcpy(out.data(), c.data(), c.size());
  return out;
}

inline void write_file(const std::filesystem::path& p, std::span<const std::byte> b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// The bundled model (examples/models), always present in the repository.
inline std::filesystem::path stories_gguf() {
  return std::filesystem::path(QK_TEST_DATA) / ".." / ".." / "examples" / "models" / "stories260K.gguf";
}

template <typename T>
std::span<const std::byte> as_bytes_of(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

}  // namespace qk::test
