// `bitfsck induction|generate|perplexity|finetune` run in the sibling executable bitfsck-model, which
// links LibTorch; see cli/CMakeLists.txt for why.
#ifndef BITFSCK_HAVE_MODEL
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "bitfsck/io/executable.hpp"
#include "subcommands.hpp"
#include "terminal.hpp"

namespace bitfsck::cli {

namespace {
constexpr std::string_view kModelCommands[] = {"induction", "generate", "perplexity", "finetune"};
}

void add_model_forwarding_subcommands(CLI::App& app) {
    // Listed so that `bitfsck --help` shows them; the arguments are never parsed here.
    app.add_subcommand("induction", "Per-head induction metrics (IPMR) from real forward passes (runs bitfsck-model)");
    app.add_subcommand("generate", "Greedy or sampled decoding with a degeneration check (runs bitfsck-model)");
    app.add_subcommand("perplexity", "Loss and perplexity on a token file (runs bitfsck-model)");
    app.add_subcommand("finetune", "Fine-tune with anti-collapse regularizers, on CPU or CUDA, one process or many (runs bitfsck-model)");
}

bool is_model_command(const char* arg) {
    for (auto name : kModelCommands)
        if (name == arg) return true;
    return false;
}

int run_model_executable(char** argv) {
    const std::filesystem::path model = io::self_executable(argv[0]).parent_path() / "bitfsck-model";
    if (!std::filesystem::exists(model)) {
        print_error(std::string(argv[1]) + " needs " + model.string() +
                    ", which this build does not have (it was configured with BITFSCK_BUILD_MODEL=OFF)");
        return kUsage;
    }
    ::execv(model.c_str(), argv);
    print_error("cannot run " + model.string() + ": " + std::strerror(errno));
    return kUsage;
}

}  // namespace bitfsck::cli
#endif
