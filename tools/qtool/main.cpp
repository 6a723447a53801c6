// qtool: the shell face of qk. Exit codes: 0 success, 1 runtime error, 2 usage error.
// Errors are one line on stderr.
#include <cstdio>
#include <exception>

#include <fmt/format.h>

#include "commands.hpp"
#include "qk/core/error.hpp"
#include "qk/util/temporaries.hpp"

int main(int argc, char** argv) {
  CLI::App app{"qtool — quantize, inspect, evaluate and benchmark model weights with qk"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "qtool 0.1.0");
  qtool::Runner run;
  qtool::setup_inspect(app, run);
  qtool::setup_quantize(app, run);
  qtool::setup_eval(app, run);
  qtool::setup_calibrate(app, run);
  qtool::setup_bench(app, run);
  qtool::setup_tokenize(app, run);
  qtool::setup_convert(app, run);
  qtool::setup_generate(app, run);
  qtool::setup_run(app, run);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "qtool: usage error: {}\n", e.what());
    return 2;
  }
  // an interrupted run (Ctrl-C, kill, a closed terminal) leaves no temporary output behind
  qk::util::remove_on_signals();
  try {
    return run ? run() : 2;
  } catch (const qtool::UsageError& e) {
    fmt::print(stderr, "qtool: usage error: {}\n", e.what());
    return 2;
  } catch (const qk::InvalidArgument& e) {
    fmt::print(stderr, "qtool: usage error: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "qtool: error: {}\n", e.what());
    return 1;
  }
}
