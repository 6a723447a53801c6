#pragma once
// qtool's subcommands. Each lives in its own file (cmd_<name>.cpp) with an options struct,
// a setup_<name>() that declares the options, and a run function (CLI11's subcom_in_files shape).
#include <functional>

#include <CLI/CLI.hpp>

namespace qtool {

// setup_<name> stores into `run` the function that performs the chosen subcommand once parsing succeeded.
using Runner = std::function<int()>;

void setup_inspect(CLI::App& app, Runner& run);
void setup_quantize(CLI::App& app, Runner& run);
void setup_eval(CLI::App& app, Runner& run);
void setup_calibrate(CLI::App& app, Runner& run);
void setup_bench(CLI::App& app, Runner& run);
void setup_tokenize(CLI::App& app, Runner& run);
void setup_convert(CLI::App& app, Runner& run);
void setup_generate(CLI::App& app, Runner& run);
void setup_run(CLI::App& app, Runner& run);

// Thrown for a bad combination of options found after parsing: exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace qtool
