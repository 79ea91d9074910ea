#pragma once
// Running a bitfsck subcommand as a child process: stdout and stderr go to files (kept beside the
// stage's outputs, so a failed stage can be read afterwards), and the caller polls while it runs.
#include <atomic>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace bitfsck::repair {

struct ToolRun {
    int exit_code = -1;  // -1: killed by a signal
    std::string out, err;
};

// Runs `exe args...` with stdout/stderr in log_dir/<name>.out and .err. Calls `poll` about five
// times a second; when *cancel becomes true, sends SIGINT once (finetune saves and exits).
ToolRun run_tool(const std::filesystem::path& exe, const std::vector<std::string>& args, const std::filesystem::path& log_dir,
                 const std::string& name, const std::function<void()>& poll = {}, const std::atomic<bool>* cancel = nullptr);

}  // namespace bitfsck::repair
