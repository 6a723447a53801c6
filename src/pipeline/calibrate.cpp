// The calibration run (src/pipeline/internal.hpp): the model block by block, each block's calibrated weights
// quantized sequentially as the GPTQ reference does (IST-DASLab/gptq, llama.py with --true-sequential): inside a
// block group by group in the order the block computes them (for Llama attn_q/k/v, attn_output, ffn_gate/up,
// ffn_down). A group's inputs are computed with every earlier weight already replaced by what the output file will
// hold (quantized, or the fallback's rounding), and each sequence's hidden states are carried from block to block:
// memory holds one block's float weights, one [tokens, dim] state per sequence, and one group's statistics.
#include <algorithm>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "internal.hpp"
#include "qk/core/error.hpp"
#include "qk/core/half.hpp"
#include "qk/core/threads.hpp"
#include "qk/detail/omp.hpp"
#include "qk/formats/ggml.hpp"
#include "qk/methods/awq.hpp"
#include "qk/methods/awq_search.hpp"
#include "qk/methods/gptq.hpp"
#include "qk/methods/hessian.hpp"

namespace qk::pipeline::detail {
namespace {

bool calibrated(Method m) { return m == Method::Gptq || m == Method::Awq || m == Method::RtnImatrix; }

EncodedTensor from_bytes(const std::vector<uint8_t>& enc) {
  std::vector<std::byte> b(enc.size());
  if (!enc.empty()) std::memcpy(b.data(), enc.data(), enc.size());
  return EncodedTensor::of(std::move(b));
}

// What the output file will hold for a weight that the run does not quantize (RTN, a fallback, a copy).
io::RowMatrixXf effective_weight(const TensorPlan& t, const io::RowMatrixXf& W, const float* importance, int threads) {
  switch (t.action) {
    case Action::Ggml: {
      const auto enc = ggml::quantize(t.block, W.data(), W.rows(), W.cols(), importance, threads);
      io::RowMatrixXf D(W.rows(), W.cols());
      ggml::dequantize_rows(t.block, enc.data(), W.rows(), W.cols(), D.data(), threads);
      return D;
    }
    case Action::Convert: {
      io::RowMatrixXf D = W;
      if (t.dtype == io::DType::F16)
        for (Eigen::Index i = 0; i < D.size(); ++i) D.data()[i] = fp16_to_fp32(fp32_to_fp16(D.data()[i]));
      else if (t.dtype == io::DType::BF16)
        for (Eigen::Index i = 0; i < D.size(); ++i) D.data()[i] = bf16_to_fp32(fp32_to_bf16(D.data()[i]));
      return D;
    }
    default: return W;  // copies, and int RTN (not reached: a calibrated run quantizes int weights with its method)
  }
}

}  // namespace

std::unique_ptr<ArchitectureAdapter> runnable_model(const formats::QuantizedCheckpoint& in) {
  std::unique_ptr<ArchitectureAdapter> m;
  try {
    m = make_adapter(in.file());
  } catch (const FormatError& e) {
    fail<FormatError>("calibration from tokens runs the model, which must be a Llama GGUF: {}", e.what());
  }
  if (!m)
    fail<FormatError>("{}: calibration from tokens runs the model, which must be a Llama GGUF (qk has no adapter for "
                      "its architecture)",
                      in.path().string());
  return m;
}

CalibrationRun::CalibrationRun(const formats::QuantizedCheckpoint& in, const Plan& plan, TokenSource& source,
                               const QuantizeOptions& o, const ProgressFn& progress)
    : in_(in), plan_(plan), source_(source), o_(o), progress_(progress) {
  model_ = runnable_model(in);
  for (int b = 0; b < model_->blocks(); ++b) {
    for (const LinearGroup& g : model_->groups(b)) {
      bool folds = o_.awq_scales && !g.norm.empty();
      const TensorPlan* first = nullptr;
      for (const auto& n : g.weights) {
        const TensorPlan* t = plan.find(n);
        if (!t) fail<FormatError>("{}: tensor '{}' is missing", in.path().string(), n);
        if (calibrated(t->method)) block_of_[n] = b;
        if (!first) first = t;
        folds = folds && t->method == Method::Awq && t->action == Action::Ggml && t->block == first->block;
      }
      if (folds) {
        const TensorPlan* nt = plan.find(g.norm);
        folds = nt && nt->action == Action::Convert && in.tensor(g.norm).info.dtype != io::DType::Ggml;
      }
      if (folds) block_of_[g.norm] = b;
    }
  }
}

CalibrationRun::~CalibrationRun() = default;

bool CalibrationRun::produces(const std::string& name) const { return block_of_.count(name) != 0; }

void CalibrationRun::start() {
  const auto seqs = source_.sequences(*model_);
  description_ = source_.describe();
  for (const auto& s : seqs) tokens_.insert(tokens_.end(), s.begin(), s.end());
  xs_.reserve(seqs.size());
  for (const auto& s : seqs) xs_.push_back(model_->embed(s));
}

EncodedTensor CalibrationRun::take(const std::string& name, ErrorSum* err) {
  const auto b = block_of_.find(name);
  if (b == block_of_.end()) fail<InvalidArgument>("{}: not produced by calibration", where(in_, name));
  if (xs_.empty() && next_ == 0) start();
  while (next_ <= b->second) run_block(next_++);
  auto d = done_.find(name);
  if (d == done_.end()) fail<Error>("{}: calibration did not produce it", where(in_, name));
  if (err) *err = d->second.err;
  EncodedTensor e = std::move(d->second.enc);
  done_.erase(d);
  return e;
}

void CalibrationRun::run_block(int l) {
  ArchitectureAdapter& m = *model_;
  const int L = m.blocks();
  if (progress_) {
    ProgressEvent ev;
    ev.stage = ProgressEvent::Stage::Calibrating;
    ev.block = l;
    ev.blocks = L;
    if (!progress_(ev)) fail<Cancelled>("cancelled while calibrating block {} of {}", l + 1, L);
  }
  m.load_block(l);
  const int threads = resolve_threads(o_.threads);
  const auto groups = m.groups(l);
  for (int gi = 0; gi < static_cast<int>(groups.size()); ++gi) {
    const LinearGroup& group = groups[static_cast<size_t>(gi)];
    std::vector<const TensorPlan*> members;
    bool any = false;
    for (const auto& n : group.weights) {
      members.push_back(plan_.find(n));
      any = any || calibrated(members.back()->method);
    }
    if (any) {
      const int64_t dim = m.weight(group.weights.front()).cols();
      const bool gptq_stats = members.front()->method != Method::Awq &&
                              std::none_of(members.begin(), members.end(), [](const TensorPlan* t) { return t->method == Method::Awq; });
      // The group's inputs, a batch of sequences at a time: the forward passes of a batch run in parallel (one
      // sequence per thread; their small products gain nothing from threads of their own), then the batch's rows
      // are added in sequence order to one Hessian (its rank-k update on all threads), or kept in order (AWQ).
      // The batch size is fixed, so the sums and the bytes written do not depend on the thread count.
      constexpr size_t kBatch = 16;
      HessianAccumulator acc(gptq_stats ? dim : 1);
      std::vector<io::RowMatrixXf> kept;  // AWQ: every sequence's inputs, in order
      for (size_t b0 = 0; b0 < xs_.size(); b0 += kBatch) {
        const size_t nb = std::min(kBatch, xs_.size() - b0);
        std::vector<io::RowMatrixXf> rows(nb);
        std::string error;
#pragma omp parallel for schedule(static) num_threads(std::min<int>(threads, static_cast<int>(nb)))
        for (size_t i = 0; i < nb; ++i) {
          try {
            io::RowMatrixXf x = xs_[b0 + i];
            const GroupCapture cap = [&](int g, const RowMatrixXf& a) {
              if (g == gi) rows[i] = a;
            };
            m.forward(x, cap, gi);
          } catch (const std::exception& e) {
#pragma omp critical
            if (error.empty()) error = e.what();
          }
        }
        if (!error.empty()) fail<NumericError>("{}: block {}: {}", in_.path().string(), l, error);
        if (gptq_stats) {
          int64_t T = 0;
          for (const auto& r : rows) T += r.rows();
          io::RowMatrixXf stacked(T, dim);
          int64_t t = 0;
          for (const auto& r : rows) {
            stacked.middleRows(t, r.rows()) = r;
            t += r.rows();
          }
          acc.add(stacked, threads);
        } else {
          for (auto& r : rows) kept.push_back(std::move(r));
        }
      }
      io::RowMatrixXf X;
      if (!gptq_stats) {
        int64_t T = 0;
        for (const auto& x : kept) T += x.rows();
        X.resize(T, dim);
        int64_t t = 0;
        for (auto& x : kept) {
          X.middleRows(t, x.rows()) = x;
          t += x.rows();
          x = io::RowMatrixXf();
        }
      }
      // AWQ with scale search where the input comes from a norm: the group's weights are searched together, scored
      // on the block's output, and 1/s is folded into the norm's weight, which the output file then holds.
      if (!gptq_stats && !group.norm.empty() && block_of_.count(group.norm)) {
        int64_t rows_total = 0;
        for (const TensorPlan* t : members) rows_total += t->rows();
        io::RowMatrixXf Ws(rows_total, dim);
        int64_t r = 0;
        for (const TensorPlan* t : members) {
          Ws.middleRows(r, t->rows()) = m.weight(t->name);
          r += t->rows();
        }
        const ggml::Type gt = members.front()->block;
        ggml::GgmlGrid grid(gt);
        const auto xmean = (X.cwiseAbs().colwise().sum() / static_cast<float>(X.rows())).transpose().eval();
        const size_t nsub = std::min<size_t>(xs_.size(), 32);
        std::vector<io::RowMatrixXf> ref(nsub);
        // sequences in parallel, as above (the pass only reads the block; shapes were checked)
        qk::detail::FirstException errors;
#pragma omp parallel for schedule(static) num_threads(threads)
        for (size_t si = 0; si < nsub; ++si)
          errors.run([&] {
            ref[si] = xs_[si * xs_.size() / nsub];
            m.forward(ref[si]);
          });
        errors.rethrow();
        const auto score = [&](const RowMatrixXf& D) {
          int64_t rr = 0;
          for (const TensorPlan* t : members) {
            m.set_weight(t->name, D.middleRows(rr, t->rows()));
            rr += t->rows();
          }
          std::vector<double> losses(nsub);  // summed in order below: the choice repeats exactly
          qk::detail::FirstException score_errors;
#pragma omp parallel for schedule(static) num_threads(threads)
          for (size_t si = 0; si < nsub; ++si)
            score_errors.run([&] {
              io::RowMatrixXf y = xs_[si * xs_.size() / nsub];
              m.forward(y);
              losses[si] = (y - ref[si]).cast<double>().squaredNorm();
            });
          score_errors.rethrow();
          double loss = 0;
          for (double v : losses) loss += v;
          return loss;
        };
        const AwqScaleSearch search = awq_search_scales(Ws, xmean, grid, score);
        const Eigen::VectorXf& best_s = search.scales;
        const io::RowMatrixXf Xs = X * best_s.cwiseInverse().asDiagonal();
        const io::RowMatrixXf Wscaled = Ws * best_s.asDiagonal();
        AwqResult res = awq(Wscaled, Xs, grid, awq_options(o_));
        res.dequantized = res.dequantized * best_s.cwiseInverse().asDiagonal();
        const auto enc = grid.encode();
        const int64_t rb = ggml::row_size(gt, dim);
        r = 0;
        for (const TensorPlan* t : members) {
          Done d;
          d.enc = from_bytes(std::vector<uint8_t>(enc.begin() + r * rb, enc.begin() + (r + t->rows()) * rb));
          const io::RowMatrixXf W = Ws.middleRows(r, t->rows());
          const io::RowMatrixXf D = res.dequantized.middleRows(r, t->rows());
          d.err.add(W.data(), D.data(), W.size());
          done_[t->name] = std::move(d);
          m.set_weight(t->name, D);
          r += t->rows();
        }
        // the block keeps the original norm and the effective weights Q(W·diag(s))·diag(s)⁻¹: the same products as
        // the file's folded norm g/s and Q(W·diag(s))
        const Eigen::VectorXf g = m.norm(group.norm);
        Eigen::VectorXf folded(g.size());
        for (Eigen::Index j = 0; j < g.size(); ++j) folded[j] = g[j] / best_s[j];
        const TensorPlan* nt = plan_.find(group.norm);
        std::vector<std::byte> out(nt->bytes);
        try {
          io::encode_floats(folded.data(), folded.size(), nt->dtype, out.data());
        } catch (const NumericError& e) {
          fail<NumericError>("{}: AWQ's folded scales: {}", where(in_, group.norm), e.what());
        }
        done_[group.norm] = Done{EncodedTensor::of(std::move(out)), {}};
        awq_scaled_ += static_cast<int>(members.size());
        awq_norms_ += 1;
      }
      // llama.cpp's importance matrix from the same inputs: mean x² per input column (its in_sum2 / count),
      // handed to ggml's importance-weighted encoder; one vector serves every weight of the group
      std::vector<float> imp;
      if (std::any_of(members.begin(), members.end(), [](const TensorPlan* t) { return t->method == Method::RtnImatrix; })) {
        const Eigen::VectorXf d = acc.gram_diagonal();
        imp.resize(static_cast<size_t>(dim));
        for (int64_t j = 0; j < dim; ++j)
          imp[static_cast<size_t>(j)] = d[j] / static_cast<float>(std::max<int64_t>(1, acc.samples()));
      }
      // GPTQ's Hessian, made once for the group; the accumulator's sums go now (for an FFN down projection both are
      // in² floats), and the last weight of the group consumes H in place.
      Eigen::MatrixXf H;
      int h_uses = 0;
      if (gptq_stats) {
        for (const TensorPlan* t : members)
          if (t->method == Method::Gptq && !done_.count(t->name)) ++h_uses;
        if (h_uses > 0) {
          if (acc.samples() == 0) fail<NumericError>("{}: block {}: no calibration rows reached {}", in_.path().string(), l, group.input);
          H = acc.hessian();
          acc = HessianAccumulator(1);
        }
      }
      auto take_h = [&]() { return --h_uses == 0 ? std::move(H) : Eigen::MatrixXf(H); };
      for (const TensorPlan* t : members) {
        const std::string& n = t->name;
        if (t->method == Method::RtnImatrix) {
          const io::RowMatrixXf W = m.weight(n);
          const auto enc = with_context(
              in_, n, [&] { return ggml::quantize(t->block, W.data(), W.rows(), W.cols(), imp.data(), threads); });
          io::RowMatrixXf D(W.rows(), W.cols());
          ggml::dequantize_rows(t->block, enc.data(), W.rows(), W.cols(), D.data(), threads);
          Done d{from_bytes(enc), {}};
          d.err.add(W.data(), D.data(), W.size());
          done_[n] = std::move(d);
          m.set_weight(n, D);
          continue;
        }
        if (t->method != Method::Gptq && t->method != Method::Awq) continue;
        if (done_.count(n)) continue;  // done with the group
        const std::string w = where(in_, n);
        const io::RowMatrixXf& W = m.weight(n);  // replaced (set_weight) only once it was last read
        Done d;
        io::RowMatrixXf D;
        with_context(in_, n, [&] {
          if (t->action == Action::Ggml) {
            ggml::GgmlGrid grid(t->block);
            if (gptq_stats) D = gptq(W, take_h(), grid, gptq_options(o_, false)).dequantized;
            else D = awq(W, X, grid, awq_options(o_)).dequantized;
            const auto enc = grid.encode();
            if (enc.size() != t->bytes) fail<Error>("{}: encoder gave {} bytes, expected {}", w, enc.size(), t->bytes);
            d.enc = from_bytes(enc);
          } else if (t->action == Action::Int) {
            const QuantScheme s = scheme_of(*t, plan_.sym);
            if (gptq_stats) {
              GptqResult info;
              d.enc.ints = gptq_quantize(W, take_h(), s, gptq_options(o_, true), &info);
              D = info.dequantized;
            } else {
              AwqResult info;
              d.enc.ints = awq_quantize(W, X, s, awq_options(o_), &info);
              D = info.dequantized;
            }
          } else {
            fail<InvalidArgument>("{}: {} has no {} path", w, t->out_type, method_name(t->method));
          }
        });
        d.err.add(W.data(), D.data(), W.size());
        done_[n] = std::move(d);
        m.set_weight(n, D);
      }
    }
    // every weight of the group now holds what the output will hold
    for (const TensorPlan* t : members) {
      if (done_.count(t->name)) continue;
      const float* importance = nullptr;
      if (o_.imatrix && t->action == Action::Ggml && ggml::info(t->block).uses_importance) {
        const auto imx = o_.imatrix->find(t->name);
        if (imx != o_.imatrix->end() && static_cast<int64_t>(imx->second.size()) == t->cols())
          importance = imx->second.data();
      }
      m.set_weight(t->name, with_context(in_, t->name, [&] {
                     return effective_weight(*t, m.weight(t->name), importance, threads);
                   }));
    }
  }
  qk::detail::FirstException errors;  // shapes were checked; still, nothing may leave the region
#pragma omp parallel for schedule(static) num_threads(threads)
  for (size_t si = 0; si < xs_.size(); ++si) errors.run([&] { m.forward(xs_[si]); });
  errors.rethrow();
  m.release_block();
}

}  // namespace qk::pipeline::detail
