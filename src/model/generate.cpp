// Text generation from a Llama model (qk/model/generate.hpp).
#include "qk/model/generate.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "qk/core/error.hpp"

namespace qk::model {
namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

void check(const GenerateOptions& o) {
  if (o.max_tokens < 0) fail<InvalidArgument>("generate: -n must not be negative, got {}", o.max_tokens);
  if (!std::isfinite(o.temperature))
    fail<InvalidArgument>("generate: temperature must be finite, got {}", o.temperature);
  if (o.top_k < 0) fail<InvalidArgument>("generate: top-k must not be negative, got {}", o.top_k);
  if (!(o.top_p > 0.0f && o.top_p <= 1.0f)) fail<InvalidArgument>("generate: top-p must be in (0, 1], got {}", o.top_p);
}

}  // namespace

int32_t choose_token(std::span<const float> logits, const GenerateOptions& o, uint64_t& state) {
  const int V = static_cast<int>(logits.size());
  if (V == 0) fail<InvalidArgument>("generate: no logits to choose from");
  if (!(o.temperature > 0.0f)) {
    int best = 0;
    for (int i = 1; i < V; ++i)
      if (logits[static_cast<size_t>(i)] > logits[static_cast<size_t>(best)]) best = i;
    return best;
  }
  // Candidates by logit, highest first (ties: lower id first), cut to top_k.
  std::vector<int32_t> ids(static_cast<size_t>(V));
  std::iota(ids.begin(), ids.end(), 0);
  const size_t k = o.top_k > 0 ? std::min(static_cast<size_t>(o.top_k), ids.size()) : ids.size();
  auto by_logit = [&](int32_t a, int32_t b) {
    const float la = logits[static_cast<size_t>(a)], lb = logits[static_cast<size_t>(b)];
    return la != lb ? la > lb : a < b;
  };
  std::partial_sort(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(k), ids.end(), by_logit);
  ids.resize(k);
  const double mx = logits[static_cast<size_t>(ids[0])];
  std::vector<double> p(k);
  // top_p on the untempered distribution of the kept candidates.
  if (o.top_p < 1.0f) {
    double total = 0;
    for (size_t i = 0; i < k; ++i) total += (p[i] = std::exp(logits[static_cast<size_t>(ids[i])] - mx));
    double c = 0;
    size_t keep = k;
    for (size_t i = 0; i < k; ++i) {
      c += p[i] / total;
      if (c >= o.top_p) {
        keep = i + 1;
        break;
      }
    }
    ids.resize(keep);
    p.resize(keep);
  }
  double total = 0;
  for (size_t i = 0; i < ids.size(); ++i)
    total += (p[i] = std::exp((logits[static_cast<size_t>(ids[i])] - mx) / static_cast<double>(o.temperature)));
  const double u = static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53 * total;
  double c = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    c += p[i];
    if (u < c) return ids[i];
  }
  return ids.back();
}

std::vector<int32_t> generate(const LlamaModel& m, std::span<const int32_t> prompt, const GenerateOptions& o,
                              const TokenCallback& on_token) {
  return generate([&m](std::span<const int32_t> t, KvCache& c) { return m.decode(t, c); }, m.config().context,
                  prompt, o, on_token);
}

std::vector<int32_t> generate(const DecodeFn& decode, int context, std::span<const int32_t> prompt,
                              const GenerateOptions& o, const TokenCallback& on_token) {
  check(o);
  const int ctx = context;
  if (prompt.empty()) fail<ShapeError>("{}: the prompt has no tokens", o.source);
  if (ctx > 0 && prompt.size() >= static_cast<size_t>(ctx))
    fail<ShapeError>("{}: the prompt's {} tokens leave no room in the model's context of {} tokens", o.source,
                     prompt.size(), ctx);
  std::vector<int32_t> out;
  if (o.max_tokens == 0) return out;
  uint64_t state = o.seed;
  KvCache cache;
  RowMatrixXf z = decode(prompt, cache);
  for (;;) {
    const auto row = z.row(z.rows() - 1);
    const int32_t id = choose_token(std::span<const float>(row.data(), static_cast<size_t>(row.size())), o, state);
    out.push_back(id);
    if (on_token && !on_token(id)) break;
    if (id == o.eos || static_cast<int>(out.size()) >= o.max_tokens) break;
    if (ctx > 0 && cache.length + 1 > ctx) break;  // the next token would sit past the context
    const int32_t next[1] = {id};
    z = decode(next, cache);
  }
  return out;
}

}  // namespace qk::model
