#include "bitfsck/app/job_registry.hpp"

#include <algorithm>

namespace bitfsck::app {

int JobRegistry::poll() {
    // Taken out first: a handler may start jobs, which appends to entries_.
    std::vector<Entry> ended;
    for (auto it = entries_.begin(); it != entries_.end();) {
        if (it->job->finished()) {
            ended.push_back(std::move(*it));
            it = entries_.erase(it);
        } else {
            ++it;
        }
    }
    for (auto& e : ended) e.ended();
    return static_cast<int>(ended.size());
}

// A job that has ended but whose handler has not run yet still counts: its result is not in the
// state, and the handler may start the next job (a repair opens what it wrote).
bool JobRegistry::busy() const { return !entries_.empty(); }

void JobRegistry::cancel_all() {
    for (auto& e : entries_) e.job->cancel();
}

float JobRegistry::progress(std::string* label) const {
    float sum = 0;
    int n = 0;
    std::string first;
    for (const auto& e : entries_) {
        if (e.job->finished()) continue;
        sum += e.job->fraction();
        if (n++ == 0) {
            const std::string l = e.job->label();
            first = e.job->title() + (l.empty() ? "" : " - " + l);
        }
    }
    if (label) *label = n > 1 ? first + " (+" + std::to_string(n - 1) + " more)" : first;
    return n ? sum / static_cast<float>(n) : 0.0f;
}

}  // namespace bitfsck::app
