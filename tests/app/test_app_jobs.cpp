// The app's one registry of running work: whatever the job (a load, a resurrection, a plan), the
// status bar's progress, its Cancel button and the poll loop see it without naming it.
#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

#include "bitfsck/app/app_state.hpp"
#include "bitfsck/app/loader.hpp"
#include "bitfsck/app/resurrect_view.hpp"

using namespace bitfsck;
using namespace bitfsck::app;

namespace {

// A job that reports half done and waits for Cancel, as a long resurrection stage does.
int wait_for_cancel(JobControl& c) {
    c.progress(50, 100, "stage 1/2 finetune");
    for (int i = 0; i < 20000 && !c.cancel_requested(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (c.cancel_requested()) throw Cancelled();
    return 1;
}

void poll_until_idle(AppState& s) {
    for (int i = 0; i < 5000 && s.jobs.size() > 0; ++i) {
        poll_jobs(s);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
}

}  // namespace

TEST_CASE("a job the status bar was never told about shows its progress and stops on Cancel", "[app][jobs]") {
    AppState s;
    int ended = 0;
    JobStatus status = JobStatus::Running;
    auto handle = s.jobs.start<int>("resurrect run/", wait_for_cancel, [&](Job<int>& j) {
        ++ended;
        status = j.status();
    });
    for (int i = 0; i < 2000 && handle->fraction() == 0.0f; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    CHECK(busy(s));
    std::string label;
    CHECK(overall_progress(s, &label) == Approx(0.5));
    CHECK(label == "resurrect run/ - stage 1/2 finetune");
    cancel_all(s);
    poll_until_idle(s);
    CHECK(ended == 1);
    CHECK(status == JobStatus::Cancelled);
    CHECK_FALSE(busy(s));
    CHECK(overall_progress(s, &label) == 0.0f);
}

TEST_CASE("an ending handler may start the next job, which the registry runs too", "[app][jobs]") {
    AppState s;
    std::vector<int> results;
    s.jobs.start<int>("first", [](JobControl&) { return 1; }, [&](Job<int>& j) {
        results.push_back(*j.take());
        s.jobs.start<int>("second", [](JobControl&) { return 2; }, [&](Job<int>& k) { results.push_back(*k.take()); });
    });
    poll_until_idle(s);
    CHECK(results == std::vector<int>{1, 2});
}

TEST_CASE("a resurrection plan runs through the registry: busy, then its recipe", "[app][jobs]") {
    AppState s;
    s.resurrect.run = "/nonexistent/run";
    start_resurrect_plan(s.jobs, s.resurrect);
    CHECK(s.resurrect.plan_job != nullptr);
    CHECK(s.jobs.size() == 1);
    poll_until_idle(s);
    CHECK(s.resurrect.plan_job == nullptr);
    CHECK(s.resurrect.error.find("/nonexistent/run") != std::string::npos);
}
