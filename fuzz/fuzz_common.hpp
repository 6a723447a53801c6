#pragma once
// Shared body of the fuzz targets: parse with one format's parser, then (if accepted) open the same bytes as a
// TensorFile and read every tensor. Only qk::Error may come out of the library; anything else aborts.
#include <cstddef>
#include <cstdint>
#include <span>

#include "io/detail.hpp"  // the parsers (src/io, private to the library)
#include "qk/io/tensor_file.hpp"
#include "qk/formats/tensor_values.hpp"

namespace qk::fuzz {

template <typename Parse>
int run(const uint8_t* data, size_t size, Parse parse) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  const std::string name = "fuzz";
  try {
    const io::detail::Parsed p = parse(bytes, name);
    for (const auto& t : p.tensors)
      if (t.offset > size || t.nbytes > size - t.offset) __builtin_trap();  // the parser's own promise
    auto f = io::TensorFile::open_memory(bytes, name);
    for (const auto& t : f->tensors()) {
      const auto b = f->bytes(t);
      volatile std::byte sink{};
      if (!b.empty()) sink = b.front() ^ b.back();
      (void)sink;
      if (t.numel() > (int64_t{1} << 22)) continue;  // bounded work per input
      try {
        (void)qk::formats::read_matrix(*f, t);
      } catch (const qk::Error&) {
      }
    }
  } catch (const qk::Error&) {
  }
  return 0;
}

}  // namespace qk::fuzz
