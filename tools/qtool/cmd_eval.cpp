// `qtool eval A B [--calib X.npy] [--tensor NAME] [--json] [--tokens IDS.i32 | --text FILE [--ctx N]]`: per-tensor error of B against the reference A
// (MSE, SQNR, cosine, max abs error), tensors matched by name across any mix of formats (dequantized as needed),
// worst first (lowest SQNR), with totals. With --calib X ([tokens, in_features]) also the relative layer output
// error E = ||X Wᵀ − X Ŵᵀ||²_F / ||X Wᵀ||²_F of every compared matrix with in_features columns.
// GPTQ checkpoints (a directory or .safetensors with qweight/qzeros/scales/g_idx) and bitsandbytes NF4/FP4 files
// are read as their logical weights (qk/formats/checkpoint.hpp): `<prefix>.weight` dequantized.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "commands.hpp"
#include "eval_model.hpp"
#include "output.hpp"
#include "qk/core/error.hpp"
#include "qk/core/metrics.hpp"
#include "qk/formats/checkpoint.hpp"
#include "qk/io/tensor_file.hpp"

namespace qtool {

namespace {

struct EvalOptions {
  std::string a, b, calib, tensor;
  bool json = false;
  ModelQualityOptions model;  // --tokens / --text: perplexity / KL of both files as Llama models
  bool scores_model() const { return !model.tokens.empty() || !model.text.empty(); }
};

struct Row {
  std::string name, name_b;
  std::vector<int64_t> shape;
  std::string dtype_a, dtype_b;
  int64_t elements = 0;
  double mse = 0, sqnr = 0, cosine = 0, max_abs = 0;
  std::optional<double> rel_out;
};

// Shapes agree when they match after dropping leading 1s (GGUF drops them: [1, n] is stored as [n]).
std::vector<int64_t> squeeze(std::vector<int64_t> s) {
  while (s.size() > 1 && s.front() == 1) s.erase(s.begin());
  return s;
}

int run_eval(const EvalOptions& o) {
  using namespace qk::io;
  using qk::formats::LogicalTensor;
  using qk::formats::QuantizedCheckpoint;
  auto A = QuantizedCheckpoint::open(o.a);
  auto B = QuantizedCheckpoint::open(o.b);
  if (o.scores_model() && (A->quantized() || B->quantized()))
    throw UsageError(fmt::format("--tokens/--text load GGUF/safetensors models; '{}' is a GPTQ or bitsandbytes checkpoint "
                                 "(convert it first: qtool quantize IN -o OUT.gguf --type f16)",
                                 A->quantized() ? o.a : o.b));

  // Pairs to compare.
  std::vector<std::pair<const LogicalTensor*, const LogicalTensor*>> pairs;
  std::vector<std::string> only_a, only_b;
  const bool single = A->tensors().size() == 1 && B->tensors().size() == 1 &&
                      (A->file().format() == FileFormat::Npy || B->file().format() == FileFormat::Npy);
  auto pick = [&](const QuantizedCheckpoint& f) -> const LogicalTensor* {
    if (f.file().format() == FileFormat::Npy && f.tensors().size() == 1) return &f.tensors()[0];
    return &f.tensor(o.tensor);
  };
  if (!o.tensor.empty()) {
    pairs.emplace_back(pick(*A), pick(*B));
  } else if (single) {
    pairs.emplace_back(&A->tensors()[0], &B->tensors()[0]);
  } else {
    for (const auto& t : A->tensors()) {
      if (const LogicalTensor* u = B->find(t.name())) pairs.emplace_back(&t, u);
      else only_a.push_back(t.name());
    }
    for (const auto& t : B->tensors())
      if (!A->find(t.name())) only_b.push_back(t.name());
    if (pairs.empty()) qk::fail<qk::Error>("{} and {} have no tensor name in common", o.a, o.b);
  }

  std::optional<qk::io::RowMatrixXf> X;
  if (!o.calib.empty()) X = load_matrix(o.calib);

  std::vector<Row> rows;
  double sig = 0, noise = 0, max_abs = 0;
  int64_t elements = 0;
  for (auto [ta, tb] : pairs) {
    if (squeeze(ta->info.shape) != squeeze(tb->info.shape))
      qk::fail<qk::ShapeError>("shape mismatch: {}:'{}' is {} but {}:'{}' is {}", o.a, ta->name(),
                               qk::io::shape_text(ta->info.shape), o.b, tb->name(), qk::io::shape_text(tb->info.shape));
    const RowMatrixXf wa = A->read_matrix(*ta);
    const RowMatrixXf wb = B->read_matrix(*tb);
    Row r;
    r.name = ta->name();
    r.name_b = tb->name();
    r.shape = ta->info.shape;
    r.dtype_a = ta->type;
    r.dtype_b = tb->type;
    r.elements = wa.size();
    r.mse = qk::mse(wa, wb);
    r.sqnr = qk::sqnr_db(wa, wb);
    r.cosine = qk::cosine(wa, wb);
    r.max_abs = qk::max_abs_error(wa, wb);
    if (X && ta->info.shape.size() == 2 && wa.cols() == X->cols()) r.rel_out = qk::relative_output_error(*X, wa, wb);
    sig += wa.cast<double>().squaredNorm();
    noise += (wa.cast<double>() - wb.cast<double>()).squaredNorm();
    max_abs = std::max(max_abs, r.max_abs);
    elements += r.elements;
    rows.push_back(std::move(r));
  }
  if (X && std::none_of(rows.begin(), rows.end(), [](const Row& r) { return r.rel_out.has_value(); }))
    qk::fail<qk::ShapeError>("{}: calibration matrix has {} columns but no compared matrix has {} input features",
                             o.calib, X->cols(), X->cols());
  // Worst first: lowest SQNR (NaN last), ties by name.
  std::stable_sort(rows.begin(), rows.end(), [](const Row& x, const Row& y) {
    if (std::isnan(x.sqnr) != std::isnan(y.sqnr)) return std::isnan(y.sqnr);
    if (x.sqnr != y.sqnr) return x.sqnr < y.sqnr;
    return x.name < y.name;
  });
  const double total_mse = elements ? noise / static_cast<double>(elements) : 0.0;
  const double total_sqnr = noise == 0.0 ? std::numeric_limits<double>::infinity()
                            : sig == 0.0 ? -std::numeric_limits<double>::infinity()
                                         : 10.0 * std::log10(sig / noise);

  std::optional<qk::model::CompareResult> quality;
  if (o.scores_model()) quality = model_quality(A->file(), B->file(), o.model);

  if (o.json) {
    Json j;
    j.obj();
    j.kv("a", std::string_view(o.a));
    j.kv("b", std::string_view(o.b));
    if (!o.calib.empty()) j.kv("calib", std::string_view(o.calib));
    j.key("tensors").arr();
    for (const auto& r : rows) {
      j.obj();
      j.kv("name", std::string_view(r.name));
      if (r.name_b != r.name) j.kv("name_b", std::string_view(r.name_b));
      j.key("shape").arr();
      for (int64_t d : r.shape) j.val(static_cast<long long>(d));
      j.end();
      j.kv("dtype_a", std::string_view(r.dtype_a));
      j.kv("dtype_b", std::string_view(r.dtype_b));
      j.kv("elements", static_cast<long long>(r.elements));
      j.kv("mse", r.mse);
      j.kv("sqnr_db", r.sqnr);
      j.kv("cosine", r.cosine);
      j.kv("max_abs_error", r.max_abs);
      if (r.rel_out) j.kv("rel_output_error", *r.rel_out);
      j.end();
    }
    j.end();
    j.key("only_in_a").arr();
    for (const auto& n : only_a) j.val(std::string_view(n));
    j.end();
    j.key("only_in_b").arr();
    for (const auto& n : only_b) j.val(std::string_view(n));
    j.end();
    j.key("totals").obj();
    j.kv("tensors", rows.size());
    j.kv("elements", static_cast<long long>(elements));
    j.kv("mse", total_mse);
    j.kv("sqnr_db", total_sqnr);
    j.kv("max_abs_error", max_abs);
    j.end();
    if (quality) model_quality_json(j, *quality);
    j.end();
    fmt::print("{}\n", j.str());
    return 0;
  }

  std::vector<std::string> header = {"tensor", "shape", "A", "B", "mse", "sqnr dB", "cosine", "max abs"};
  if (X) header.push_back("E (calib)");
  Table t(header);
  auto num = [](double v, const char* f) { return std::isfinite(v) ? fmt::format(fmt::runtime(f), v) : fmt::format("{}", v); };
  for (const auto& r : rows) {
    std::vector<std::string> row = {r.name == r.name_b ? r.name : r.name + " / " + r.name_b,
                                     qk::io::shape_text(r.shape), r.dtype_a, r.dtype_b, num(r.mse, "{:.4e}"),
                                     num(r.sqnr, "{:.2f}"), num(r.cosine, "{:.6f}"), num(r.max_abs, "{:.4e}")};
    if (X) row.push_back(r.rel_out ? num(*r.rel_out, "{:.4e}") : "-");
    t.add(std::move(row));
  }
  t.print();
  fmt::print("\ntotal: {} tensors, {} elements, mse {}, sqnr {} dB, max abs {}\n", rows.size(), elements,
             num(total_mse, "{:.4e}"), num(total_sqnr, "{:.2f}"), num(max_abs, "{:.4e}"));
  if (!only_a.empty()) fmt::print("only in {}: {}\n", o.a, fmt::join(only_a, ", "));
  if (!only_b.empty()) fmt::print("only in {}: {}\n", o.b, fmt::join(only_b, ", "));
  if (quality) model_quality_text(*quality, o.a, o.b);
  return 0;
}

}  // namespace

void setup_eval(CLI::App& app, Runner& run) {
  auto o = std::make_shared<EvalOptions>();
  auto* sub = app.add_subcommand("eval", "Per-tensor error of B against the reference A (any mix of formats)");
  sub->add_option("a", o->a, "Reference tensor file (or GPTQ checkpoint directory)")->required();
  sub->add_option("b", o->b, "Candidate tensor file or GPTQ checkpoint directory (dequantized as needed)")
      ->required();
  sub->add_option("--calib", o->calib, "Calibration inputs X [tokens, in_features] (.npy or one-tensor file): "
                                       "also report E = ||XWᵀ − XŴᵀ||² / ||XWᵀ||²");
  sub->add_option("--tensor", o->tensor, "Compare only this tensor");
  sub->add_flag("--json", o->json, "Print JSON instead of a table (keys in docs/cli.md)");
  sub->add_option("--tokens", o->model.tokens,
                  "int32 token ids: also load A and B as Llama models and compare perplexity, KL and top-1")
      ->check(CLI::ExistingFile);
  sub->add_option("--text", o->model.text,
                  "A text file (UTF-8): tokenized with A's vocabulary (BOS first), then scored as with --tokens")
      ->check(CLI::ExistingFile)
      ->excludes("--tokens");
  sub->add_option("--ctx", o->model.context, "--tokens/--text: chunk length (llama.cpp's perplexity chunking)")
      ->check(CLI::Range(8, 1 << 16));
  sub->add_option("--chunks", o->model.chunks, "--tokens/--text: score at most this many chunks (0 = all)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--threads", o->model.threads, "--tokens/--text: worker threads (0 = QK_NUM_THREADS or all cores)")
      ->check(CLI::NonNegativeNumber);
  sub->callback([&run, o] { run = [o] { return run_eval(*o); }; });
}

}  // namespace qtool
