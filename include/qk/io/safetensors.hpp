#pragma once
// safetensors writer (layout: huggingface/safetensors README): u64 header length N, N bytes of JSON
// {"__metadata__": {str: str}, "name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
// padded with spaces to a multiple of 8, then the tensors back to back in declaration order.
// Reading goes through TensorFile (qk/io/tensor_file.hpp).
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "qk/util/atomic_file.hpp"
#include "qk/io/tensor_file.hpp"

namespace qk::io {

using util::WriteOptions;  // what a writer may replace (qk/util/atomic_file.hpp)

// DType from a safetensors dtype string; FormatError-free: returns false when unknown.
bool safetensors_dtype(std::string_view name, DType& out);

// Declare every tensor first (add_tensor), then write each tensor's bytes in declaration order
// (write_tensor), then commit(). The header is emitted on the first write_tensor/commit, from the declared sizes.
class SafetensorsWriter {
 public:
  explicit SafetensorsWriter(std::filesystem::path path, const WriteOptions& opts = {});
  void set_metadata(std::string key, std::string value);  // __metadata__ entry (replaces an existing key)
  void add_tensor(std::string name, DType dtype, std::vector<int64_t> shape);
  // The next declared tensor's bytes; InvalidArgument when the size differs or all tensors were written.
  void write_tensor(std::span<const std::byte> bytes);
  // Same, checking that `name` is the next declared tensor.
  void write_tensor(std::string_view name, std::span<const std::byte> bytes);
  void commit();
  size_t declared() const { return decls_.size(); }

 private:
  struct Decl {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t nbytes;
  };
  void write_header();
  util::AtomicFile file_;
  std::vector<std::pair<std::string, std::string>> meta_;
  std::vector<Decl> decls_;
  size_t next_ = 0;
  bool header_written_ = false;
};

}  // namespace qk::io
