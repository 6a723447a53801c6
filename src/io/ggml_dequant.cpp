// Dequantization of ggml block types for TensorFile::read_matrix. The block decoders live in qk/formats/ggml.hpp
// (the formats work); until a type has a decoder, reading it as floats is a clear "not supported" error.
#include <span>
#include <string>

#include "detail.hpp"
#include "qk/io/gguf.hpp"

namespace qk::io::detail {

void dequantize_ggml_block_type(int type, std::span<const std::byte> bytes, float* out, int64_t n,
                                const std::string& where) {
  (void)bytes;
  (void)out;
  (void)n;
  const GgmlTypeInfo* ti = ggml_type_info(type);
  fail<FormatError>("{}: reading ggml type {} as floats is not supported yet", where, ti ? ti->name : "unknown");
}

}  // namespace qk::io::detail
