#pragma once
// Perplexity, KL divergence and top-1 agreement of Llama models on a token sequence, scored as llama.cpp's
// perplexity tool scores them.
#include <cstdint>
#include <span>

#include "qk/model/llama_model.hpp"

namespace qk::model {

struct PerplexityOptions {
  int context = 128;      // chunk length; every chunk is scored independently
  int bos = 1;            // the first token of every chunk is replaced by this id (-1: keep)
  int first = -1;         // first scored position; -1 = context / 2 (llama.cpp's perplexity tool)
  int max_chunks = 0;     // 0 = all
  int threads = 0;
};

struct PerplexityResult {
  double ppl = 0, nll = 0;  // exp(mean NLL), mean NLL (nats)
  int64_t scored = 0;       // predictions scored
  int chunks = 0;
};

// Scores tokens the way llama.cpp's perplexity tool does: split into chunks of `context`, set the first token to
// BOS, run each chunk, and average -log p(token[j+1] | token[..j]) for j in [first, context - 2].
PerplexityResult perplexity(const LlamaModel& m, std::span<const int32_t> tokens, const PerplexityOptions& o = {});

struct CompareResult {
  PerplexityResult base, candidate;
  double kld = 0;          // mean KL(base || candidate) over the scored positions (nats)
  double top1_agree = 0;   // fraction of scored positions whose argmax agrees
};

// Scores both models on the same chunks and compares their next-token distributions.
CompareResult compare(const LlamaModel& base, const LlamaModel& candidate, std::span<const int32_t> tokens,
                      const PerplexityOptions& o = {});

}  // namespace qk::model
