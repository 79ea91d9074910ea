#include "bitfsck/app/job.hpp"

#include <chrono>

#include "bitfsck/io/error.hpp"
#include "bitfsck/analysis/scan.hpp"

namespace bitfsck::app {

void JobControl::progress(std::uint64_t done, std::uint64_t total, const std::string& label) {
    done_.store(done, std::memory_order_relaxed);
    total_.store(total, std::memory_order_relaxed);
    std::lock_guard lock(label_mutex_);
    if (label_ != label) label_ = label;
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
        } catch (const analysis::Cancelled&) {
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
