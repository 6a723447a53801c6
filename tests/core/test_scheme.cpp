#include "qk/core/scheme.hpp"

#include <gtest/gtest.h>

#include "qk/core/params.hpp"

using namespace qk;

TEST(QuantScheme, CodeRanges) {
  EXPECT_EQ(QuantScheme::per_tensor(8).qmin(), -128);
  EXPECT_EQ(QuantScheme::per_tensor(8).qmax(), 127);
  EXPECT_EQ(QuantScheme::per_tensor(4, true, false).qmin(), 0);
  EXPECT_EQ(QuantScheme::per_tensor(4, true, false).qmax(), 15);
  QuantScheme n = QuantScheme::per_tensor(8);
  n.narrow_range = true;
  EXPECT_EQ(n.qmin(), -127);
  EXPECT_EQ(QuantScheme::per_tensor(2).qmin(), -2);
  EXPECT_EQ(QuantScheme::per_tensor(2).qmax(), 1);
}

TEST(QuantScheme, RejectsImpossibleSchemes) {
  EXPECT_THROW(QuantScheme::per_tensor(1).validate(), InvalidArgument);
  EXPECT_THROW(QuantScheme::per_tensor(9).validate(), InvalidArgument);
  EXPECT_THROW(QuantScheme::per_group(4, 0).validate(), InvalidArgument);
  EXPECT_THROW(QuantScheme::per_group(4, 32).validate_for(4, 100), InvalidArgument);
  QuantScheme n = QuantScheme::per_tensor(8, false);
  n.narrow_range = true;
  EXPECT_THROW(n.validate(), InvalidArgument);
  EXPECT_NO_THROW(QuantScheme::per_group(4, 32).validate_for(4, 128));
}

TEST(QuantScheme, GroupErrorNamesTheSizes) {
  try {
    QuantScheme::per_group(4, 48).validate_for(2, 100);
    FAIL() << "no throw";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("48"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("100"), std::string::npos);
  }
}

TEST(QuantScheme, ParamGridShape) {
  auto g = QuantScheme::per_group(4, 32);
  EXPECT_EQ(g.param_rows(8), 8);
  EXPECT_EQ(g.param_cols(128), 4);
  EXPECT_EQ(QuantScheme::per_channel(8).param_cols(128), 1);
  EXPECT_EQ(QuantScheme::per_tensor(8).param_rows(8), 1);
}

TEST(RangeToParams, MatchesPyTorchConventions) {
  // torch.ao qint8 symmetric: scale = amax / 127.5, zp 0; quint8 affine: scale = (max - min)/255.
  // Figures from shared/data/calib reference.json (D1): min -4.494821548461914, max 4.545573711395264.
  float s;
  int z;
  range_to_params(-4.494821548461914f, 4.545573711395264f, QuantScheme::per_tensor(8, true, true), s, z);
  EXPECT_FLOAT_EQ(s, 0.0356515571475029f);
  EXPECT_EQ(z, 0);
  range_to_params(-4.494821548461914f, 4.545573711395264f, QuantScheme::per_tensor(8, false, false), s, z);
  EXPECT_FLOAT_EQ(s, 0.03545253351330757f);
  EXPECT_EQ(z, 127);
}

TEST(RangeToParams, GptqSymmetricUnsigned) {
  // GPTQ sym 4-bit: scale = 2·amax/15, zero = 8.
  float s;
  int z;
  range_to_params(-0.3f, 0.75f, QuantScheme::per_tensor(4, true, false), s, z);
  EXPECT_FLOAT_EQ(s, 1.5f / 15.0f);
  EXPECT_EQ(z, 8);
}

TEST(RangeToParams, DegenerateRangesGiveFiniteScales) {
  float s;
  int z;
  for (auto sch : {QuantScheme::per_tensor(8), QuantScheme::per_tensor(4, false), QuantScheme::per_tensor(3, false, false)}) {
    range_to_params(0.f, 0.f, sch, s, z);
    EXPECT_TRUE(std::isfinite(s) && s > 0);
    range_to_params(3.f, 3.f, sch, s, z);
    EXPECT_TRUE(std::isfinite(s) && s > 0);
    range_to_params(-3.4e38f, 3.4e38f, sch, s, z);
    EXPECT_TRUE(std::isfinite(s) && s > 0);
    range_to_params(1e-44f, 2e-44f, sch, s, z);
    EXPECT_TRUE(std::isfinite(s) && s > 0);
    EXPECT_GE(z, sch.qmin());
    EXPECT_LE(z, sch.qmax());
  }
  EXPECT_THROW(range_to_params(0.f, std::numeric_limits<float>::infinity(), QuantScheme::per_tensor(8), s, z),
               NumericError);
  EXPECT_THROW(range_to_params(std::nanf(""), 1.f, QuantScheme::per_tensor(8), s, z), NumericError);
}
