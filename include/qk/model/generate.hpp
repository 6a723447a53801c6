#pragma once
// Text generation from a Llama model: the prompt's ids are decoded once, then one token at a time is chosen from
// the next-token logits and fed back (LlamaModel::decode with a KvCache), until max_tokens, the end-of-sequence
// token or the model's context.
//
// Choosing a token:
//  - temperature <= 0: greedy, the highest logit (the lowest id among equal ones), as llama.cpp's greedy sampler;
//    with a model and tokenizer that match llama.cpp's, the output equals `llama-simple`'s;
//  - otherwise: the top_k highest logits (0 = all), then the smallest set of those whose probabilities (softmax of
//    the kept logits) sum to at least top_p (1 = all), then softmax(logit / temperature) over what is left, and one
//    draw from a splitmix64 generator seeded with `seed` (the same seed gives the same text on any thread count).
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "qk/model/llama_model.hpp"

namespace qk::model {

struct GenerateOptions {
  int max_tokens = 64;       // tokens to generate at most
  float temperature = 0.8f;  // <= 0: greedy
  int top_k = 40;            // 0: no limit
  float top_p = 0.95f;       // in (0, 1]; 1: no limit
  uint64_t seed = 1;
  int eos = 2;               // stop after this token (-1: never)
  std::string_view source = "model";  // names the model in error messages (e.g. its file)
};

// Called with each generated id as soon as it is chosen; return false to stop.
using TokenCallback = std::function<bool(int32_t)>;

// The generated ids (the prompt not included). The prompt must be non-empty (normally BOS first) and leave room
// for one token in the model's context (config().context; no limit when 0): ShapeError "<source>: ..." otherwise.
// Generation stops at the context's end. InvalidArgument for options out of range or ids outside the vocabulary.
std::vector<int32_t> generate(const LlamaModel& m, std::span<const int32_t> prompt, const GenerateOptions& o,
                              const TokenCallback& on_token = {});

// The same over any decoder of the model's architecture (e.g. qk/runtime's Engine): decode appends ids at the
// cache's end and returns their logits, as LlamaModel::decode; context as config().context.
using DecodeFn = std::function<RowMatrixXf(std::span<const int32_t>, KvCache&)>;
std::vector<int32_t> generate(const DecodeFn& decode, int context, std::span<const int32_t> prompt,
                              const GenerateOptions& o, const TokenCallback& on_token = {});

// One choice from one row of logits as generate() makes it; `state` is the generator's state (advanced on draws).
int32_t choose_token(std::span<const float> logits, const GenerateOptions& o, uint64_t& state);

}  // namespace qk::model
