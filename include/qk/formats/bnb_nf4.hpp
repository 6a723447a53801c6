#pragma once
// The bitsandbytes 4-bit serialization as transformers writes it (bitsandbytes functional.py, QuantState.as_dict
// with packed=True; transformers' bnb_4bit quantizer), for NF4 with double quantization (qk/core/codebook.hpp).
// A weight W [out, in] named NAME (n = out·in elements, blocks of 64, constants in groups of 256) becomes:
//   NAME                                          U8  [ceil(n/2), 1]  codes, element 2j in the HIGH nibble of byte j
//   NAME.absmax                                   U8  [ceil(n/64)]    dynamic-map code of each block's absmax - offset
//   NAME.quant_map                                F32 [16]            the NF4 table
//   NAME.nested_absmax                            F32 [ceil(n/64/256)] scale of each group of 256 constants
//   NAME.nested_quant_map                         F32 [256]           the signed dynamic map
//   NAME.quant_state.bitsandbytes__nf4            U8  [json bytes]    JSON: quant_type, blocksize, dtype, shape,
//                                                                     nested_blocksize, nested_dtype, nested_offset
// W[i] = quant_map[code_i] · (nested_quant_map[absmax[i/64]] · nested_absmax[i/64/256] + nested_offset).
// QuantizedCheckpoint (checkpoint.hpp) reads it back; this header writes it.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "qk/core/codebook.hpp"
#include "qk/io/tensor_file.hpp"

namespace qk::formats::bnb {

inline constexpr int64_t kNf4Block = 64, kNf4NestedBlock = 256;

// One stored tensor of the layout, in write order.
struct Part {
  std::string name;
  io::DType dtype;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;  // filled by nf4_encode; empty in nf4_parts
};

// The parts NAME becomes (names, types, shapes; no bytes), for a weight of `shape` whose original element type is
// `dtype` (recorded in the quant state).
std::vector<Part> nf4_parts(const std::string& name, const std::vector<int64_t>& shape, io::DType dtype);
// Their total size in bytes.
uint64_t nf4_bytes(const std::string& name, const std::vector<int64_t>& shape, io::DType dtype);
// NF4 with double quantization in blocks of 64 / 256, as bitsandbytes quantizes (absmax per block).
Nf4Tensor nf4_quantize_weight(std::span<const float> w);
// The parts with their bytes. InvalidArgument for a tensor quantized with other block sizes.
std::vector<Part> nf4_encode(const std::string& name, const std::vector<int64_t>& shape, io::DType dtype,
                             const Nf4Tensor& q);

}  // namespace qk::formats::bnb
