// placeholder until its issue lands
#include <stdexcept>

#include "quantize_opts.hpp"

namespace qtool {
int run_quantize_matrix(const QuantizeOptions&) { throw std::runtime_error("qtool quantize (matrix mode) is not implemented yet"); }
}  // namespace qtool
