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

struct ToolJob {
    std::vector<std::string> args;
    std::filesystem::path log_dir;
    std::string name;  // stdout and stderr go to log_dir/<name>.out and .err
};

// Runs `exe args...` of every job, at most `parallel` at once, started in list order; returns
// their runs in the same order once all have ended. Calls `poll` about five times a second; when
// *cancel becomes true, starts no more and sends each running child SIGINT once (finetune saves
// and exits), SIGKILL after a grace period. Children that are still running when this throws are
// killed and reaped. Each child's results depend only on its own arguments (fixed --threads),
// which is what lets the caller run several side by side without changing a figure.
std::vector<ToolRun> run_tools(const std::filesystem::path& exe, const std::vector<ToolJob>& jobs, int parallel,
                               const std::function<void()>& poll = {}, const std::atomic<bool>* cancel = nullptr);

// One job: run_tools with a single entry.
ToolRun run_tool(const std::filesystem::path& exe, const std::vector<std::string>& args, const std::filesystem::path& log_dir,
                 const std::string& name, const std::function<void()>& poll = {}, const std::atomic<bool>* cancel = nullptr);

}  // namespace bitfsck::repair
