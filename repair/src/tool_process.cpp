#include "tool_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
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

// Whatever happens in the caller (a throwing progress callback, a failed wait), the child never
// outlives run_tool: it is killed and reaped.
struct ChildGuard {
    pid_t pid;
    bool reaped = false;
    ~ChildGuard() {
        if (reaped) return;
        ::kill(pid, SIGKILL);
        while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {}
    }
};

constexpr auto kGraceAfterCancel = std::chrono::seconds(30);

}  // namespace

ToolRun run_tool(const std::filesystem::path& exe, const std::vector<std::string>& args, const std::filesystem::path& log_dir,
                 const std::string& name, const std::function<void()>& poll, const std::atomic<bool>* cancel) {
    const std::filesystem::path out = log_dir / (name + ".out"), err = log_dir / (name + ".err");
    std::vector<std::string> argv_s = {exe.string()};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    // The child reports a failed exec (with its errno) through this pipe, closed on a good exec.
    int report[2];
    if (::pipe2(report, O_CLOEXEC) != 0) throw io::FileError(std::string("cannot start ") + exe.string() + ": " + std::strerror(errno));
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
        ::close(report[0]), ::close(report[1]);
        throw io::FileError(std::string("cannot start ") + exe.string() + ": " + std::strerror(errno));
    }
    if (pid == 0) {
        int e = 0;
        const int fo = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        const int fe = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        const int fi = ::open("/dev/null", O_RDONLY);
        if (fo < 0 || fe < 0 || fi < 0) {
            e = errno;
        } else {
            ::dup2(fi, 0), ::dup2(fo, 1), ::dup2(fe, 2);
            // Nothing of the parent's but the report pipe (close-on-exec) reaches the tool, and
            // SIGINT reaches it even when the parent's thread had it blocked (the app's jobs).
            for (int fd = 3; fd < 1024; ++fd)
                if (fd != report[1]) ::close(fd);
            sigset_t none;
            sigemptyset(&none);
            ::sigprocmask(SIG_SETMASK, &none, nullptr);
            ::signal(SIGINT, SIG_DFL);
            // Its own process group: a Ctrl-C at the terminal reaches only the parent, which
            // forwards exactly one SIGINT (two would end a fine-tune before it saves). And it dies
            // with the parent: a killed resurrect leaves no training behind writing into its folder.
            ::setpgid(0, 0);
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            // Killed between fork and prctl, the parent is gone and no signal will come.
            if (::getppid() != parent) ::_exit(127);
            ::execv(argv[0], argv.data());
            e = errno;
        }
        [[maybe_unused]] auto n = ::write(report[1], &e, sizeof e);
        ::_exit(127);
    }
    ChildGuard guard{pid};
    ::close(report[1]);
    int exec_errno = 0;
    const auto got = ::read(report[0], &exec_errno, sizeof exec_errno);
    ::close(report[0]);
    if (got == static_cast<ssize_t>(sizeof exec_errno))
        throw io::FileError("cannot run " + exe.string() + ": " + std::strerror(exec_errno));

    std::optional<std::chrono::steady_clock::time_point> interrupted_at;
    int status = 0;
    for (;;) {
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) throw io::FileError(std::string("waiting for ") + exe.string() + ": " + std::strerror(errno));
        if (cancel && cancel->load()) {
            const auto now = std::chrono::steady_clock::now();
            if (!interrupted_at) {
                ::kill(pid, SIGINT);  // finetune finishes its step, saves and exits
                interrupted_at = now;
            } else if (now - *interrupted_at > kGraceAfterCancel) {
                ::kill(pid, SIGKILL);
            }
        }
        if (poll) poll();
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    guard.reaped = true;
    ToolRun run;
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    run.out = slurp(out);
    run.err = slurp(err);
    return run;
}

}  // namespace bitfsck::repair
