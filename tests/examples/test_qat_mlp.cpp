// The digits experiment of examples/qat_mlp (its code is compiled into this test): the orderings its table must
// show, and the same bytes on 1 and 2 threads.
//
// Bounds, with the figures of seeds 1..10 (docs/methods.md) for scale: on 360 test images one image is 0.28 points.
//  - fp32 >= 0.95: a working classifier (measured 0.975..0.986).
//  - every int8 PTQ within 1 point of fp32: 8-bit weights and activations move a logit by far less than the margins
//    of all but a few images (measured: at most 1 image either way).
//  - QAT int4 within 1.5 points of fp32 (measured: within 0.6 points, i.e. 2 images).
//  - PTQ int2 at least 3 points below fp32, so that the int2 comparison is about something (measured 6.4..28.1).
//  - QAT int2 at least 5 points above PTQ int2, and within 2 points of fp32. Why that margin: RTN onto four levels
//    per row ({-2, -1, 0, 1}·s with s = 2·max|w|/3) moves every weight by up to a third of its row's largest
//    magnitude and clips the positive tail to two thirds of it; nothing compensates, and 7..30% of the test images
//    flip. QAT trains the weights (and LSQ the step) against that same grid, so the network learns to work with it
//    and recovers to within a point of fp32. The smallest gap seen over seeds 1..10 was 5.6 points (seed 9); the
//    seed tested here shows 11.
// The bounds leave room for other machines: qk's sgemm differs between ISA paths in the last bits, so training
// there may end a few images away from these figures.
#include <cmath>

#include <gtest/gtest.h>

#include "experiment.hpp"

namespace qat_mlp {
namespace {

const char* const kKeys[] = {"fp32",
                             "ptq_int8_dynamic",
                             "ptq_int8_static_minmax",
                             "ptq_int8_static_percentile",
                             "ptq_int8_static_entropy",
                             "ptq_int8_static_mse",
                             "ptq_int4",
                             "ptq_int2",
                             "qat_int4_ste",
                             "qat_int2_ste",
                             "qat_int4_lsq",
                             "qat_int2_lsq"};

const Report& report(int threads) {
  static Report r1, r2;
  static bool done1 = false, done2 = false;
  Report& r = threads == 1 ? r1 : r2;
  bool& done = threads == 1 ? done1 : done2;
  if (!done) {
    ExperimentOptions o;
    o.data = QAT_MLP_DATA;
    o.seed = 1;
    o.threads = threads;
    r = run_experiment(o);
    done = true;
  }
  return r;
}

// One test per experiment run (ctest runs every TEST in its own process).
TEST(QatMlp, TableHasEveryKeyAndTheOrderingsHold) {
  const Report& r = report(1);
  ASSERT_EQ(r.rows.size(), std::size(kKeys));
  for (size_t i = 0; i < r.rows.size(); ++i) {
    EXPECT_EQ(r.rows[i].key, kKeys[i]);
    EXPECT_GE(r.rows[i].accuracy, 0.0);
    EXPECT_LE(r.rows[i].accuracy, 1.0);
  }
  EXPECT_EQ(r.train_size + r.test_size, 1797);
  EXPECT_EQ(r.test_size, 360);
  EXPECT_THROW(r.accuracy("qat_int3_ste"), qk::InvalidArgument);

  const double fp32 = r.accuracy("fp32");
  EXPECT_GE(fp32, 0.95);
  for (const char* k : {"ptq_int8_dynamic", "ptq_int8_static_minmax", "ptq_int8_static_percentile",
                        "ptq_int8_static_entropy", "ptq_int8_static_mse"})
    EXPECT_LE(std::fabs(r.accuracy(k) - fp32), 0.01) << k;
  EXPECT_GE(r.accuracy("qat_int4_ste"), fp32 - 0.015);
  EXPECT_GE(r.accuracy("qat_int4_lsq"), fp32 - 0.015);
  EXPECT_LE(r.accuracy("ptq_int2"), fp32 - 0.03);
  for (const char* k : {"qat_int2_ste", "qat_int2_lsq"}) {
    EXPECT_GE(r.accuracy(k), r.accuracy("ptq_int2") + 0.05) << k;
    EXPECT_GE(r.accuracy(k), fp32 - 0.02) << k;
  }
}

TEST(QatMlp, SameBytesOnOneAndTwoThreads) {
  const Report& a = report(1);
  const Report& b = report(2);
  EXPECT_EQ(a.fingerprint, b.fingerprint);
  EXPECT_EQ(a.fp32_train_loss, b.fp32_train_loss);
  ASSERT_EQ(a.rows.size(), b.rows.size());
  for (size_t i = 0; i < a.rows.size(); ++i) EXPECT_EQ(a.rows[i].accuracy, b.rows[i].accuracy) << a.rows[i].key;
}

}  // namespace
}  // namespace qat_mlp
