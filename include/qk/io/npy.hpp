#pragma once
// NumPy .npy files (format description: numpy/lib/format.py, "NEP 1"): magic "\x93NUMPY", major/minor version,
// a little-endian header length (u16 in v1, u32 in v2/v3), a Python dict literal
// {'descr': '<f4', 'fortran_order': False, 'shape': (r, c), } padded with spaces and '\n' so the data starts at a
// multiple of 64, then the array in C order. Reading goes through TensorFile (qk/io/tensor_file.hpp).
#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

#include "qk/util/atomic_file.hpp"
#include "qk/io/tensor_file.hpp"

namespace qk::io {

using util::WriteOptions;  // what a writer may replace (qk/util/atomic_file.hpp)

// The npy descr of a dtype ("<f4", "|i1", ...); InvalidArgument for DType::Ggml.
std::string npy_descr(DType t);

// Streams one array: the header is written at construction, then append() the bytes (any chunking) and commit().
class NpyWriter {
 public:
  NpyWriter(std::filesystem::path path, DType dtype, std::vector<int64_t> shape, const WriteOptions& opts = {});
  void append(std::span<const std::byte> bytes);
  // InvalidArgument unless exactly numel x dtype size bytes were appended.
  void commit();

 private:
  util::AtomicFile file_;
  uint64_t expected_ = 0, written_ = 0;
};

void write_npy(const std::filesystem::path& path, DType dtype, const std::vector<int64_t>& shape,
               std::span<const std::byte> bytes, const WriteOptions& opts = {});
// A float32 matrix as a 2-D '<f4' array.
void write_npy(const std::filesystem::path& path, const RowMatrixXf& m, const WriteOptions& opts = {});

}  // namespace qk::io
