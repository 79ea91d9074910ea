#include <CLI/CLI.hpp>

#include <iostream>

#include "subcommands.hpp"

int main(int argc, char** argv) {
#ifndef BITFSCK_HAVE_MODEL
    if (argc > 1 && bitfsck::cli::is_model_command(argv[1])) return bitfsck::cli::run_model_executable(argv);
#endif
    CLI::App app{"bitfsck: fsck for ternary (BitNet b1.58) and 1-bit LLM checkpoints.\n"
                 "Example: bitfsck scan run/ckpt_2000.pt"};
    app.set_version_flag("--version", std::string("bitfsck ") + BITFSCK_VERSION);
    app.require_subcommand(1);
    bitfsck::cli::add_all_subcommands(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return bitfsck::cli::exit_for_parse_error(app, e);
    }
    return bitfsck::cli::last_exit_code();
}
