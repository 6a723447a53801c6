// placeholder until its issue lands
#include <stdexcept>

#include "quantize_opts.hpp"

namespace qtool {
int run_quantize_model(const QuantizeOptions&) { throw std::runtime_error("qtool quantize (model mode) is not implemented yet"); }
}  // namespace qtool
