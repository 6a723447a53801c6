#pragma once
// Internal to src/io: the bounds-checked byte reader and the parsers behind TensorFile.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/ranges.h>

#include "qk/core/error.hpp"
#include "qk/io/tensor_file.hpp"

namespace qk::io::detail {

static_assert(std::endian::native == std::endian::little, "qk's file formats are little-endian; so is the host");

struct Parsed {
  std::vector<TensorInfo> tensors;
  std::vector<MetaEntry> metadata;
};

// Each parser validates everything it reads against data.size() and throws FormatError "<file>: ...".
Parsed parse_npy(std::span<const std::byte> data, const std::string& file);
Parsed parse_safetensors(std::span<const std::byte> data, const std::string& file);
Parsed parse_gguf(std::span<const std::byte> data, const std::string& file);
Parsed parse_llama2c(std::span<const std::byte> data, const std::string& file);

// TensorFile::open / open_memory with the format given (`forced`) instead of detected when it is set.
std::unique_ptr<TensorFile> open_mapped(const std::filesystem::path& path, std::optional<FileFormat> forced);
std::unique_ptr<TensorFile> open_buffer(std::span<const std::byte> data, std::string name,
                                        std::optional<FileFormat> forced);

// Write-order bookkeeping shared by the streaming writers (safetensors, GGUF): tensors are declared first, then
// their bytes are given one tensor at a time in declaration order (the writer advances its index once the bytes
// are written). Decl needs `name` and `nbytes`.
template <typename Decl>
const Decl& next_declared(const std::vector<Decl>& decls, size_t next, size_t nbytes, const std::string& target) {
  if (next >= decls.size())
    fail<InvalidArgument>("{}: all {} declared tensors were already written", target, decls.size());
  const Decl& d = decls[next];
  if (nbytes != d.nbytes)
    fail<InvalidArgument>("{}: tensor '{}': {} bytes given, {} declared", target, d.name, nbytes, d.nbytes);
  return d;
}

template <typename Decl>
void check_next_name(const std::vector<Decl>& decls, size_t next, std::string_view name, const std::string& target) {
  if (next >= decls.size() || decls[next].name != name)
    fail<InvalidArgument>("{}: tensor '{}' written out of declaration order", target, name);
}

inline void check_all_written(size_t next, size_t declared, const std::string& target) {
  if (next != declared) fail<InvalidArgument>("{}: {} of {} declared tensors written", target, next, declared);
}

// Reads little-endian scalars and strings, never past the end.
class ByteReader {
 public:
  ByteReader(std::span<const std::byte> d, const std::string& file) : d_(d), file_(file) {}
  size_t pos() const { return pos_; }
  size_t left() const { return d_.size() - pos_; }
  void need(size_t n, std::string_view what) const {
    if (n > left())
      fail<FormatError>("{}: truncated: {} needs {} bytes at offset {} but the file has {} left", file_, what, n,
                        pos_, left());
  }
  template <typename T>
  T get(std::string_view what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, d_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view view(size_t n, std::string_view what) {
    need(n, what);
    std::string_view s(reinterpret_cast<const char*>(d_.data() + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  std::span<const std::byte> d_;
  const std::string& file_;
  size_t pos_ = 0;
};

// a * b, false on uint64 overflow.
inline bool mul_ok(uint64_t a, uint64_t b, uint64_t& out) { return !__builtin_mul_overflow(a, b, &out); }
inline bool add_ok(uint64_t a, uint64_t b, uint64_t& out) { return !__builtin_add_overflow(a, b, &out); }

// Element count of a shape; false when a dimension is negative or the product of the non-zero dimensions exceeds
// INT64_MAX (so TensorInfo::numel() cannot overflow in any order, even when another dimension is 0).
inline bool shape_numel(const std::vector<int64_t>& shape, uint64_t& numel) {
  uint64_t nz = 1;
  numel = 1;
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (d > 0 && (!mul_ok(nz, static_cast<uint64_t>(d), nz) || nz > static_cast<uint64_t>(INT64_MAX))) return false;
    numel *= static_cast<uint64_t>(d);
  }
  return true;
}

}  // namespace qk::io::detail
