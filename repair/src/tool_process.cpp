#include "tool_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "bitfsck/io/error.hpp"

namespace bitfsck::repair {
namespace {

std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

}  // namespace

ToolRun run_tool(const std::filesystem::path& exe, const std::vector<std::string>& args, const std::filesystem::path& log_dir,
                 const std::string& name, const std::function<void()>& poll, const std::atomic<bool>* cancel) {
    const std::filesystem::path out = log_dir / (name + ".out"), err = log_dir / (name + ".err");
    std::vector<std::string> argv_s = {exe.string()};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) throw io::FileError(std::string("cannot start ") + exe.string() + ": " + std::strerror(errno));
    if (pid == 0) {
        const int fo = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        const int fe = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        const int fi = ::open("/dev/null", O_RDONLY);
        if (fo < 0 || fe < 0 || fi < 0) ::_exit(126);
        ::dup2(fi, 0), ::dup2(fo, 1), ::dup2(fe, 2);
        ::signal(SIGINT, SIG_DFL);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    bool interrupted = false;
    int status = 0;
    for (;;) {
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) throw io::FileError(std::string("waiting for ") + exe.string() + ": " + std::strerror(errno));
        if (cancel && cancel->load() && !interrupted) {
            ::kill(pid, SIGINT);
            interrupted = true;
        }
        if (poll) poll();
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    ToolRun run;
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    run.out = slurp(out);
    run.err = slurp(err);
    if (run.exit_code == 127) run.err = "cannot run " + exe.string();
    return run;
}

}  // namespace bitfsck::repair
