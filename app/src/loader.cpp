#include "bitfsck/app/loader.hpp"

#include <algorithm>
#include <system_error>

#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "bitfsck/io/checkpoint_files.hpp"
#include "bitfsck/io/object_tree.hpp"

namespace bitfsck::app {

namespace fs = std::filesystem;

namespace {

// Error messages from io/ already name the file; the others get it prepended.
std::string naming_file(const fs::path& file, const std::string& what) {
    return what.find(file.string()) != std::string::npos ? what : file.string() + ": " + what;
}

std::shared_ptr<CheckpointData> load_checkpoint(const fs::path& file, JobControl& control, std::uint64_t base,
                                                std::uint64_t span, std::uint64_t total, const std::string& label) {
    auto data = std::make_shared<CheckpointData>();
    data->path = file;
    control.progress(base, total, label + ": opening");
    data->checkpoint = std::make_shared<const io::Checkpoint>(io::Checkpoint::open(file));
    data->tree = io::object_tree(*data->checkpoint);
    analysis::ScanOptions options;
    options.cancel = control.cancel_flag();
    // Each file gets `span` units of the job's bar, filled in proportion to the scan's own progress.
    options.progress = [&control, base, span, total, label](std::uint64_t done, std::uint64_t all, const std::string&) {
        const std::uint64_t part = all ? static_cast<std::uint64_t>(static_cast<double>(span) * double(done) / double(all)) : 0;
        control.progress(base + part, total, label);
    };
    data->report = analysis::scan_checkpoint(*data->checkpoint, options);
    return data;
}

}  // namespace

Document load_document(const fs::path& path, JobControl& control) {
    constexpr std::uint64_t kUnit = 1000;
    Document doc;
    doc.path = path;
    std::error_code ec;
    if (!fs::is_directory(path, ec)) {
        if (!fs::exists(path, ec)) throw io::FileError(path.string() + ": no such file or folder");
        doc.checkpoints.push_back(load_checkpoint(path, control, 0, kUnit, kUnit, path.filename().string()));
        return doc;
    }

    doc.is_run = true;
    const std::vector<fs::path> files = io::checkpoint_files_in(path);
    if (files.empty()) throw io::FileError(path.string() + ": no checkpoint files (*.pt, *.pth, *.bin, *.safetensors, *.ckpt)");
    std::vector<std::shared_ptr<CheckpointData>> loaded;
    const std::uint64_t total = kUnit * files.size();
    for (std::size_t i = 0; i < files.size(); ++i) {
        if (control.cancel_requested()) throw analysis::Cancelled();
        const std::string label = "[" + std::to_string(i + 1) + "/" + std::to_string(files.size()) + "] " + files[i].filename().string();
        try {
            auto data = load_checkpoint(files[i], control, kUnit * i, kUnit, total, label);
            // A checkpoint needs a step to take its place in the timeline; leave it out alone
            // rather than refusing the whole run (as the CLI's timeline does).
            if (!data->report.step && !analysis::step_from_file_name(files[i])) {
                doc.skipped.push_back(files[i].string() + ": no training step in the checkpoint or digits in its name");
                continue;
            }
            loaded.push_back(std::move(data));
        } catch (const analysis::Cancelled&) {
            throw;
        } catch (const Error& e) {
            // Run folders hold data files too (train.bin); they are not the run's checkpoints.
            doc.skipped.push_back(naming_file(files[i], e.what()));
        }
    }
    if (loaded.empty())
        throw io::FormatError(path.string(), "none of the " + std::to_string(files.size()) + " files is a readable checkpoint" +
                                                 (doc.skipped.empty() ? "" : " (" + doc.skipped.front() + ")"));
    control.progress(total, total, "building the timeline");
    std::vector<analysis::ScanReport> reports;
    reports.reserve(loaded.size());
    for (const auto& c : loaded) reports.push_back(c->report);
    doc.timeline = analysis::build_timeline(std::move(reports));
    // Put the checkpoints in the timeline's (step) order, so points[i] is checkpoints[i].
    for (const auto& p : doc.timeline->points) {
        auto it = std::find_if(loaded.begin(), loaded.end(), [&](const auto& c) { return c && c->report.file == p.file; });
        if (it == loaded.end())
            throw io::FormatError(path.string(), "the timeline names " + p.file + ", which is not among the scanned files");
        doc.checkpoints.push_back(std::move(*it));
    }
    return doc;
}

void start_open(AppState& s, const fs::path& path) {
    for (const auto& l : s.loads)
        if (l.path == path) return;
    add_recent(s.recent, path);
    LoadJob job;
    job.path = path;
    job.job = std::make_unique<Job<Document>>("open " + path.string(), [path](JobControl& c) { return load_document(path, c); });
    s.loads.push_back(std::move(job));
    log_info(s, "opening " + path.string());
}

void start_diff(AppState& s, const CheckpointRef& a, const CheckpointRef& b) {
    const CheckpointData* ca = find_checkpoint(s, a);
    const CheckpointData* cb = find_checkpoint(s, b);
    if (!ca || !cb) {
        log_error(s, "compare: pick two open checkpoints");
        return;
    }
    // Shared ownership: closing a document while it is being diffed must not pull the files
    // out from under the worker.
    auto ka = find_document(s, a.document)->checkpoints[a.checkpoint];
    auto kb = find_document(s, b.document)->checkpoints[b.checkpoint];
    if (s.diff_job) {
        // diff_checkpoints has no cancel flag: the old job runs to its end, its result dropped.
        s.diff_job->job->cancel();
        s.abandoned.push_back(std::move(s.diff_job->job));
    }
    DiffJob job;
    job.a = a;
    job.b = b;
    const std::string title = "compare " + ka->path.filename().string() + " with " + kb->path.filename().string();
    job.job = std::make_unique<Job<analysis::CheckpointDiff>>(title, [ka, kb](JobControl& c) {
        return analysis::diff_checkpoints(*ka->checkpoint, *kb->checkpoint, ka->report.quantizer, 0,
                                          [&c](std::uint64_t done, std::uint64_t total, const std::string& label) {
                                              c.progress(done, total, label);
                                          });
    });
    s.diff_job = std::move(job);
    log_info(s, title);
}

int poll_jobs(AppState& s) {
    int finished = 0;
    for (auto it = s.loads.begin(); it != s.loads.end();) {
        Job<Document>& job = *it->job;
        if (!job.finished()) {
            ++it;
            continue;
        }
        ++finished;
        switch (job.status()) {
            case JobStatus::Done: {
                Document d = std::move(*job.take());
                std::string line = "opened " + d.path.string();
                if (d.timeline)
                    line += ": " + std::to_string(d.timeline->points.size()) + " checkpoints, run " +
                            std::string(analysis::verdict_name(d.timeline->final_verdict));
                else if (!d.checkpoints.empty())
                    line += ": " + std::string(analysis::verdict_name(d.checkpoints.front()->report.verdict));
                for (const auto& skip : d.skipped) log_info(s, "skipped " + skip);
                add_document(s, std::move(d));
                log_info(s, line);
                break;
            }
            case JobStatus::Failed: log_error(s, job.error()); break;
            case JobStatus::Cancelled: log_info(s, "cancelled: " + job.title()); break;
            case JobStatus::Running: break;
        }
        it = s.loads.erase(it);
    }
    if (s.diff_job && s.diff_job->job->finished()) {
        ++finished;
        auto& job = *s.diff_job->job;
        if (job.status() == JobStatus::Done) {
            s.diff = std::move(*job.take());
            s.diff_a = s.diff_job->a;
            s.diff_b = s.diff_job->b;
            log_info(s, job.title() + ": " + std::to_string(s.diff->totals.tensors_compared) + " tensors compared");
        } else if (job.status() == JobStatus::Failed) {
            log_error(s, job.error());
        } else {
            log_info(s, "cancelled: " + job.title());
        }
        s.diff_job.reset();
    }
    s.abandoned.erase(std::remove_if(s.abandoned.begin(), s.abandoned.end(), [](const auto& j) { return j->finished(); }),
                      s.abandoned.end());
    return finished;
}

bool busy(const AppState& s) { return !s.loads.empty() || s.diff_job.has_value(); }

void cancel_all(AppState& s) {
    for (auto& l : s.loads) l.job->cancel();
    if (s.diff_job) {
        s.diff_job->job->cancel();
        log_info(s, "cancelled: " + s.diff_job->job->title());
        s.abandoned.push_back(std::move(s.diff_job->job));
        s.diff_job.reset();
    }
}

float overall_progress(const AppState& s, std::string* label) {
    float sum = 0;
    int n = 0;
    std::string first;
    auto add = [&](const JobBase& j) {
        sum += j.fraction();
        ++n;
        if (first.empty()) {
            std::string l = j.label();
            first = j.title() + (l.empty() ? "" : " - " + l);
        }
    };
    for (const auto& l : s.loads) add(*l.job);
    if (s.diff_job) add(*s.diff_job->job);
    if (label) *label = n > 1 ? first + " (+" + std::to_string(n - 1) + " more)" : first;
    return n ? sum / static_cast<float>(n) : 0.0f;
}

}  // namespace bitfsck::app
