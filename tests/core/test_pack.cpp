#include "qk/core/pack.hpp"

#include <gtest/gtest.h>

#include "test_util.hpp"

using namespace qk;

TEST(Pack, RoundTripsEveryWidthAndOddLength) {
  auto g = qk::test::rng(11);
  for (int bits = 1; bits <= 8; ++bits)
    for (size_t n : {0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 127, 1001}) {
      std::uniform_int_distribution<int> d(0, (1 << bits) - 1);
      std::vector<uint8_t> codes(n), back(n, 0xAA);
      for (auto& c : codes) c = static_cast<uint8_t>(d(g));
      std::vector<uint8_t> packed(packed_size(n, bits), 0xFF);
      pack_bits(codes, bits, packed);
      unpack_bits(packed, bits, back);
      ASSERT_EQ(codes, back) << bits << " bits, n=" << n;
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(packed_code(packed.data(), i, bits), codes[i]);
      // Bits past the last code are zero (so packed bytes are deterministic).
      if (n * bits % 8) {
        const int used = static_cast<int>(n * bits % 8);
        ASSERT_EQ(packed.back() >> used, 0) << bits << " bits, n=" << n;
      }
    }
}

TEST(Pack, DocumentedOrder) {
  std::vector<uint8_t> c4 = {0x1, 0x2, 0x3, 0x4, 0x5};
  std::vector<uint8_t> p4(3);
  pack_bits(c4, 4, p4);
  EXPECT_EQ(p4, (std::vector<uint8_t>{0x21, 0x43, 0x05}));  // element 2j low nibble, 2j+1 high nibble

  std::vector<uint8_t> c2 = {0, 1, 2, 3, 3};
  std::vector<uint8_t> p2(2);
  pack_bits(c2, 2, p2);
  EXPECT_EQ(p2, (std::vector<uint8_t>{0b11100100, 0b11}));

  std::vector<uint8_t> c3 = {0b101, 0b011, 0b110};  // bits: 101 | 011<<3 | 110<<6 -> 0b10011101, then 0b1
  std::vector<uint8_t> p3(2);
  pack_bits(c3, 3, p3);
  EXPECT_EQ(p3[0], 0b10011101);
  EXPECT_EQ(p3[1], 0b1);

  std::vector<uint8_t> c8 = {0, 255, 7};
  std::vector<uint8_t> p8(3);
  pack_bits(c8, 8, p8);
  EXPECT_EQ(p8, c8);
}

TEST(Pack, IgnoresBitsAboveTheWidth) {
  std::vector<uint8_t> c = {0xF3, 0xFE};
  std::vector<uint8_t> p(1);
  pack_bits(c, 2, p);
  EXPECT_EQ(p[0], 0b1011);
}

TEST(Pack, RejectsShortBuffersAndBadWidths) {
  std::vector<uint8_t> c(9, 1), p(4);
  EXPECT_THROW(pack_bits(c, 4, p), InvalidArgument);
  EXPECT_THROW(pack_bits(c, 0, p), InvalidArgument);
  EXPECT_THROW(pack_bits(c, 9, p), InvalidArgument);
  std::vector<uint8_t> out(9);
  EXPECT_THROW(unpack_bits(p, 4, out), InvalidArgument);
}
