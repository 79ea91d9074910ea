#pragma once
// Where bitfsck's own executables are: the CLI hands model commands to bitfsck-model beside it,
// and resurrections (CLI and app) run `bitfsck finetune` etc. as child processes.
#include <filesystem>
#include <string_view>

namespace bitfsck::io {

// The running executable (/proc/self/exe); `fallback` (argv[0]) where that cannot be read.
std::filesystem::path self_executable(const char* fallback = nullptr);

// An executable called `name`: the path in environment variable `env_override` if set and
// executable, else beside this executable, else in ../cli/ (a build tree's app/ or tests/ next to
// cli/), else the first on PATH. Empty when none is found.
std::filesystem::path find_executable(std::string_view name, const char* env_override = nullptr);

}  // namespace bitfsck::io
