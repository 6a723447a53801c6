#include "experiment.hpp"

#include <cstring>

#include <fmt/format.h>

#include <qk/core/error.hpp>

#include "digits.hpp"
#include "quantized.hpp"

namespace qat_mlp {
namespace {

void fnv1a(uint64_t& h, const Matrix& m) {
  const auto* p = reinterpret_cast<const unsigned char*>(m.data());
  for (size_t i = 0; i < static_cast<size_t>(m.size()) * sizeof(float); ++i) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
}

}  // namespace

double Report::accuracy(std::string_view key) const {
  for (const Row& r : rows)
    if (r.key == key) return r.accuracy;
  qk::fail<qk::InvalidArgument>("report has no row '{}'", key);
}

Report run_experiment(const ExperimentOptions& o) {
  const Split d = load_digits(o.data, o.seed);
  Report rep;
  rep.train_size = d.train.size();
  rep.test_size = d.test.size();
  rep.fingerprint = 14695981039346656037ULL;
  auto add = [&](std::string key, std::string w, std::string a, const Matrix& logits) {
    fnv1a(rep.fingerprint, logits);
    rep.rows.push_back({std::move(key), std::move(w), std::move(a), accuracy(logits, d.test.y)});
  };

  // The float model.
  Rng rng(o.seed);
  const Mlp init = make_mlp(64, 128, 10, rng);
  TrainOptions fo = o.fp32;
  fo.quant = WeightQuant::none;
  fo.threads = o.threads;
  const Trained base = train(init, d.train, fo, rng);
  rep.fp32_train_loss = base.final_loss;
  add("fp32", "fp32", "fp32", forward(base.model, d.test.x, o.threads));

  // PTQ, 8 bits: int8 per-channel weights with dynamic or calibrated static activations.
  add("ptq_int8_dynamic", "int8 per-channel", "int8 per-row, dynamic",
      logits_w8a8_dynamic(base.model, d.test.x, o.threads));
  for (const char* method : {"minmax", "percentile", "entropy", "mse"}) {
    const StaticRanges r = calibrate(base.model, d.train.x, method, o.threads);
    add(fmt::format("ptq_int8_static_{}", method), "int8 per-channel",
        fmt::format("uint8 per-tensor, static ({}: {:.4g}, {:.4g})", method, 255.0f * r.scale1, 255.0f * r.scale2),
        logits_w8a8_static(base.model, r, d.test.x, o.threads));
  }

  // PTQ, 4 and 2 bits: weight-only RTN on per-channel min/max.
  for (int bits : {4, 2})
    add(fmt::format("ptq_int{}", bits), fmt::format("int{} per-channel, RTN", bits), "fp32",
        logits_weight_only(quantize_weights(base.model, weight_scheme(bits)), d.test.x, o.threads));

  // QAT from the float model. Each run has its own batch-order stream, so runs do not depend on each other.
  uint64_t run = 0;
  for (WeightQuant q : {WeightQuant::ste, WeightQuant::lsq})
    for (int bits : {4, 2}) {
      TrainOptions qo = o.qat;
      qo.quant = q;
      qo.bits = bits;
      qo.threads = o.threads;
      Rng qrng(o.seed * 1000003ULL + ++run);
      const Trained t = train(base.model, d.train, qo, qrng);
      const qk::QuantScheme s = weight_scheme(bits);
      QuantizedMlp qm;
      if (q == WeightQuant::lsq) {
        const qk::QuantParams p1 = qk::lsq_to_params(*t.step1, s), p2 = qk::lsq_to_params(*t.step2, s);
        qm = quantize_weights(t.model, s, &p1, &p2);
      } else {
        qm = quantize_weights(t.model, s);
      }
      const bool lsq = q == WeightQuant::lsq;
      add(fmt::format("qat_int{}_{}", bits, lsq ? "lsq" : "ste"),
          fmt::format("int{} per-channel, {}", bits, lsq ? "learned step (LSQ)" : "min/max step (STE)"), "fp32",
          logits_weight_only(qm, d.test.x, o.threads));
    }
  return rep;
}

}  // namespace qat_mlp
