// Prints how the core quantizer's error falls with bits and finer granularity on a Gaussian weight matrix with
// heavy rows: the trade-off table a user looks at before choosing a scheme.
//   example_rtn_error_table [rows cols]
#include <cstdio>
#include <cstdlib>
#include <random>

#include <qk/qk.hpp>

int main(int argc, char** argv) {
  const Eigen::Index rows = argc > 2 ? std::atol(argv[1]) : 256, cols = argc > 2 ? std::atol(argv[2]) : 1024;
  std::mt19937 g(7);
  std::normal_distribution<float> d(0.0f, 0.02f);
  qk::RowMatrixXf W(rows, cols);
  for (Eigen::Index r = 0; r < rows; ++r)
    for (Eigen::Index c = 0; c < cols; ++c) W(r, c) = d(g) * (r % 16 == 0 ? 8.0f : 1.0f);
  std::printf("%-28s %12s %10s %10s\n", "scheme", "MSE", "SQNR dB", "cosine");
  for (int bits : {8, 6, 4, 3, 2}) {
    for (auto s : {qk::QuantScheme::per_tensor(bits), qk::QuantScheme::per_channel(bits),
                   qk::QuantScheme::per_group(bits, 128, false), qk::QuantScheme::per_group(bits, 32, false)}) {
      try {
        const qk::RowMatrixXf Wq = qk::fake_quant(W, s);
        std::printf("%-28s %12.4e %10.2f %10.6f\n", s.describe().c_str(), qk::mse(W, Wq), qk::sqnr_db(W, Wq),
                    qk::cosine(W, Wq));
      } catch (const qk::Error& e) {
        std::fprintf(stderr, "%s: %s\n", s.describe().c_str(), e.what());
        return 1;
      }
    }
  }
  return 0;
}
