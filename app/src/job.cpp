#include "bitfsck/app/job.hpp"

#include <chrono>

#include "bitfsck/io/error.hpp"

namespace bitfsck::app {

void JobControl::progress(std::uint64_t done, std::uint64_t total, const std::string& label) {
    done_.store(done, std::memory_order_relaxed);
    total_.store(total, std::memory_order_relaxed);
    std::lock_guard lock(label_mutex_);
    if (label_ != label) label_ = label;
}

ProgressCallback JobControl::callback(std::uint64_t base, std::uint64_t span, std::uint64_t total, std::string label) {
    return [this, base, span, total, label = std::move(label)](const Progress& p) {
        if (span == 0) {
            progress(p.done, p.total, label.empty() ? p.label : label);
        } else {
            const std::uint64_t part = p.total ? static_cast<std::uint64_t>(static_cast<double>(span) * double(p.done) / double(p.total)) : 0;
            progress(base + part, total, label.empty() ? p.label : label);
        }
        return !cancel_requested();
    };
}

float JobControl::fraction() const {
    const std::uint64_t total = total_.load(std::memory_order_relaxed);
    if (total == 0) return 0.0f;
    const double f = static_cast<double>(done_.load(std::memory_order_relaxed)) / static_cast<double>(total);
    return static_cast<float>(f < 0 ? 0 : f > 1 ? 1 : f);
}

std::string JobControl::label() const {
    std::lock_guard lock(label_mutex_);
    return label_;
}

JobBase::~JobBase() {
    cancel();
    join();
}

void JobBase::start(std::function<void(JobControl&)> body) {
    thread_ = std::thread([this, body = std::move(body)] {
        JobStatus end = JobStatus::Done;
        try {
            body(control_);
        } catch (const Cancelled&) {
            end = JobStatus::Cancelled;
        } catch (const std::exception& e) {
            // A cancel request can surface as another error from deep in a library; what the
            // user asked for is what they should see.
            end = control_.cancel_requested() ? JobStatus::Cancelled : JobStatus::Failed;
            error_ = e.what();
        } catch (...) {
            end = JobStatus::Failed;
            error_ = "unknown error";
        }
        status_.store(end, std::memory_order_release);
    });
}

void JobBase::join() {
    if (thread_.joinable()) thread_.join();
}

bool JobBase::wait(int timeout_ms) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!finished()) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
}

}  // namespace bitfsck::app
