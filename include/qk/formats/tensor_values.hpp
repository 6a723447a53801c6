#pragma once
// Float values of any tensor of a file: plain element types converted (qk::io::TensorFile::read_rows) and ggml
// block types decoded exactly as ggml's to_float does (qk/formats/ggml.hpp). io reads bytes and plain types; the
// decoding of encodings lives here, one floor down, so that io never depends on formats.
#include <cstdint>
#include <filesystem>
#include <string_view>

#include "qk/io/tensor_file.hpp"

namespace qk::formats {

// The tensor as float32 [rows, cols] (rows = product of all dimensions but the last). FormatError naming the file
// and tensor for a block type qk has no decoder for, or bytes that do not hold the shape. NaN/Inf pass through.
io::RowMatrixXf read_matrix(const io::TensorFile& file, const io::TensorInfo& t, int threads = 0);

// Rows [r0, r0 + n) of that [rows, cols] view into out (n * cols floats): only those rows' bytes are touched, so a
// caller can stream a large tensor or look up a few embedding rows.
void read_rows(const io::TensorFile& file, const io::TensorInfo& t, int64_t r0, int64_t n, float* out,
               int threads = 0);

// qk::io::load_matrix for any tensor type: the array of a .npy, or the tensor `name` of a safetensors/GGUF file
// (when name is empty the file must hold exactly one tensor of rank 1 or 2).
io::RowMatrixXf load_matrix(const std::filesystem::path& path, std::string_view name = {});

}  // namespace qk::formats
