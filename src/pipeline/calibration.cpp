// Calibration sources (qk/pipeline/calibration.hpp).
#include "qk/pipeline/calibration.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "qk/core/error.hpp"
#include "qk/formats/tensor_values.hpp"
#include "qk/model/text.hpp"
#include "qk/model/token_file.hpp"

namespace qk::pipeline {
namespace {

std::vector<std::vector<int32_t>> cut(const std::vector<int32_t>& all, size_t length) {
  std::vector<std::vector<int32_t>> seqs;
  for (size_t s = 0; s + length <= all.size(); s += length)
    seqs.emplace_back(all.begin() + static_cast<ptrdiff_t>(s), all.begin() + static_cast<ptrdiff_t>(s + length));
  return seqs;
}

}  // namespace

int sequence_length(const SequenceShape& s, const ArchitectureAdapter& model) {
  int n = s.length;
  if (model.context() > 0 && n > model.context()) n = model.context();
  if (n < 2) fail<InvalidArgument>("calibration sequences of {} tokens are too short", n);
  if (s.samples <= 0) fail<InvalidArgument>("calibration needs at least one sequence, got {}", s.samples);
  return n;
}

std::vector<std::vector<int32_t>> GeneratedTokens::sequences(ArchitectureAdapter& model) {
  SampleSpec spec;
  spec.samples = shape_.samples;
  spec.length = sequence_length(shape_, model);
  spec.seed = seed_;
  spec.threads = threads_;
  const auto all = model.sample(spec);
  description_ = fmt::format("{} sequences of {} tokens sampled from the model (seed {}, temperature 1, BOS {})",
                             spec.samples, spec.length, seed_, model.bos());
  return cut(all, static_cast<size_t>(spec.length));
}

std::vector<std::vector<int32_t>> TokenFile::sequences(ArchitectureAdapter& model) {
  const int length = sequence_length(shape_, model);
  std::vector<int32_t> all =
      model::read_tokens(path_, model.vocab(), static_cast<size_t>(length),
                         fmt::format("one calibration sequence of {} (--calib-ctx)", length));
  const size_t n = all.size() / static_cast<size_t>(length);
  all.resize(std::min(n, static_cast<size_t>(shape_.samples)) * static_cast<size_t>(length));
  description_ = fmt::format("{} sequences of {} tokens from {}", all.size() / static_cast<size_t>(length), length,
                             path_.string());
  return cut(all, static_cast<size_t>(length));
}

std::vector<std::vector<int32_t>> TextTokens::sequences(ArchitectureAdapter& model) {
  const int length = sequence_length(shape_, model);
  if (tok_.size() != model.vocab())
    fail<FormatError>("{}: the vocabulary has {} tokens, the model {}", tok_.source(), tok_.size(), model.vocab());
  auto seqs = model::text_sequences(tok_, path_, shape_.samples, length);
  description_ = fmt::format("{} sequences of {} tokens from the text {} (BOS first)", seqs.size(), length,
                             path_.string());
  return seqs;
}

ActivationFile::ActivationFile(const std::filesystem::path& path) : file_(io::TensorFile::open(path)) {}

std::string ActivationFile::describe() const { return fmt::format("layer activations from {}", file_->path().string()); }

io::RowMatrixXf ActivationFile::activations(const std::string& weight, int64_t in_features) const {
  const io::RowMatrixXf X = formats::read_matrix(*file_, file_->tensor(weight));
  const std::string where = fmt::format("{}: tensor '{}'", file_->path().string(), weight);
  if (X.cols() != in_features)
    fail<ShapeError>("{}: calibration activations have {} features, the weight {} inputs", where, X.cols(), in_features);
  if (X.rows() == 0) fail<ShapeError>("{}: calibration activations have no tokens", where);
  return X;
}

}  // namespace qk::pipeline
