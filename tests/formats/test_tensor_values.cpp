// qk::formats::read_matrix / read_rows: plain tensors as io reads them, ggml block types decoded.
#include <gtest/gtest.h>

#include <cstring>
#include <span>
#include <vector>

#include "../io/io_util.hpp"
#include "qk/core/half.hpp"
#include "qk/formats/ggml.hpp"
#include "qk/formats/tensor_values.hpp"
#include "qk/io/gguf.hpp"

namespace qk::formats {
namespace {

using io::GgufWriter;
using io::RowMatrixXf;
using io::TensorFile;

TEST(TensorValues, BlockTypesAreDecodedPlainTypesConverted) {
  test::ScratchDir dir;
  const std::vector<float> plain = {1.0f, -2.5f, 3.0f, 0.25f};
  {
    GgufWriter w(dir / "q.gguf");
    w.add_tensor("q", 8, {3, 32});
    w.add_tensor("iq2", 16, {1, 256});  // IQ2_XXS: valid in GGUF, no decoder in qk
    w.add_tensor("p", 0, {2, 2});
    std::vector<std::byte> blocks(3 * 34);
    for (int r = 0; r < 3; ++r) {
      std::byte* b = blocks.data() + r * 34;
      const uint16_t d = fp32_to_fp16(0.5f * static_cast<float>(r + 1));
      std::memcpy(b, &d, 2);
      for (int i = 0; i < 32; ++i) b[2 + i] = static_cast<std::byte>(static_cast<int8_t>(i - 16));
    }
    w.write_tensor(blocks);
    w.write_tensor(std::vector<std::byte>(66));
    w.write_tensor(std::as_bytes(std::span<const float>(plain)));
    w.commit();
  }
  auto f = TensorFile::open(dir / "q.gguf");
  // Q8_0: x = d * q (ggml-common.h block_q8_0).
  const RowMatrixXf m = read_matrix(*f, f->tensor("q"));
  ASSERT_EQ(m.rows(), 3);
  ASSERT_EQ(m.cols(), 32);
  for (int r = 0; r < 3; ++r)
    for (int i = 0; i < 32; ++i) EXPECT_EQ(m(r, i), 0.5f * static_cast<float>(r + 1) * static_cast<float>(i - 16));
  // a row range decodes only those rows, to the same values
  std::vector<float> row(32);
  read_rows(*f, f->tensor("q"), 2, 1, row.data());
  for (int i = 0; i < 32; ++i) EXPECT_EQ(row[static_cast<size_t>(i)], m(2, i));
  EXPECT_THROW(read_rows(*f, f->tensor("q"), 2, 2, row.data()), InvalidArgument);
  // plain tensors as io reads them
  EXPECT_EQ(read_matrix(*f, f->tensor("p")), f->read_matrix(f->tensor("p")));
  try {
    read_matrix(*f, f->tensor("iq2"));
    ADD_FAILURE() << "IQ2_XXS decoded";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("not supported"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("tensor 'iq2'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qk::formats
