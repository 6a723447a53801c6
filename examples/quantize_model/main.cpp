// Quantizes a Llama GGUF model to Q4_K with GPTQ, calibrated on sequences the model samples itself: the same
// bytes as `qtool quantize MODEL --type q4_k --method gptq -o OUT`, through the pipeline API (docs/api.md).
#include <cstdio>

#include <qk/qk.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: quantize_model MODEL.gguf OUT.gguf\n");
    return 2;
  }
  namespace pl = qk::pipeline;
  try {
    const auto input = qk::formats::QuantizedCheckpoint::open(argv[1]);
    pl::PlanOptions po;
    po.type = *pl::TargetType::parse("q4_k");
    po.method = pl::Method::Gptq;
    pl::GeneratedTokens calibration({.samples = 128, .length = 128});
    const pl::Plan plan = pl::make_plan(*input, po, pl::coverage(*input, &calibration));
    const auto sink = pl::make_sink(argv[2], plan, *input, {});
    const pl::Report r = pl::quantize_model(*input, plan, &calibration, *sink, {}, [](const pl::ProgressEvent& e) {
      if (e.stage == pl::ProgressEvent::Stage::Calibrating) std::fprintf(stderr, "block %d/%d\n", e.block + 1, e.blocks);
      return true;
    });
    std::printf("%s -> %s: %zu tensors, %.2f bits/weight, %d fallbacks, %.2f s\n", argv[1], argv[2], r.tensors.size(),
                r.bits_per_weight(), r.fallbacks(), r.seconds);
    for (const auto& t : r.tensors)
      if (t.weight_error >= 0)
        std::printf("  %-28s %-6s %-12s weight error %.3e\n", t.name.c_str(), t.out_type.c_str(), pl::method_name(t.method),
                    t.weight_error);
    return 0;
  } catch (const qk::Error& e) {
    std::fprintf(stderr, "quantize_model: %s\n", e.what());
    return 1;
  }
}
