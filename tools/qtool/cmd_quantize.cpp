// `qtool quantize`: declares the options of both modes and hands over to the mode's runner.
#include <memory>
#include <string>

#include "commands.hpp"
#include "quantize_opts.hpp"

namespace qtool {

void setup_quantize(CLI::App& app, Runner& run) {
  auto o = std::make_shared<QuantizeOptions>();
  auto* sub = app.add_subcommand("quantize", "Quantize a weight matrix or a whole model file");
  sub->add_option("input", o->input,
                  "Input: weight matrix (.npy/.safetensors) or model (.gguf/.safetensors, GPTQ checkpoint directory "
                  "or bitsandbytes NF4 file: dequantized first)")
      ->required()->check(CLI::ExistingPath);
  sub->add_option("-o,--output", o->output, "Output file (written to a temporary file, then renamed)")->required();
  sub->add_option("--method", o->method, "rtn | gptq | awq | smoothquant")
      ->check(CLI::IsMember({"rtn", "gptq", "awq", "smoothquant"}));
  sub->add_option("--bits", o->bits, "Matrix mode: code width, 2..8")->check(CLI::Range(2, 8));
  sub->add_option("--group", o->group, "Matrix mode: group size along the input dimension (0 = per channel)")
      ->check(CLI::NonNegativeNumber);
  auto* sym = sub->add_flag("--sym", o->sym, "Symmetric codes (default)");
  auto* asym = sub->add_flag("--asym", [o](std::int64_t) { o->sym = false; }, "Asymmetric codes (zero-point)");
  sym->excludes(asym);
  sub->add_flag("--act-order", o->act_order, "GPTQ: quantize columns by decreasing Hessian diagonal (desc_act)");
  sub->add_flag("--static-groups", o->static_groups, "GPTQ act-order: group parameters fixed before reordering");
  sub->add_option("--alpha", o->alpha, "SmoothQuant migration strength")->check(CLI::Range(0.0, 1.0));
  sub->add_option("--damp", o->damp, "GPTQ damping, fraction of the mean Hessian diagonal")->check(CLI::Range(0.0, 10.0));
  sub->add_option("--block-size", o->block_size, "GPTQ lazy-batch block size")->check(CLI::Range(1, 1 << 20));
  sub->add_option("--dequantized", o->dequantized, "Matrix mode: also write the dequantized weight as float32 .npy");
  sub->add_option("--calib", o->calib, "Calibration activations X (tokens x in_features) or calibration data");
  auto* ct = sub->add_option("--calib-tokens", o->calib_tokens,
                              "Model mode: calibration token ids (int32 little-endian); GPTQ/AWQ get each layer's "
                              "inputs from the model's own forward pass")
                 ->check(CLI::ExistingFile);
  auto* cg = sub->add_flag("--calib-generate", o->calib_generate,
                           "Model mode: sample the calibration sequences from the input model itself (--calib-seed)");
  auto* cx = sub->add_option("--calib-text", o->calib_text,
                              "Model mode: calibration text (UTF-8), tokenized with the model's vocabulary; sequences "
                              "of --calib-ctx tokens cut from it, each with BOS first")
                 ->check(CLI::ExistingFile);
  ct->excludes(cg);
  cx->excludes(ct);
  cx->excludes(cg);
  sub->add_option("--calib-samples", o->calib_samples, "Model mode: calibration sequences (128)")->check(CLI::Range(1, 1 << 20));
  sub->add_option("--calib-ctx", o->calib_ctx, "Model mode: tokens per calibration sequence (128; at most the model's context)")
      ->check(CLI::Range(2, 1 << 20));
  sub->add_option("--calib-seed", o->calib_seed, "Model mode: seed of --calib-generate (1)");
  sub->add_option("--calib-save", o->calib_save, "Model mode: also write the calibration token ids used (int32) to this file");
  sub->add_flag("--awq-scales", o->awq_scales,
                "Model mode, AWQ from tokens: also search input scales for attn_q/k/v and ffn_gate/up and fold 1/s "
                "into the RMSNorm weights");
  sub->add_option("--tensor", o->tensor, "Matrix mode: name of the weight inside a multi-tensor input");
  sub->add_option("--type", o->type, "Model mode: output encoding (q4_0, q4_k, q8_0, int4-g128, nf4, ...)");
  sub->add_option("--imatrix", o->imatrix, "Model mode: importance matrix file");
  sub->add_option("--skip", o->skip, "Model mode: regex of tensor names to keep unquantized (repeatable)");
  sub->add_option("--fallback", o->fallback, "Model mode: type for tensors a block type cannot hold (auto: llama.cpp's 32-block alternative of a K-quant, then f16)");
  sub->add_flag("--quantize-embeddings", o->quantize_embeddings, "Model mode: also quantize token embeddings");
  sub->add_flag("--quantize-output", o->quantize_output, "Model mode: also quantize the output projection");
  sub->add_option("--format", o->output_format, "Output container: gguf | safetensors | gptq (default: by extension)");
  sub->add_option("--threads", o->threads, "Worker threads (0 = QK_NUM_THREADS or all cores)")->check(CLI::NonNegativeNumber);
  sub->add_flag("-q,--quiet", o->quiet, "No progress output");
  sub->add_flag("-f,--force", o->force, "Overwrite an existing output file");
  sub->add_flag("--json", o->json, "Print the summary as JSON");
  sub->callback([o, &run] {
    run = [o] {
      if (!o->type &&
          (!o->calib_tokens.empty() || !o->calib_text.empty() || o->calib_generate || !o->calib_save.empty()))
        throw UsageError("--calib-tokens, --calib-text, --calib-generate and --calib-save belong to model mode (--type)");
      return o->type ? run_quantize_model(*o) : run_quantize_matrix(*o);
    };
  });
}

}  // namespace qtool
