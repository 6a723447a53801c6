// `qtool calibrate`: placeholder until its issue lands; reports that it is not available yet.
#include "commands.hpp"

namespace qtool {

void setup_calibrate(CLI::App& app, Runner& run) {
  auto* sub = app.add_subcommand("calibrate", "(not available yet)");
  sub->allow_extras();
  sub->callback([&run] { run = [] { throw std::runtime_error("qtool calibrate is not implemented yet"); return 1; }; });
}

}  // namespace qtool
