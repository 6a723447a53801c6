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
// samples * length ids. Each sequence has its own generator seeded from (seed, index), and the products give every
// row what it gives alone, so the result depends neither on the thread count nor on the number of sequences.
std::vector<int32_t> sample(const LlamaModel& m, const SampleOptions& o);

// The same sequences from a Llama file read block by block: one block's weights are resident at a time (viewed in
// the mapping when stored as float32, decoded otherwise) and given back after each step; the output projection is
// held throughout. For models too large to hold as float.
std::vector<int32_t> sample(const io::TensorFile& file, const SampleOptions& o);

}  // namespace qk::model
