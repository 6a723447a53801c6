// Quantizes a small matrix per group to 4 bits with an installed qk and checks the error is sane.
#include <cstdio>
#include <random>

#include <qk/qk.hpp>

int main() {
  std::mt19937 g(42);
  std::normal_distribution<float> d(0.0f, 0.02f);
  qk::RowMatrixXf W(64, 256);
  for (Eigen::Index i = 0; i < W.size(); ++i) W.data()[i] = d(g);
  const auto scheme = qk::QuantScheme::per_group(4, 32, /*symmetric=*/false);
  const qk::QuantizedTensor q = qk::quantize(W, scheme);
  const qk::RowMatrixXf Wq = q.dequantize();
  const double sqnr = qk::sqnr_db(W, Wq);
  std::printf("qk %s: %s on 64x256, %zu bytes packed, SQNR %.2f dB\n", qk::version(), scheme.describe().c_str(),
              q.packed.size(), sqnr);
  return sqnr > 15.0 ? 0 : 1;
}
