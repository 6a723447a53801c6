#pragma once
// Token sequences drawn from a Llama model itself (ancestral sampling), e.g. as calibration data when no text is
// at hand.
#include <cstdint>
#include <vector>

#include "qk/io/tensor_file.hpp"
#include "qk/model/llama_model.hpp"

namespace qk::model {

struct SampleOptions {
  int samples = 32;          // sequences
  int length = 128;          // tokens per sequence, the first one `bos`
  uint64_t seed = 1;
  float temperature = 1.0f;  // > 0
  int bos = 1;
  int threads = 0;
};

// Draws `samples` sequences from the model (ancestral sampling from softmax(logits / temperature)), concatenated:
// samples * length ids. Each sequence has its own generator seeded from (seed, index), so the result does not
// depend on the thread count.
std::vector<int32_t> sample(const LlamaModel& m, const SampleOptions& o);

}  // namespace qk::model
