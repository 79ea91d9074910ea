#pragma once
// Background work for the app: loading, scanning and diffing run on a std::thread so the UI
// keeps drawing at full rate; the UI thread only polls progress and picks up the result.
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "bitfsck/io/progress.hpp"

namespace bitfsck::app {

enum class JobStatus { Running, Done, Failed, Cancelled };

// What the work function sees: a thread-safe progress sink and the cancel flag, which the
// libraries poll themselves (analysis::ScanOptions::cancel).
class JobControl {
public:
    // done/total in any unit (bytes for scans); label says what is being worked on.
    void progress(std::uint64_t done, std::uint64_t total, const std::string& label);
    bool cancel_requested() const { return cancel_.load(std::memory_order_relaxed); }
    const std::atomic<bool>* cancel_flag() const { return &cancel_; }
    // The callback a library takes (io/progress.hpp): shows its progress in [base, base + span)
    // of `total` units of this job's bar (span 0: as the library counts it), and returns false
    // once Cancel was pressed.
    ProgressCallback callback(std::uint64_t base = 0, std::uint64_t span = 0, std::uint64_t total = 0, std::string label = {});

    float fraction() const;   // 0..1; 0 while total is unknown
    std::string label() const;

private:
    friend class JobBase;
    std::atomic<bool> cancel_{false};
    std::atomic<std::uint64_t> done_{0}, total_{0};
    mutable std::mutex label_mutex_;
    std::string label_;
};

// The thread, status and error of one job; the typed result lives in Job<T>.
class JobBase {
public:
    explicit JobBase(std::string title) : title_(std::move(title)) {}
    virtual ~JobBase();  // requests cancellation and joins: never leaves a thread behind
    JobBase(const JobBase&) = delete;
    JobBase& operator=(const JobBase&) = delete;

    const std::string& title() const { return title_; }
    JobStatus status() const { return status_.load(std::memory_order_acquire); }
    bool finished() const { return status() != JobStatus::Running; }
    void cancel() { control_.cancel_.store(true); }
    bool cancel_requested() const { return control_.cancel_requested(); }
    float fraction() const { return control_.fraction(); }
    std::string label() const { return control_.label(); }
    // The one-line error of a failed job (the library's message, which names the file).
    const std::string& error() const { return error_; }
    // Blocks until the job has finished; false when timeout_ms passed first.
    bool wait(int timeout_ms) const;

protected:
    // Runs body on the worker thread; an exception becomes Failed (or Cancelled when the user
    // asked for it and the library gave up with its Cancelled error).
    void start(std::function<void(JobControl&)> body);
    void join();

private:
    std::string title_;
    JobControl control_;
    std::atomic<JobStatus> status_{JobStatus::Running};
    std::string error_;  // written by the worker before status_ leaves Running
    std::thread thread_;
};

template <class T>
class Job : public JobBase {
public:
    Job(std::string title, std::function<T(JobControl&)> work) : JobBase(std::move(title)) {
        start([this, work = std::move(work)](JobControl& c) { result_.emplace(work(c)); });
    }
    ~Job() override { cancel(); join(); }  // before result_ goes: the worker may still write it

    // The result once status() is Done; moved out, so take it once.
    std::optional<T> take() {
        if (status() != JobStatus::Done) return std::nullopt;
        std::optional<T> r = std::move(result_);
        result_.reset();
        return r;
    }

private:
    std::optional<T> result_;
};

}  // namespace bitfsck::app
