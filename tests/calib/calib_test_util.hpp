#pragma once
// Helpers of the calibration tests: the reference data sets (tests/data/calib, copied from shared/data/calib,
// read through qk::io), a small JSON reader for reference.json, and fake-quant MSE with the reference's conventions
// (its "meta").
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "qk/io/tensor_file.hpp"
#include "test_util.hpp"

namespace qk::test::calib {

// ---------------------------------------------------------------- JSON (objects, arrays, numbers, strings)
struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  double num = 0.0;
  bool b = false;
  std::string str;
  std::vector<Json> arr;
  std::map<std::string, Json> obj;

  const Json& operator[](const std::string& k) const {
    auto it = obj.find(k);
    if (kind != Object || it == obj.end()) throw std::runtime_error("reference.json: no key '" + k + "'");
    return it->second;
  }
  const Json& operator[](size_t i) const { return arr.at(i); }
  // "a/b/c" lookup
  const Json& at(const std::string& path) const {
    const Json* j = this;
    size_t p = 0;
    while (p <= path.size()) {
      const size_t q = path.find('/', p);
      j = &(*j)[path.substr(p, q == std::string::npos ? std::string::npos : q - p)];
      if (q == std::string::npos) break;
      p = q + 1;
    }
    return *j;
  }
  double d() const { return num; }
  std::vector<double> vec() const {
    std::vector<double> v;
    for (const auto& e : arr) v.push_back(e.num);
    return v;
  }
};

class JsonParser {
 public:
  explicit JsonParser(const std::string& s) : s_(s) {}
  Json parse() {
    Json j = value();
    ws();
    if (i_ != s_.size()) err();
    return j;
  }

 private:
  [[noreturn]] void err() { throw std::runtime_error("reference.json: parse error at byte " + std::to_string(i_)); }
  void ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  Json value() {
    ws();
    if (i_ >= s_.size()) err();
    Json j;
    const char c = s_[i_];
    if (c == '{') {
      j.kind = Json::Object;
      ++i_;
      ws();
      if (s_[i_] == '}') { ++i_; return j; }
      for (;;) {
        ws();
        std::string k = string();
        ws();
        if (s_[i_++] != ':') err();
        j.obj[k] = value();
        ws();
        if (s_[i_] == ',') { ++i_; continue; }
        if (s_[i_] == '}') { ++i_; return j; }
        err();
      }
    }
    if (c == '[') {
      j.kind = Json::Array;
      ++i_;
      ws();
      if (s_[i_] == ']') { ++i_; return j; }
      for (;;) {
        j.arr.push_back(value());
        ws();
        if (s_[i_] == ',') { ++i_; continue; }
        if (s_[i_] == ']') { ++i_; return j; }
        err();
      }
    }
    if (c == '"') {
      j.kind = Json::String;
      j.str = string();
      return j;
    }
    if (s_.compare(i_, 4, "true") == 0) { i_ += 4; j.kind = Json::Bool; j.b = true; return j; }
    if (s_.compare(i_, 5, "false") == 0) { i_ += 5; j.kind = Json::Bool; return j; }
    if (s_.compare(i_, 4, "null") == 0) { i_ += 4; return j; }
    if (s_.compare(i_, 8, "Infinity") == 0) { i_ += 8; j.kind = Json::Number; j.num = INFINITY; return j; }
    if (s_.compare(i_, 3, "NaN") == 0) { i_ += 3; j.kind = Json::Number; j.num = NAN; return j; }
    size_t used = 0;
    j.kind = Json::Number;
    j.num = std::stod(s_.substr(i_, 40), &used);
    i_ += used;
    return j;
  }
  std::string string() {
    if (s_[i_] != '"') err();
    ++i_;
    std::string o;
    while (i_ < s_.size() && s_[i_] != '"') {
      if (s_[i_] == '\\') {
        ++i_;
        o += s_[i_] == 'n' ? '\n' : s_[i_];
      } else {
        o += s_[i_];
      }
      ++i_;
    }
    ++i_;
    return o;
  }
  const std::string& s_;
  size_t i_ = 0;
};

inline std::filesystem::path calib_data(const std::string& f) { return test_data("calib/" + f); }

inline const Json& reference() {
  static const Json j = [] {
    const auto bytes = read_bytes(calib_data("reference.json"));
    if (bytes.empty()) throw std::runtime_error("tests/data/calib/reference.json missing");
    return JsonParser(std::string(bytes.begin(), bytes.end())).parse();
  }();
  return j;
}

// ---------------------------------------------------------------- data sets
struct DataSet {
  std::vector<int64_t> shape;
  std::vector<float> x;
};

inline const DataSet& dataset(const std::string& id) {
  static std::map<std::string, std::unique_ptr<DataSet>> cache;
  auto& slot = cache[id];
  if (!slot) {
    const std::string file = reference()["datasets"][id]["file"].str;
    const auto f = qk::io::TensorFile::open(calib_data(file));
    const auto& t = f->tensors().at(0);
    if (t.dtype != qk::io::DType::F32) throw std::runtime_error(file + ": expected float32");
    const auto m = f->read_matrix(t);
    slot = std::make_unique<DataSet>();
    slot->shape = t.shape;
    slot->x.assign(m.data(), m.data() + m.size());
  }
  return *slot;
}

// ---------------------------------------------------------------- fake-quant MSE, reference conventions
// torch observers: float64, q = clip(rint(x/scale) + zp, qmin, qmax), xhat = (q - zp)·scale.
inline double fq_mse_torch(const float* x, int64_t n, double scale, int zp, int qmin, int qmax) {
  double acc = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    double q = std::nearbyint(static_cast<double>(x[i]) / scale) + zp;
    q = std::min<double>(std::max<double>(q, qmin), qmax);
    const double e = x[i] - (q - zp) * scale;
    acc += e * e;
  }
  return acc / static_cast<double>(n);
}
// NVIDIA amax: signed narrow s = 127/amax, xhat = clip(rint(x·s), -127, 127)/s; unsigned s = 255/amax, [0, 255].
inline double fq_mse_nvidia(const float* x, int64_t n, double amax, bool is_unsigned) {
  const double maxb = is_unsigned ? 255.0 : 127.0, lo = is_unsigned ? 0.0 : -127.0;
  const double s = maxb / amax;
  double acc = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double q = std::min(std::max(std::nearbyint(static_cast<double>(x[i]) * s), lo), maxb);
    const double e = x[i] - q / s;
    acc += e * e;
  }
  return acc / static_cast<double>(n);
}

}  // namespace qk::test::calib
