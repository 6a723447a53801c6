#pragma once
// All calibration observers, and a factory from a method name (what `qtool calibrate --method` takes):
//   minmax | moving_average[:c] | percentile[:p] | entropy | mse
#include <charconv>
#include <memory>
#include <string>
#include <string_view>

#include "qk/calib/entropy.hpp"
#include "qk/calib/histogram.hpp"
#include "qk/calib/mse.hpp"
#include "qk/calib/observer.hpp"
#include "qk/calib/percentile.hpp"
#include "qk/core/error.hpp"
#include "qk/core/scheme.hpp"

namespace qk::calib {

namespace detail {
inline double parse_number(std::string_view s, std::string_view method) {
  double v = 0.0;
  const auto* end = s.data() + s.size();
  const auto [p, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || p != end || s.empty())
    fail<InvalidArgument>("calibration method '{}': '{}' is not a number", method, s);
  return v;
}
}  // namespace detail

// Throws InvalidArgument for an unknown method or a bad parameter.
inline std::unique_ptr<Observer> make_observer(std::string_view method, const QuantScheme& s, int64_t bins = 2048) {
  const auto colon = method.find(':');
  const std::string_view base = method.substr(0, colon);
  const std::string_view arg = colon == std::string_view::npos ? std::string_view{} : method.substr(colon + 1);
  if (colon != std::string_view::npos && arg.empty())
    fail<InvalidArgument>("calibration method '{}': missing value after ':'", method);
  auto no_arg = [&] {
    if (!arg.empty()) fail<InvalidArgument>("calibration method '{}' takes no parameter", base);
  };
  if (base == "minmax") {
    no_arg();
    return std::make_unique<MinMaxObserver>(s, bins);
  }
  if (base == "moving_average") {
    const double c = arg.empty() ? 0.01 : detail::parse_number(arg, method);
    return std::make_unique<MovingAverageMinMaxObserver>(s, static_cast<float>(c), bins);
  }
  if (base == "percentile") {
    const double p = arg.empty() ? 99.99 : detail::parse_number(arg, method);
    return std::make_unique<PercentileObserver>(s, p, bins);
  }
  if (base == "entropy") {
    no_arg();
    return std::make_unique<EntropyObserver>(s, bins);
  }
  if (base == "mse") {
    no_arg();
    return std::make_unique<MseObserver>(s, bins);
  }
  fail<InvalidArgument>("unknown calibration method '{}' (minmax, moving_average[:c], percentile[:p], entropy, mse)",
                        method);
}

}  // namespace qk::calib
