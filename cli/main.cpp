#include <CLI/CLI.hpp>

#include <algorithm>
#include <iostream>

#include "bitfsck/io/error.hpp"
#include "subcommands.hpp"
#include "terminal.hpp"

namespace {

// "bitfsck scna x.pt": name the command meant, rather than CLI11's "A subcommand is required".
bool refuse_unknown_command(const CLI::App& app, int argc, char** argv) {
    if (argc < 2 || argv[1][0] == '-') return false;
    std::vector<std::string> names;
    for (const CLI::App* sub : app.get_subcommands({})) names.push_back(sub->get_name());
    if (std::find(names.begin(), names.end(), argv[1]) != names.end()) return false;
    const std::string guess = bitfsck::cli::closest_name(argv[1], names);
    bitfsck::cli::print_error(std::string("'") + argv[1] + "' is not a bitfsck command" +
                              (guess.empty() ? "" : "; did you mean '" + guess + "'?") + " (bitfsck --help lists them)");
    return true;
}

}  // namespace

int main(int argc, char** argv) {
#ifndef BITFSCK_HAVE_MODEL
    if (argc > 1 && bitfsck::cli::is_model_command(argv[1])) return bitfsck::cli::run_model_executable(argv);
#endif
    using namespace bitfsck::cli;
    CLI::App app{"bitfsck: fsck for ternary (BitNet b1.58) and 1-bit LLM checkpoints.\n"
                 "Example: bitfsck scan run/ckpt_2000.pt"};
    app.set_version_flag("--version", std::string("bitfsck ") + BITFSCK_VERSION);
    app.add_flag_callback("-q,--quiet", [] { set_quiet(true); }, "No progress lines and notes on stderr (errors and results still print)")
        ->trigger_on_parse();
    app.fallthrough();  // --quiet after the subcommand too
    app.require_subcommand(1);
    add_all_subcommands(app);
    if (refuse_unknown_command(app, argc, argv)) return kUsage;
    install_interrupt_handler();
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return exit_for_parse_error(app, e);
    } catch (const bitfsck::Error& e) {
        report(e);
    } catch (const std::exception& e) {
        print_error(std::string("internal error (please report it): ") + e.what());
        set_exit_code(kInternal);
    }
    // Results go to stdout: a full disk under `bitfsck scan --json > report.json` is an error.
    std::cout.flush();
    if (!std::cout) {
        print_error("cannot write the results to standard output (disk full, or a closed pipe?)");
        set_exit_code(kUnreadable);
    }
    return last_exit_code();
}
