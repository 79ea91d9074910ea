#include "bitfsck/io/progress.hpp"

namespace bitfsck {

std::string_view progress_unit_name(ProgressUnit u) {
    switch (u) {
        case ProgressUnit::Bytes: return "bytes";
        case ProgressUnit::Steps: return "steps";
        case ProgressUnit::Tensors: return "tensors";
        case ProgressUnit::Checkpoints: return "checkpoints";
        case ProgressUnit::Stages: return "stages";
        case ProgressUnit::Windows: return "windows";
        case ProgressUnit::Tokens: return "tokens";
    }
    return "bytes";
}

ProgressTracker::ProgressTracker(ProgressCallback callback, ProgressUnit unit, std::uint64_t total)
    : callback_(std::move(callback)), unit_(unit), total_(total) {}

void ProgressTracker::report(std::uint64_t done, std::string_view label) {
    if (stopped()) throw Cancelled();
    if (!callback_) return;
    std::lock_guard lock(mutex_);
    if (stopped()) throw Cancelled();
    Progress p;
    p.done = done;
    p.total = total_.load(std::memory_order_relaxed);
    p.unit = unit_;
    p.label = std::string(label);
    if (!callback_(p)) {
        stopped_.store(true, std::memory_order_relaxed);
        throw Cancelled();
    }
}

void ProgressTracker::advance(std::uint64_t n, std::string_view label) {
    report(done_.fetch_add(n, std::memory_order_relaxed) + n, label);
}

void ProgressTracker::set(std::uint64_t done, std::string_view label) {
    done_.store(done, std::memory_order_relaxed);
    report(done, label);
}

void ProgressTracker::set_total(std::uint64_t total) { total_.store(total, std::memory_order_relaxed); }

void ProgressTracker::check(bool ask) {
    if (ask) return report(done(), {});
    if (stopped()) throw Cancelled();
}

ProgressCallback ProgressTracker::span(std::uint64_t from, std::uint64_t to) {
    return [this, from, to](const Progress& inner) {
        const double f = inner.total ? static_cast<double>(inner.done) / static_cast<double>(inner.total) : 0.0;
        const auto done = from + static_cast<std::uint64_t>(f * static_cast<double>(to - from));
        try {
            set(done, inner.label);
        } catch (const Cancelled&) {
            return false;
        }
        return true;
    };
}

ProgressCallback stop_when(const std::atomic<bool>& flag, ProgressCallback inner) {
    return [&flag, inner = std::move(inner)](const Progress& p) {
        if (flag.load(std::memory_order_relaxed)) return false;
        return inner ? inner(p) : true;
    };
}

}  // namespace bitfsck
