// Dequantization of ggml block types for TensorFile::read_matrix, through the decoders of qk/formats/ggml.hpp
// (bit-exact with ggml's to_float). Types qk has no decoder for are a clear "not supported" error.
#include <span>
#include <string>

#include "detail.hpp"
#include "qk/formats/ggml.hpp"
#include "qk/io/gguf.hpp"

namespace qk::io::detail {

void dequantize_ggml_block_type(int type, std::span<const std::byte> bytes, float* out, int64_t rows, int64_t cols,
                                const std::string& where) {
  const GgmlTypeInfo* ti = ggml_type_info(type);
  const auto t = type >= 0 ? ggml::type_from_id(static_cast<uint32_t>(type)) : std::nullopt;
  if (!ti || !t)
    fail<FormatError>("{}: reading ggml type {} as floats is not supported", where, ti ? ti->name : "unknown");
  if (rows == 0 || cols == 0) return;
  const int64_t row_bytes = ggml::row_size(*t, cols);
  if (static_cast<uint64_t>(row_bytes) * static_cast<uint64_t>(rows) != bytes.size())
    fail<FormatError>("{}: {} bytes do not hold [{}, {}] of {}", where, bytes.size(), rows, cols, ti->name);
  ggml::dequantize_rows(*t, bytes.data(), rows, cols, out);
}

}  // namespace qk::io::detail
