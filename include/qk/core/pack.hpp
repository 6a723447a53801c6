#pragma once
// Bit packing of b-bit codes (b = 1..8) into bytes.
//
// Order: a little-endian bit stream. Element i occupies bits [i·b, (i+1)·b) of the stream, where stream bit k
// is bit (k mod 8) of byte k / 8 (least significant bit first). So for b = 4 element 2j is the low nibble of
// byte j and element 2j+1 the high nibble; for b = 2 byte j holds elements 4j..4j+3 from the lowest bits up;
// b = 3 codes cross byte boundaries (element 2 uses bits 6,7 of byte 0 and bit 0 of byte 1).
// Codes are unsigned (0 .. 2^b - 1); bits above b in an input code are ignored.
#include <cstddef>
#include <cstdint>
#include <span>

#include "qk/core/error.hpp"
#include "qk/detail/row_kernels.hpp"

namespace qk {

constexpr size_t packed_size(size_t n, int bits) { return (n * static_cast<size_t>(bits) + 7) / 8; }

inline void check_pack_args(size_t n, int bits, size_t out_bytes, const char* what) {
  if (bits < 1 || bits > 8) fail<InvalidArgument>("{}: bits must be in 1..8, got {}", what, bits);
  if (out_bytes < packed_size(n, bits))
    fail<InvalidArgument>("{}: buffer of {} bytes cannot hold {} codes of {} bits", what, out_bytes, n, bits);
}

// Packs codes.size() codes into out (at least packed_size(n, bits) bytes; trailing bits of the last byte are 0).
inline void pack_bits(std::span<const uint8_t> codes, int bits, std::span<uint8_t> out) {
  const size_t n = codes.size();
  check_pack_args(n, bits, out.size(), "pack_bits");
  const uint8_t* c = codes.data();
  uint8_t* o = out.data();
  switch (bits) {
    case 8:
      for (size_t i = 0; i < n; ++i) o[i] = c[i];
      return;
    case 4:
      detail::pack_nibbles(c, static_cast<int64_t>(n), o);
      return;
    case 2: {
      size_t j = 0;
      for (; 4 * j + 3 < n; ++j)
        o[j] = static_cast<uint8_t>((c[4 * j] & 3) | ((c[4 * j + 1] & 3) << 2) | ((c[4 * j + 2] & 3) << 4) |
                                    (c[4 * j + 3] << 6));
      if (4 * j < n) {
        uint8_t b = 0;
        for (size_t k = 0; 4 * j + k < n; ++k) b |= static_cast<uint8_t>((c[4 * j + k] & 3) << (2 * k));
        o[j] = b;
      }
      return;
    }
    default: {
      const uint32_t mask = (1u << bits) - 1;
      const size_t nbytes = packed_size(n, bits);
      for (size_t j = 0; j < nbytes; ++j) o[j] = 0;
      uint32_t acc = 0;
      int filled = 0;
      size_t j = 0;
      for (size_t i = 0; i < n; ++i) {
        acc |= (c[i] & mask) << filled;
        filled += bits;
        while (filled >= 8) {
          o[j++] = static_cast<uint8_t>(acc & 0xFF);
          acc >>= 8;
          filled -= 8;
        }
      }
      if (filled > 0) o[j] = static_cast<uint8_t>(acc & 0xFF);
      return;
    }
  }
}

// Unpacks out.size() codes from the packed bytes in `in`.
inline void unpack_bits(std::span<const uint8_t> in, int bits, std::span<uint8_t> out) {
  const size_t n = out.size();
  check_pack_args(n, bits, in.size(), "unpack_bits");
  const uint8_t* p = in.data();
  uint8_t* o = out.data();
  switch (bits) {
    case 8:
      for (size_t i = 0; i < n; ++i) o[i] = p[i];
      return;
    case 4:
      for (size_t i = 0; i < n; ++i) o[i] = (p[i >> 1] >> ((i & 1) * 4)) & 0xF;
      return;
    case 2:
      for (size_t i = 0; i < n; ++i) o[i] = (p[i >> 2] >> ((i & 3) * 2)) & 3;
      return;
    default: {
      const uint32_t mask = (1u << bits) - 1;
      for (size_t i = 0; i < n; ++i) {
        const size_t bit = i * static_cast<size_t>(bits);
        const size_t byte = bit >> 3;
        const int shift = static_cast<int>(bit & 7);
        uint32_t v = p[byte];
        if (shift + bits > 8) v |= static_cast<uint32_t>(p[byte + 1]) << 8;
        o[i] = static_cast<uint8_t>((v >> shift) & mask);
      }
      return;
    }
  }
}

// Reads code i from a packed stream without unpacking the rest.
inline uint8_t packed_code(const uint8_t* p, size_t i, int bits) {
  const size_t bit = i * static_cast<size_t>(bits);
  const size_t byte = bit >> 3;
  const int shift = static_cast<int>(bit & 7);
  uint32_t v = p[byte];
  if (shift + bits > 8) v |= static_cast<uint32_t>(p[byte + 1]) << 8;
  return static_cast<uint8_t>((v >> shift) & ((1u << bits) - 1));
}

}  // namespace qk
