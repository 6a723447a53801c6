#include "digits.hpp"

#include <numeric>
#include <span>

#include <qk/core/error.hpp>
#include <qk/io/tensor_file.hpp>

namespace qat_mlp {

Split load_digits(const std::filesystem::path& npy, uint64_t seed, int64_t test_count) {
  const auto file = qk::io::TensorFile::open(npy);
  if (file->tensors().size() != 1)
    qk::fail<qk::FormatError>("{}: expected one array, found {}", npy.string(), file->tensors().size());
  const qk::io::TensorInfo& t = file->tensors()[0];
  if (t.dtype != qk::io::DType::U8 || t.shape.size() != 2 || t.shape[1] != 65)
    qk::fail<qk::FormatError>("{}: expected a uint8 [n, 65] array, found {} {}", npy.string(), t.type_name(),
                              qk::io::shape_text(t.shape));
  const int64_t n = t.shape[0];
  if (test_count <= 0 || test_count >= n)
    qk::fail<qk::InvalidArgument>("{}: test set of {} images out of {}", npy.string(), test_count, n);
  const std::span<const std::byte> bytes = file->bytes(t);
  auto at = [&](int64_t r, int64_t c) { return static_cast<int>(bytes[static_cast<size_t>(r * 65 + c)]); };
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < 64; ++c)
      if (at(r, c) > 16) qk::fail<qk::FormatError>("{}: pixel [{}, {}] is {} (0..16)", npy.string(), r, c, at(r, c));
    if (at(r, 64) > 9) qk::fail<qk::FormatError>("{}: label of image {} is {} (0..9)", npy.string(), r, at(r, 64));
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  Rng rng(seed);
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(rng.below(static_cast<uint64_t>(i + 1)))]);
  auto fill = [&](Dataset& d, int64_t begin, int64_t end) {
    d.x.resize(end - begin, 64);
    d.y.resize(static_cast<size_t>(end - begin));
    for (int64_t i = begin; i < end; ++i) {
      const int64_t r = order[static_cast<size_t>(i)];
      for (int64_t c = 0; c < 64; ++c) d.x(i - begin, c) = static_cast<float>(at(r, c)) / 16.0f;
      d.y[static_cast<size_t>(i - begin)] = at(r, 64);
    }
  };
  Split s;
  fill(s.test, 0, test_count);
  fill(s.train, test_count, n);
  return s;
}

}  // namespace qat_mlp
