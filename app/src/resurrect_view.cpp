#include "bitfsck/app/resurrect_view.hpp"

#include "bitfsck/io/executable.hpp"

#include <unistd.h>

#include <cstdlib>
#include <fstream>

namespace bitfsck::app {
namespace fs = std::filesystem;

void default_resurrect_paths(ResurrectView& v, const fs::path& run) {
    if (v.run.empty()) v.run = run.string();
    const fs::path folder = fs::is_directory(run) ? run : run.parent_path();
    std::error_code ec;
    if (v.tokens.empty() && fs::exists(folder / "train.bin", ec)) v.tokens = (folder / "train.bin").string();
    if (v.val_tokens.empty() && fs::exists(folder / "val.bin", ec)) v.val_tokens = (folder / "val.bin").string();
    if (v.out_dir.empty()) {
        fs::path base = fs::is_directory(run) ? fs::path(run.string()).lexically_normal() : run;
        std::string name = base.string();
        while (!name.empty() && name.back() == '/') name.pop_back();
        v.out_dir = name + ".resurrected";
    }
}

fs::path find_bitfsck_executable() { return io::find_executable("bitfsck", "BITFSCK"); }

std::optional<fs::path> live_metrics_file(const fs::path& out_dir) {
    std::error_code ec;
    std::optional<fs::path> best;
    fs::file_time_type newest{};
    if (!fs::is_directory(out_dir, ec)) return std::nullopt;
    for (const auto& d : fs::directory_iterator(out_dir, ec)) {
        if (!d.is_directory()) continue;
        for (const auto& f : fs::directory_iterator(d.path(), ec)) {
            const std::string name = f.path().filename().string();
            if (name.size() < 14 || name.compare(name.size() - 14, 14, ".metrics.jsonl") != 0) continue;
            const auto t = fs::last_write_time(f.path(), ec);
            if (!best || t > newest) best = f.path(), newest = t;
        }
    }
    return best;
}

std::optional<repair::ResurrectionLog> read_resurrection_log(const fs::path& out_dir) {
    std::ifstream in(out_dir / "resurrection.json");
    if (!in) return std::nullopt;
    const auto j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    try {
        return repair::resurrection_log_from_json(j, (out_dir / "resurrection.json").string());
    } catch (const Error&) {
        return std::nullopt;
    }
}

void start_resurrect_plan(JobRegistry& jobs, ResurrectView& v) {
    v.error.clear();
    const std::string run = v.run;
    v.plan_job = jobs.start<repair::Recipe>(
        "plan " + run,
        [run](JobControl& c) {
            c.progress(0, 1, "planning " + run);
            return repair::plan_resurrection({run});
        },
        [&v](Job<repair::Recipe>& job) {
            if (auto r = job.take()) {
                v.plan = *r;
                v.recipe_text = repair::to_json(*r).dump(2);
                default_resurrect_paths(v, v.run);
            } else {
                v.error = job.status() == JobStatus::Cancelled ? "planning cancelled" : job.error();
            }
            if (v.plan_job.get() == &job) v.plan_job.reset();
        });
}

bool start_resurrect_run(JobRegistry& jobs, ResurrectView& v) {
    v.error.clear();
    v.recipe_error.clear();
    repair::ResurrectOptions o;
    const auto j = nlohmann::json::parse(v.recipe_text, nullptr, false);
    if (j.is_discarded()) {
        v.recipe_error = "the recipe is not valid JSON";
        return false;
    }
    try {
        o.recipe = repair::recipe_from_json(j, "recipe");
    } catch (const Error& e) {
        v.recipe_error = e.what();
        return false;
    }
    o.inputs = {v.run};
    o.tokens = v.tokens;
    o.val_tokens = v.val_tokens;
    o.out_dir = v.out_dir;
    o.bitfsck = find_bitfsck_executable();
    std::error_code ec;
    if (o.bitfsck.empty()) v.error = "cannot find the bitfsck executable (set $BITFSCK)";
    else if (!fs::exists(o.tokens, ec) || !fs::exists(o.val_tokens, ec)) v.error = "the training and validation token files must exist";
    else if (v.out_dir.empty()) v.error = "choose an output folder";
    if (!v.error.empty()) return false;
    v.live.reset();
    v.live_file.clear();
    v.run_job = jobs.start<repair::ResurrectionLog>(
        "resurrect " + v.run,
        [o](JobControl& c) mutable {
            o.progress = c.callback();
            return repair::run_resurrection(o);
        },
        [&v](Job<repair::ResurrectionLog>& job) {
            if (auto r = job.take()) v.log = std::move(*r);
            else v.error = job.status() == JobStatus::Cancelled ? "cancelled (run again to resume after the last completed stage)" : job.error();
            if (v.run_job.get() == &job) v.run_job.reset();
        });
    return true;
}

void poll_resurrect(ResurrectView& v, double now) {
    // The live curves: re-read the newest metrics file twice a second while a run is going.
    if (v.run_job && now - v.live_read_at > 0.5) {
        v.live_read_at = now;
        if (auto f = live_metrics_file(v.out_dir)) {
            try {
                v.live = analysis::read_training_metrics(*f);
                v.live_file = *f;
            } catch (const Error&) {
                // a line being written: keep the last good read
            }
        }
    }
}

}  // namespace bitfsck::app
