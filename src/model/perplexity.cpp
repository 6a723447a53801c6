// Perplexity, KL divergence and top-1 agreement (qk/model/perplexity.hpp).
#include "qk/model/perplexity.hpp"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <omp.h>

#include "qk/core/error.hpp"
#include "qk/core/threads.hpp"
#include "qk/detail/omp.hpp"

namespace qk::model {
namespace {

// log-softmax helpers over one row of logits.
double log_sum_exp(const float* z, int n) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < n; ++i) mx = std::max(mx, z[i]);
  double s = 0;
  for (int i = 0; i < n; ++i) s += std::exp(static_cast<double>(z[i]) - mx);
  return mx + std::log(s);
}

struct ChunkPlan {
  int context, first, chunks;
};

ChunkPlan plan(std::span<const int32_t> tokens, const PerplexityOptions& o) {
  if (o.context < 2) fail<InvalidArgument>("perplexity: context must be >= 2, got {}", o.context);
  const int first = o.first < 0 ? o.context / 2 : o.first;
  if (first > o.context - 2) fail<InvalidArgument>("perplexity: first scored position {} leaves nothing to score in a context of {}", first, o.context);
  int chunks = static_cast<int>(tokens.size() / static_cast<size_t>(o.context));
  if (o.max_chunks > 0) chunks = std::min(chunks, o.max_chunks);
  if (chunks == 0) fail<InvalidArgument>("perplexity: {} tokens do not fill one context of {}", tokens.size(), o.context);
  return {o.context, first, chunks};
}

std::vector<int32_t> chunk_tokens(std::span<const int32_t> tokens, const ChunkPlan& p, int c, int bos) {
  std::vector<int32_t> t(tokens.begin() + static_cast<ptrdiff_t>(c) * p.context,
                         tokens.begin() + static_cast<ptrdiff_t>(c + 1) * p.context);
  if (bos >= 0) t[0] = bos;
  return t;
}

}  // namespace

PerplexityResult perplexity(const LlamaModel& m, std::span<const int32_t> tokens, const PerplexityOptions& o) {
  return compare(m, m, tokens, o).base;
}

CompareResult compare(const LlamaModel& base, const LlamaModel& cand, std::span<const int32_t> tokens,
                      const PerplexityOptions& o) {
  if (base.config().vocab != cand.config().vocab)
    fail<ShapeError>("compare: vocabularies differ ({} vs {})", base.config().vocab, cand.config().vocab);
  const ChunkPlan p = plan(tokens, o);
  const bool same = &base == &cand;
  const int V = base.config().vocab;
  std::vector<double> nll_b(static_cast<size_t>(p.chunks)), nll_c(static_cast<size_t>(p.chunks)),
      kld(static_cast<size_t>(p.chunks)), agree(static_cast<size_t>(p.chunks));
  const int threads = resolve_threads(o.threads);
  // Chunks are independent; the first error is rethrown outside the parallel region (qk/detail/omp.hpp).
  qk::detail::FirstException errors;
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int c = 0; c < p.chunks; ++c) {
    errors.run([&] {
      const std::vector<int32_t> t = chunk_tokens(tokens, p, c, o.bos);
      const RowMatrixXf lb = base.forward(t);
      const RowMatrixXf lc = same ? RowMatrixXf() : cand.forward(t);
      double sb = 0, sc = 0, sk = 0, sa = 0;
      for (int j = p.first; j <= p.context - 2; ++j) {
        const int next = t[static_cast<size_t>(j + 1)];
        const double zb = log_sum_exp(lb.row(j).data(), V);
        sb += zb - lb(j, next);
        if (same) continue;
        const double zc = log_sum_exp(lc.row(j).data(), V);
        sc += zc - lc(j, next);
        double k = 0;
        for (int i = 0; i < V; ++i) {
          const double lpb = lb(j, i) - zb, lpc = lc(j, i) - zc;
          k += std::exp(lpb) * (lpb - lpc);
        }
        sk += k;
        Eigen::Index ab, ac;
        lb.row(j).maxCoeff(&ab);
        lc.row(j).maxCoeff(&ac);
        sa += ab == ac ? 1.0 : 0.0;
      }
      nll_b[static_cast<size_t>(c)] = sb;
      nll_c[static_cast<size_t>(c)] = same ? sb : sc;
      kld[static_cast<size_t>(c)] = sk;
      agree[static_cast<size_t>(c)] = same ? p.context - 1 - p.first : sa;
    });
  }
  errors.rethrow();
  const int64_t n = static_cast<int64_t>(p.chunks) * (p.context - 1 - p.first);
  auto total = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s;
  };
  CompareResult r;
  r.base.nll = total(nll_b) / static_cast<double>(n);
  r.base.ppl = std::exp(r.base.nll);
  r.base.scored = n;
  r.base.chunks = p.chunks;
  r.candidate = r.base;
  r.candidate.nll = total(nll_c) / static_cast<double>(n);
  r.candidate.ppl = std::exp(r.candidate.nll);
  r.kld = total(kld) / static_cast<double>(n);
  r.top1_agree = total(agree) / static_cast<double>(n);
  // a NaN perplexity is no result: say which model's forward pass broke down
  if (!std::isfinite(r.base.nll))
    fail<NumericError>("perplexity: the reference model's log-likelihood is {} (its forward pass gives NaN or Inf)",
                       r.base.nll);
  if (!std::isfinite(r.candidate.nll) || !std::isfinite(r.kld))
    fail<NumericError>("perplexity: the candidate model's log-likelihood is {} (its forward pass gives NaN or Inf)",
                       r.candidate.nll);
  return r;
}

}  // namespace qk::model
