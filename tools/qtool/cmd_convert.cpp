// `qtool convert MODEL.bin --tokenizer TOK.bin -o MODEL.gguf [--force] [--name NAME] [--context-length N]`:
// a llama2.c checkpoint and its tokenizer.bin as a GGUF with the tensors, metadata and vocabulary llama.cpp's
// convert-llama2c-to-ggml writes (qk/model/convert.hpp lists the differences and their reasons).
#include <string>

#include <fmt/format.h>

#include "commands.hpp"
#include "qk/model/convert.hpp"

namespace qtool {

namespace {

struct ConvertCliOptions {
  std::string model, tokenizer, output, name;
  uint32_t context_length = 0;
  bool force = false;
};

int run_convert(const ConvertCliOptions& o) {
  qk::model::ConvertOptions c;
  c.name = o.name;
  c.context_length = o.context_length;
  c.write.overwrite = o.force;
  const auto s = qk::model::convert_llama2c_to_gguf(o.model, o.tokenizer, o.output, c);
  fmt::print("{}: {} tensors (F32, classifier {}), vocabulary of {} tokens, {} bytes\n", o.output, s.tensors,
             s.shared_classifier ? "shared with the embedding" : "separate", s.vocab, s.bytes);
  return 0;
}

}  // namespace

void setup_convert(CLI::App& app, Runner& run) {
  auto opts = std::make_shared<ConvertCliOptions>();
  auto* sub = app.add_subcommand("convert", "A llama2.c checkpoint and its tokenizer.bin as a GGUF file");
  sub->add_option("model", opts->model, "llama2.c checkpoint (legacy version-0 .bin)")->required();
  sub->add_option("--tokenizer", opts->tokenizer, "Its llama2.c tokenizer.bin")->required();
  sub->add_option("-o,--output", opts->output, "The GGUF file to write")->required();
  sub->add_flag("-f,--force", opts->force, "Overwrite an existing output file");
  sub->add_option("--name", opts->name, "general.name (default: the checkpoint's file name without extension)");
  sub->add_option("--context-length", opts->context_length,
                  "llama.context_length (default: the checkpoint's seq_len; llama.cpp's converter writes 128)");
  sub->callback([opts, &run] { run = [opts] { return run_convert(*opts); }; });
}

}  // namespace qtool
