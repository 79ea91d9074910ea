#include "tool_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
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

// A started child: forked and exec'd (a failed exec has been reported), not yet reaped.
struct Child {
    std::size_t job = 0;
    std::unique_ptr<ChildGuard> guard;
    std::filesystem::path out, err;
    std::optional<std::chrono::steady_clock::time_point> interrupted_at;
};

Child start_child(const std::filesystem::path& exe, const ToolJob& job, std::size_t index) {
    Child c;
    c.job = index;
    c.out = job.log_dir / (job.name + ".out");
    c.err = job.log_dir / (job.name + ".err");
    std::vector<std::string> argv_s = {exe.string()};
    argv_s.insert(argv_s.end(), job.args.begin(), job.args.end());
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
        const int fo = ::open(c.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        const int fe = ::open(c.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
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
    c.guard.reset(new ChildGuard{pid});  // not make_unique(ChildGuard{pid}): the temporary would kill the child
    ::close(report[1]);
    int exec_errno = 0;
    const auto got = ::read(report[0], &exec_errno, sizeof exec_errno);
    ::close(report[0]);
    if (got == static_cast<ssize_t>(sizeof exec_errno))
        throw io::FileError("cannot run " + exe.string() + ": " + std::strerror(exec_errno));
    return c;
}

}  // namespace

std::vector<ToolRun> run_tools(const std::filesystem::path& exe, const std::vector<ToolJob>& jobs, int parallel,
                               const std::function<void()>& poll, const std::atomic<bool>* cancel) {
    using clock = std::chrono::steady_clock;
    std::vector<ToolRun> runs(jobs.size());
    std::vector<Child> running;
    std::size_t next = 0;
    const std::size_t at_once = static_cast<std::size_t>(std::max(parallel, 1));
    // Children are checked every 10 ms, so a short one (a perplexity of a small model) is not
    // left waiting for the next poll; the caller's poll keeps its five times a second.
    auto last_poll = clock::now();
    for (;;) {
        const bool cancelled = cancel && cancel->load();
        while (!cancelled && next < jobs.size() && running.size() < at_once) {
            running.push_back(start_child(exe, jobs[next], next));
            ++next;
        }
        if (running.empty()) break;
        for (std::size_t i = 0; i < running.size();) {
            Child& c = running[i];
            int status = 0;
            const pid_t r = ::waitpid(c.guard->pid, &status, WNOHANG);
            if (r < 0 && errno != EINTR) throw io::FileError(std::string("waiting for ") + exe.string() + ": " + std::strerror(errno));
            if (r == c.guard->pid) {
                c.guard->reaped = true;
                ToolRun& run = runs[c.job];
                run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
                run.out = slurp(c.out);
                run.err = slurp(c.err);
                running.erase(running.begin() + static_cast<std::ptrdiff_t>(i));
                continue;
            }
            if (cancelled) {
                const auto now = clock::now();
                if (!c.interrupted_at) {
                    ::kill(c.guard->pid, SIGINT);  // finetune finishes its step, saves and exits
                    c.interrupted_at = now;
                } else if (now - *c.interrupted_at > kGraceAfterCancel) {
                    ::kill(c.guard->pid, SIGKILL);
                }
            }
            ++i;
        }
        if (running.empty() && (cancelled || next >= jobs.size())) break;
        if (poll && clock::now() - last_poll >= std::chrono::milliseconds(200)) {
            poll();
            last_poll = clock::now();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return runs;
}

ToolRun run_tool(const std::filesystem::path& exe, const std::vector<std::string>& args, const std::filesystem::path& log_dir,
                 const std::string& name, const std::function<void()>& poll, const std::atomic<bool>* cancel) {
    return run_tools(exe, {ToolJob{args, log_dir, name}}, 1, poll, cancel).front();
}

}  // namespace bitfsck::repair
