// Float values of any tensor (qk/formats/tensor_values.hpp): plain types through io, ggml blocks through the
// decoders of ggml.cpp.
#include "qk/formats/tensor_values.hpp"

#include <fmt/format.h>

#include "qk/core/error.hpp"
#include "qk/formats/ggml.hpp"
#include "qk/io/gguf.hpp"

namespace qk::formats {
namespace {

struct Shape2 {
  int64_t rows = 0, cols = 0;
};

Shape2 shape2(const io::TensorInfo& t) {
  const int64_t cols = t.shape.empty() ? 1 : t.shape.back();
  return {cols == 0 ? 0 : t.numel() / cols, cols};
}

}  // namespace

void read_rows(const io::TensorFile& file, const io::TensorInfo& t, int64_t r0, int64_t n, float* out, int threads) {
  if (t.dtype != io::DType::Ggml) return file.read_rows(t, r0, n, out);
  const Shape2 s = shape2(t);
  const std::string where = fmt::format("{}: tensor '{}'", file.path().string(), t.name);
  const io::GgmlTypeInfo* ti = io::ggml_type_info(t.ggml_type);
  const auto type = t.ggml_type >= 0 ? ggml::type_from_id(static_cast<uint32_t>(t.ggml_type)) : std::nullopt;
  if (!ti || !type)
    fail<FormatError>("{}: reading ggml type {} as floats is not supported", where, ti ? ti->name : "unknown");
  if (r0 < 0 || n < 0 || r0 > s.rows || n > s.rows - r0)
    fail<InvalidArgument>("{}: rows [{}, +{}) outside its {} rows", where, r0, n, s.rows);
  if (n == 0 || s.cols == 0) return;
  const int64_t row_bytes = ggml::row_size(*type, s.cols);
  const auto bytes = file.bytes(t);
  if (static_cast<uint64_t>(row_bytes) * static_cast<uint64_t>(s.rows) != bytes.size())
    fail<FormatError>("{}: {} bytes do not hold [{}, {}] of {}", where, bytes.size(), s.rows, s.cols, ti->name);
  ggml::dequantize_rows(*type, bytes.data() + r0 * row_bytes, n, s.cols, out, threads);
}

io::RowMatrixXf read_matrix(const io::TensorFile& file, const io::TensorInfo& t, int threads) {
  const Shape2 s = shape2(t);
  io::RowMatrixXf m(s.rows, s.cols);
  read_rows(file, t, 0, s.rows, m.data(), threads);
  return m;
}

io::RowMatrixXf load_matrix(const std::filesystem::path& path, std::string_view name) {
  auto f = io::TensorFile::open(path);
  if (!name.empty()) return read_matrix(*f, f->tensor(name));
  if (f->tensors().size() != 1)
    fail<InvalidArgument>("{}: holds {} tensors; name the one to load", path.string(), f->tensors().size());
  const io::TensorInfo& t = f->tensors().front();
  if (t.shape.size() > 2)
    fail<ShapeError>("{}: tensor '{}' has rank {}; a matrix needs rank 1 or 2", path.string(), t.name,
                     t.shape.size());
  return read_matrix(*f, t);
}

}  // namespace qk::formats
