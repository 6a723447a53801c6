// Perplexity of a Llama GGUF model (any ggml type; dequantized at load) on a file of int32 token ids, scored as
// llama.cpp's perplexity tool does.
//   example_perplexity model.gguf tokens.i32 [context]
#include <cstdio>
#include <cstdlib>

#include <qk/model/llama_model.hpp>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s model.gguf tokens.i32 [context]\n", argv[0]);
    return 2;
  }
  try {
    const auto model = qk::model::LlamaModel::load(argv[1]);
    const auto tokens = qk::model::read_tokens(argv[2]);
    qk::model::PerplexityOptions o;
    if (argc > 3) o.context = std::atoi(argv[3]);
    const auto r = qk::model::perplexity(model, tokens, o);
    std::printf("%s: perplexity %.4f over %lld predictions in %d chunks of %d\n", argv[1], r.ppl,
                static_cast<long long>(r.scored), r.chunks, o.context);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
