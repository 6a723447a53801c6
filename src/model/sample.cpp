// Ancestral sampling from a Llama model (qk/model/sample.hpp).
#include "qk/model/sample.hpp"

#include <cmath>
#include <string>
#include <vector>

#include <omp.h>

#include "qk/core/error.hpp"
#include "qk/core/threads.hpp"

namespace qk::model {

std::vector<int32_t> sample(const LlamaModel& m, const SampleOptions& o) {
  if (o.samples <= 0 || o.length <= 0)
    fail<InvalidArgument>("sample: {} sequences of {} tokens is nothing to sample", o.samples, o.length);
  if (!(o.temperature > 0.0f) || !std::isfinite(o.temperature))
    fail<InvalidArgument>("sample: temperature must be positive, got {}", o.temperature);
  const int V = m.config().vocab;
  if (o.bos < 0 || o.bos >= V) fail<InvalidArgument>("sample: BOS id {} is outside the vocabulary of {}", o.bos, V);
  std::vector<int32_t> out(static_cast<size_t>(o.samples) * static_cast<size_t>(o.length));
  const int threads = resolve_threads(o.threads);
  std::string error;
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int s = 0; s < o.samples; ++s) {
    try {
      // splitmix64 of (seed, s): one independent generator per sequence
      uint64_t state = o.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(s) + 1;
      auto next = [&state] {
        uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
      };
      int32_t* seq = out.data() + static_cast<size_t>(s) * static_cast<size_t>(o.length);
      seq[0] = o.bos;
      KvCache cache;
      std::vector<double> p(static_cast<size_t>(V));
      for (int t = 1; t < o.length; ++t) {
        const RowMatrixXf z = m.decode(std::span<const int32_t>(seq + t - 1, 1), cache);
        const float mx = z.row(0).maxCoeff();
        double total = 0;
        for (int i = 0; i < V; ++i) total += (p[static_cast<size_t>(i)] = std::exp(static_cast<double>(z(0, i) - mx) / o.temperature));
        const double u = static_cast<double>(next() >> 11) * 0x1.0p-53 * total;
        double c = 0;
        int pick = V - 1;
        for (int i = 0; i < V; ++i) {
          c += p[static_cast<size_t>(i)];
          if (u < c) {
            pick = i;
            break;
          }
        }
        seq[t] = pick;
      }
    } catch (const std::exception& e) {
#pragma omp critical
      if (error.empty()) error = e.what();
    }
  }
  if (!error.empty()) throw InvalidArgument(error);
  return out;
}

}  // namespace qk::model
