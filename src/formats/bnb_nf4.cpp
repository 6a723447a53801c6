// The bitsandbytes NF4 serialization (qk/formats/bnb_nf4.hpp).
#include "qk/formats/bnb_nf4.hpp"

#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "qk/core/error.hpp"

namespace qk::formats::bnb {
namespace {

std::string torch_dtype_name(io::DType d) {
  switch (d) {
    case io::DType::F16: return "float16";
    case io::DType::BF16: return "bfloat16";
    default: return "float32";
  }
}

// The quant_state JSON. nested_offset is printed with a fixed width (10 significant digits, enough to give the
// float32 back exactly), so the layout's size is known before the offset is.
std::string state_json(const std::vector<int64_t>& shape, io::DType dtype, float offset) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  const float off = std::isfinite(offset) && offset >= 1e-30f ? offset : 0.0f;
  return fmt::format(
      "{{\"quant_type\": \"nf4\", \"blocksize\": {}, \"dtype\": \"{}\", \"shape\": [{}], \"nested_blocksize\": {}, "
      "\"nested_dtype\": \"float32\", \"nested_offset\": {:.9e}}}",
      kNf4Block, torch_dtype_name(dtype), s, kNf4NestedBlock, off);
}

template <typename T>
std::vector<std::byte> bytes_of(const std::vector<T>& v) {
  std::vector<std::byte> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

}  // namespace

std::vector<Part> nf4_parts(const std::string& name, const std::vector<int64_t>& shape, io::DType dtype) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  const int64_t blocks = (n + kNf4Block - 1) / kNf4Block;
  return {{name, io::DType::U8, {(n + 1) / 2, 1}, {}},
          {name + ".absmax", io::DType::U8, {blocks}, {}},
          {name + ".quant_map", io::DType::F32, {16}, {}},
          {name + ".nested_absmax", io::DType::F32, {(blocks + kNf4NestedBlock - 1) / kNf4NestedBlock}, {}},
          {name + ".nested_quant_map", io::DType::F32, {256}, {}},
          {name + ".quant_state.bitsandbytes__nf4", io::DType::U8,
           {static_cast<int64_t>(state_json(shape, dtype, 0.0f).size())}, {}}};
}

uint64_t nf4_bytes(const std::string& name, const std::vector<int64_t>& shape, io::DType dtype) {
  uint64_t total = 0;
  for (const Part& p : nf4_parts(name, shape, dtype)) {
    uint64_t n = io::dtype_size(p.dtype);
    for (int64_t d : p.shape) n *= static_cast<uint64_t>(d);
    total += n;
  }
  return total;
}

Nf4Tensor nf4_quantize_weight(std::span<const float> w) {
  Nf4Options o;
  o.block = kNf4Block;
  o.dq_block = kNf4NestedBlock;
  o.double_quant = true;
  return nf4_quantize(w, o);
}

std::vector<Part> nf4_encode(const std::string& name, const std::vector<int64_t>& shape, io::DType dtype,
                             const Nf4Tensor& q) {
  if (!q.double_quant || q.block != kNf4Block || q.dq_block != kNf4NestedBlock)
    fail<InvalidArgument>("tensor '{}': the bitsandbytes NF4 layout needs double quantization, blocks 64/256", name);
  std::vector<Part> parts = nf4_parts(name, shape, dtype);
  // qk packs element 2j in the low nibble, bitsandbytes in the high one
  std::vector<uint8_t> codes(q.packed.size());
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>((q.packed[i] << 4) | (q.packed[i] >> 4));
  const std::vector<float> table(nf4::kTable.begin(), nf4::kTable.end());
  const std::string json = state_json(shape, dtype, q.offset);
  parts[0].bytes = bytes_of(codes);
  parts[1].bytes = bytes_of(q.absmax_codes);
  parts[2].bytes = bytes_of(table);
  parts[3].bytes = bytes_of(q.dq_scale);
  parts[4].bytes = bytes_of(nf4::dynamic_map().levels());
  parts[5].bytes = bytes_of(std::vector<char>(json.begin(), json.end()));
  return parts;
}

}  // namespace qk::formats::bnb
