#pragma once
// kill -9 at chosen moments: a command started without a shell, killed with SIGKILL (no handler
// runs, nothing is cleaned up) either after a delay or the moment a save is under way (a
// temporary sibling of the output exists), then reaped.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace bitfsck::test {

struct KillOutcome {
    bool killed = false;  // false: it finished before the moment came
    int exit_code = -1;   // when it finished by itself
    std::chrono::milliseconds ran{0};
};

// Starts argv (stdout and stderr to /dev/null), asks `now_is_the_time` every `poll` until it
// returns true (then SIGKILL) or the process ends; gives up waiting after `limit` and kills. The
// child is killed and reaped whatever happens, a throwing moment included. A poll of 0 spins: for
// moments that last microseconds (a small file's save), at the price of a core.
inline KillOutcome spawn_and_kill(const std::vector<std::string>& argv, const std::function<bool()>& now_is_the_time,
                                  std::chrono::milliseconds limit = std::chrono::minutes(30),
                                  std::chrono::microseconds poll = std::chrono::microseconds(200)) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid = 0;
    const auto start = std::chrono::steady_clock::now();
    const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start " + argv[0]);
    KillOutcome outcome;
    while (true) {
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            break;
        }
        bool now = false;
        try {
            now = now_is_the_time();
        } catch (...) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            throw;
        }
        if (!now && poll.count() > 0) std::this_thread::sleep_for(poll);
        if (now || std::chrono::steady_clock::now() - start > limit) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            outcome.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
            if (!outcome.killed) outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            break;
        }
    }
    outcome.ran = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    return outcome;
}

// A moment `delay` after the start.
inline std::function<bool()> after(std::chrono::microseconds delay) {
    const auto at = std::chrono::steady_clock::now() + delay;
    return [at] { return std::chrono::steady_clock::now() >= at; };
}

// The moment a file whose name contains `marker` (".tmp-": an atomic save in progress) exists in
// `folder`, or in a folder below it.
inline std::function<bool()> while_saving(const std::filesystem::path& folder, std::string marker = ".tmp-") {
    return [folder, marker] {
        std::error_code ec;
        for (auto it = std::filesystem::recursive_directory_iterator(folder, ec); !ec && it != std::filesystem::recursive_directory_iterator();
             it.increment(ec))
            if (it->path().filename().string().find(marker) != std::string::npos) return true;
        return false;
    };
}

}  // namespace bitfsck::test
