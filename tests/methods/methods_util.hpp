#pragma once
// Helpers of the methods tests: the reference problems of tests/data/methods (copies of shared/data/problems),
// the figures of their reference.json, and the relative output error E.
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include <Eigen/Core>

#include "qk/io/tensor_file.hpp"
#include "test_util.hpp"

namespace qk::test {

struct Problem {
  std::string name;  // key in reference.json
  int64_t group = 0;
  RowMat W, X, Xheld;
};

inline Problem load_problem(const std::string& key, const std::string& file_prefix, int64_t group) {
  Problem p;
  p.name = key;
  p.group = group;
  p.W = io::load_matrix(test_data("methods/" + file_prefix + "_W.npy"));
  p.X = io::load_matrix(test_data("methods/" + file_prefix + "_X.npy"));
  p.Xheld = io::load_matrix(test_data("methods/" + file_prefix + "_Xheld.npy"));
  return p;
}

inline const Problem& p3_small() {
  static const Problem p = load_problem("P3_small", "P3_small", 128);
  return p;
}
inline const Problem& p4a() {
  static const Problem p = load_problem("P4a_stories260K_L2_wq", "P4a_stories260K_L2_wq", 32);
  return p;
}

// A number from reference.json: problems -> problem -> method -> field. A tiny extractor for this file's shape
// (keys are unique inside one problem object); throws when something is missing.
inline double reference_figure(const std::string& problem, const std::string& method, const std::string& field) {
  static const std::string text = [] {
    std::ifstream f(test_data("methods/reference.json"));
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }();
  auto find_key = [&](const std::string& key, size_t from) {
    size_t pos = text.find("\"" + key + "\"", from);
    if (pos == std::string::npos) throw std::runtime_error("reference.json: no key " + key);
    return pos + key.size() + 2;
  };
  const size_t pp = find_key(problem, text.find("\"problems\""));
  // The problem's object ends where its closing brace balances.
  size_t depth = 0, end = pp;
  for (size_t i = text.find('{', pp); i < text.size(); ++i) {
    if (text[i] == '{') ++depth;
    if (text[i] == '}' && --depth == 0) {
      end = i;
      break;
    }
  }
  const size_t mp = find_key(method, pp);
  if (mp > end) throw std::runtime_error("reference.json: no method " + method + " in " + problem);
  const size_t fp = find_key(field, mp);
  const size_t colon = text.find(':', fp);
  return std::stod(text.substr(colon + 1, 40));
}

// E = ||X Wᵀ - X Ŵᵀ||² / ||X Wᵀ||²
template <typename A, typename B, typename C>
double rel_output_error(const A& X, const B& W, const C& What) {
  const Eigen::MatrixXf Y = X * W.transpose();
  const Eigen::MatrixXf D = X * (W - What).transpose();
  return D.cast<double>().squaredNorm() / Y.cast<double>().squaredNorm();
}

}  // namespace qk::test
