#pragma once
// The one registry of the app's running work (as ImHex keeps its tasks): every background job is
// started through it, and the status bar, Cancel and the poll loop walk it without naming jobs.
// Each job comes with what to do once it has ended (take its result into the state, log, open
// what it wrote), which poll() runs on the UI thread.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bitfsck/app/job.hpp"

namespace bitfsck::app {

class JobRegistry {
public:
    // Starts `work` on a thread of its own. When it has ended (done, failed or cancelled), the
    // next poll() calls `ended(job)`. The caller may keep the handle to show the job in its view;
    // the registry keeps the job until it has ended, handle or not.
    template <class T>
    std::shared_ptr<Job<T>> start(std::string title, std::function<T(JobControl&)> work, std::function<void(Job<T>&)> ended) {
        auto job = std::make_shared<Job<T>>(std::move(title), std::move(work));
        entries_.push_back({job, [job, ended = std::move(ended)] {
                                if (ended) ended(*job);
                            }});
        return job;
    }

    // Runs the ended handlers of the jobs that have ended since the last call (they may start new
    // jobs); returns how many.
    int poll();
    bool busy() const;       // a job is running, or has ended and poll() has not handed it on yet
    void cancel_all();       // asks every running job to stop; their ended handlers still run
    // The running jobs as one bar (mean fraction, 0..1) and what the first one is doing.
    float progress(std::string* label) const;
    std::size_t size() const { return entries_.size(); }  // jobs not yet handed to their handler

private:
    struct Entry {
        std::shared_ptr<JobBase> job;
        std::function<void()> ended;
    };
    std::vector<Entry> entries_;
};

}  // namespace bitfsck::app
