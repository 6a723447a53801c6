#include "quantized.hpp"

#include <qk/calib/calib.hpp>
#include <qk/core/error.hpp>
#include <qk/kernels/gemm.hpp>

namespace qat_mlp {
namespace {

qk::kernels::PackedS8 pack_int8(const Matrix& w) { return qk::kernels::pack_s8(qk::quantize(w, qk::QuantScheme::per_channel(8))); }

// The activation scheme of static quantization: unsigned 8-bit, asymmetric (zero-point 0 on non-negative data).
qk::QuantScheme activation_scheme() { return qk::QuantScheme::per_tensor(8, /*symmetric=*/false, /*is_signed=*/false); }

// A per-channel 4-bit tensor seen as per-group with one group per row: the int4 kernel's packing.
qk::kernels::PackedW4 pack_int4(qk::QuantizedTensor q) {
  if (q.scheme.granularity == qk::Granularity::PerChannel) {
    q.scheme.granularity = qk::Granularity::PerGroup;
    q.scheme.group_size = q.cols;
  }
  return qk::kernels::pack_w4(q);
}

// y = layer(x) for a weight-only quantized layer.
void weight_only_linear(const qk::QuantizedTensor& w, const Eigen::VectorXf& b, const Matrix& x, Matrix& y,
                        int threads) {
  if (w.scheme.bits == 4) {
    const qk::kernels::PackedW4 p = pack_int4(w);
    y.resize(x.rows(), w.rows);
    qk::kernels::gemm_w4_f32(x.data(), x.rows(), x.cols(), p, b.data(), y.data(), y.cols(), {.threads = threads});
  } else {
    linear(x, w.dequantize(), b, y, threads);
  }
}

}  // namespace

Matrix logits_w8a8_dynamic(const Mlp& m, const Matrix& x, int threads) {
  const qk::kernels::PackedS8 w1 = pack_int8(m.l1.w), w2 = pack_int8(m.l2.w);
  const qk::kernels::Exec ex{.threads = threads};
  Matrix h(x.rows(), w1.n), z(x.rows(), w2.n);
  qk::kernels::linear_w8a8_dynamic(x.data(), x.rows(), x.cols(), w1, m.l1.b.data(), h.data(), h.cols(), ex);
  h = h.cwiseMax(0.0f);
  qk::kernels::linear_w8a8_dynamic(h.data(), h.rows(), h.cols(), w2, m.l2.b.data(), z.data(), z.cols(), ex);
  return z;
}

StaticRanges calibrate(const Mlp& m, const Matrix& x, std::string_view method, int threads) {
  const qk::QuantScheme s = activation_scheme();
  StaticRanges r;
  r.method = std::string(method);
  auto o1 = qk::calib::make_observer(method, s);
  o1->observe(x.data(), x.size());
  const qk::calib::CalibResult c1 = o1->result();
  const Matrix h = hidden(m, x, threads);
  auto o2 = qk::calib::make_observer(method, s);
  o2->observe(h.data(), h.size());
  const qk::calib::CalibResult c2 = o2->result();
  r.scale1 = c1.scale;
  r.zero1 = c1.zero_point;
  r.scale2 = c2.scale;
  r.zero2 = c2.zero_point;
  return r;
}

Matrix logits_w8a8_static(const Mlp& m, const StaticRanges& r, const Matrix& x, int threads) {
  const qk::kernels::PackedS8 w1 = pack_int8(m.l1.w), w2 = pack_int8(m.l2.w);
  const qk::kernels::Exec ex{.threads = threads};
  Matrix h(x.rows(), w1.n), z(x.rows(), w2.n);
  qk::kernels::linear_w8a8_static(x.data(), x.rows(), x.cols(), r.scale1, r.zero1, w1, m.l1.b.data(), h.data(),
                                  h.cols(), ex);
  h = h.cwiseMax(0.0f);
  qk::kernels::linear_w8a8_static(h.data(), h.rows(), h.cols(), r.scale2, r.zero2, w2, m.l2.b.data(), z.data(),
                                  z.cols(), ex);
  return z;
}

QuantizedMlp quantize_weights(const Mlp& m, const qk::QuantScheme& s, const qk::QuantParams* p1,
                              const qk::QuantParams* p2) {
  return {qk::quantize(m.l1.w, s, p1), qk::quantize(m.l2.w, s, p2), m.l1.b, m.l2.b};
}

Matrix logits_weight_only(const QuantizedMlp& q, const Matrix& x, int threads) {
  Matrix h, z;
  weight_only_linear(q.w1, q.b1, x, h, threads);
  h = h.cwiseMax(0.0f);
  weight_only_linear(q.w2, q.b2, h, z, threads);
  return z;
}

}  // namespace qat_mlp
