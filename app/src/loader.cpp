#include "bitfsck/app/loader.hpp"

#include <algorithm>
#include <functional>
#include <cstdio>
#include <system_error>

#include "bitfsck/analysis/run.hpp"
#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "bitfsck/io/checkpoint_files.hpp"
#include "bitfsck/io/object_tree.hpp"

namespace bitfsck::app {

namespace fs = std::filesystem;

namespace {

std::shared_ptr<CheckpointData> checkpoint_data(const analysis::RunMember& m) {
    auto data = std::make_shared<CheckpointData>();
    data->path = m.input;
    data->checkpoint = m.checkpoint;
    data->tree = io::object_tree(*m.checkpoint);
    data->report = *m.report;
    return data;
}

[[maybe_unused]] std::string fmt_g(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", v);
    return buf;
}

}  // namespace

Document load_document(const fs::path& path, JobControl& control) {
    Document doc;
    doc.path = path;
    std::error_code ec;
    if (!fs::exists(path, ec)) throw io::FileError(path.string() + ": no such file or folder", path.string());
    // One way of scanning a run for every front (analysis::scan_run): the same members, the same
    // verdicts, an unreadable member reported and the rest scanned.
    analysis::RunScanOptions options;
    options.keep_checkpoints = true;
    options.scan.progress = control.callback();
    const std::vector<analysis::RunMember> members = analysis::scan_run({path.string()}, options);
    // A file, or a folder holding one (sharded) model, is one checkpoint; other folders are runs.
    if (!fs::is_directory(path, ec) || (members.size() == 1 && members.front().input == path)) {
        const analysis::RunMember& m = members.front();
        if (!m.report) throw Error(m.error, m.error_kind, m.input.string());
        doc.checkpoints.push_back(checkpoint_data(m));
        return doc;
    }
    doc.is_run = true;
    control.progress(1, 1, "building the timeline");
    doc.timeline = analysis::timeline_of(members);
    for (const auto& skipped : doc.timeline->skipped) doc.skipped.push_back(skipped.reason);
    // The checkpoints in the timeline's (step) order, so points[i] is checkpoints[i].
    for (const auto& p : doc.timeline->points) {
        auto it = std::find_if(members.begin(), members.end(), [&](const auto& m) { return m.report && m.report->file == p.file; });
        if (it == members.end())
            throw io::FormatError(path.string(), "the timeline names " + p.file + ", which is not among the scanned files");
        doc.checkpoints.push_back(checkpoint_data(*it));
    }
    return doc;
}

void start_open(AppState& s, const fs::path& path) {
    for (const auto& l : s.loads)
        if (l.path == path) return;
    add_recent(s.recent, path);
    LoadJob job;
    job.path = path;
    job.job = s.jobs.start<Document>(
        "open " + path.string(), [path](JobControl& c) { return load_document(path, c); },
        [&s](Job<Document>& j) {
            std::erase_if(s.loads, [&](const LoadJob& l) { return l.job.get() == &j; });
            switch (j.status()) {
                case JobStatus::Done: {
                    Document d = std::move(*j.take());
                    std::string line = "opened " + d.path.string();
                    if (d.timeline)
                        line += ": " + std::to_string(d.timeline->points.size()) + " checkpoints, run " +
                                std::string(analysis::verdict_name(d.timeline->final_verdict));
                    else if (!d.checkpoints.empty())
                        line += ": " + std::string(analysis::verdict_name(d.checkpoints.front()->report.verdict));
                    for (const auto& skip : d.skipped) log_info(s, "skipped " + skip);
                    const fs::path opened = d.path;
                    const int id = add_document(s, std::move(d));
                    log_info(s, line);
                    // A repaired output: shown next to its source in the compare view.
                    if (s.repair.open_pending && s.repair.open_pending->first == opened) {
                        if (find_checkpoint(s, s.repair.open_pending->second)) {
                            s.compare_a = s.repair.open_pending->second;
                            s.compare_b = CheckpointRef{id, 0};
                        }
                        s.repair.open_pending.reset();
                    }
                    break;
                }
                case JobStatus::Failed: log_error(s, j.error()); break;
                case JobStatus::Cancelled: log_info(s, "cancelled: " + j.title()); break;
                case JobStatus::Running: break;
            }
        });
    s.loads.push_back(std::move(job));
    log_info(s, "opening " + path.string());
}

namespace {

// The common ending of a job whose view keeps one handle: a failure or a cancellation is logged,
// and the view lets go of the handle if it is still this job's (a newer one may have replaced it).
template <class T, class Handle>
bool ended_ok(AppState& s, Job<T>& job, Handle& handle) {
    const bool mine = handle && handle->job.get() == &job;
    if (job.status() == JobStatus::Failed) log_error(s, job.error());
    else if (job.status() == JobStatus::Cancelled) log_info(s, "cancelled: " + job.title());
    return mine && job.status() == JobStatus::Done;
}

}  // namespace

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
    if (s.diff_job) s.diff_job->job->cancel();  // it stops at its next tensor; the registry keeps it until then
    DiffJob job;
    job.a = a;
    job.b = b;
    const std::string title = "compare " + ka->path.filename().string() + " with " + kb->path.filename().string();
    job.job = s.jobs.start<analysis::CheckpointDiff>(
        title, [ka, kb](JobControl& c) { return analysis::diff_checkpoints(*ka->checkpoint, *kb->checkpoint, ka->report.quantizer, 0, c.callback()); },
        [&s](Job<analysis::CheckpointDiff>& j) {
            const bool mine = s.diff_job && s.diff_job->job.get() == &j;
            if (ended_ok(s, j, s.diff_job)) {
                s.diff = std::move(*j.take());
                s.diff_a = s.diff_job->a;
                s.diff_b = s.diff_job->b;
                log_info(s, j.title() + ": " + std::to_string(s.diff->totals.tensors_compared) + " tensors compared");
            }
            if (mine) s.diff_job.reset();
        });
    s.diff_job = std::move(job);
    log_info(s, title);
}

bool start_induction(AppState& s, const CheckpointRef& ref, const InductionParams& params) {
#ifdef BITFSCK_APP_HAVE_MODEL
    const CheckpointData* c = find_checkpoint(s, ref);
    if (!c) {
        log_error(s, "induction: open a checkpoint first");
        return false;
    }
    auto keep = find_document(s, ref.document)->checkpoints[ref.checkpoint];
    // The old probe stops at its next step boundary; the registry keeps it until then.
    if (s.induction.job) s.induction.job->job->cancel();
    InductionJob job;
    job.checkpoint = ref;
    job.params = params;
    const std::string title = "induction probe of " + checkpoint_label(s, ref);
    job.job = s.jobs.start<model::InductionReport>(title, [keep, params](JobControl& c) {
        // The bar: a tenth for loading (config, tensors, quantization), the rest for the forward
        // passes. Cancelling stops at the next forward pass (the callback returns false).
        c.progress(0, 100, "loading the model on " + params.device);
        model::InductionOptions o = induction_options(params);
        model::Model m = model::Model::load(*keep->checkpoint, o.load);
        if (c.cancel_requested()) throw Cancelled();
        c.progress(10, 100, "forward pass on " + m.device());
        o.progress = c.callback(10, 90, 100, "forward passes");
        return model::run_induction(m, keep->path.string(), o);
    }, [&s](Job<model::InductionReport>& j) {
        const bool mine = s.induction.job && s.induction.job->job.get() == &j;
        if (ended_ok(s, j, s.induction.job)) {
            InductionResult r{s.induction.job->checkpoint, s.induction.job->params, std::move(*j.take())};
            std::string line = j.title() + ": " + std::to_string(r.report.specialists) + " of " +
                               std::to_string(r.report.layers * r.report.heads) + " heads with IPMR >= " + fmt_g(r.report.specialist_threshold);
            if (!r.report.top.empty()) {
                const auto& t = r.report.top.front();
                line += ", top " + head_label({t.layer, t.head}) + " (IPMR " + fmt_g(t.metrics.ipmr) + ")";
            }
            // Results of a document closed meanwhile are dropped.
            if (find_checkpoint(s, r.checkpoint)) add_induction_result(s, std::move(r));
            log_info(s, line);
        }
        if (mine) s.induction.job.reset();
    });
    s.induction.job = std::move(job);
    log_info(s, title + " (" + params_label(params) + ")");
    return true;
#else
    (void)ref;
    (void)params;
    log_error(s, "induction: this bitfsck-gui was built without model/ (configure with -DBITFSCK_BUILD_MODEL=ON)");
    return false;
#endif
}

namespace {

std::function<repair::TensorPreview(JobControl&)> preview_work(std::shared_ptr<const CheckpointData> keep, std::string tensor,
                                                               RepairParams params) {
    return [keep = std::move(keep), tensor = std::move(tensor), params = std::move(params)](JobControl& c) {
        c.progress(0, 1, "repairing " + tensor + " in memory");
        repair::RepairOptions o = repair_options(params, keep->report);
        o.progress = c.callback();
        return repair::preview_repair(*keep->checkpoint, keep->report, tensor, o);
    };
}

std::string preview_title(const AppState& s, const CheckpointRef& ref, const std::string& tensor, const RepairParams& params) {
    return "repair preview of " + tensor + " in " + checkpoint_label(s, ref) + " (" + repair_params_label(params) + ")";
}

}  // namespace

bool start_repair_preview(AppState& s, const CheckpointRef& ref, const std::string& tensor, const RepairParams& params) {
    if (!find_checkpoint(s, ref)) {
        log_error(s, "repair: open a checkpoint first");
        return false;
    }
    auto keep = find_document(s, ref.document)->checkpoints[ref.checkpoint];
    if (s.repair.preview_job) s.repair.preview_job->job->cancel();
    RepairPreviewJob job{ref, tensor, params, nullptr};
    job.job = s.jobs.start<repair::TensorPreview>(
        preview_title(s, ref, tensor, params), preview_work(keep, tensor, params), [&s](Job<repair::TensorPreview>& j) {
            auto& handle = s.repair.preview_job;
            const bool mine = handle && handle->job.get() == &j;
            if (mine && j.status() == JobStatus::Failed) s.repair.preview_error = j.error();
            if (ended_ok(s, j, handle) && find_checkpoint(s, handle->checkpoint))
                s.repair.preview = RepairPreview{handle->checkpoint, handle->tensor, handle->params, std::move(*j.take())};
            if (mine) handle.reset();
        });
    s.repair.preview_job = std::move(job);
    s.repair.preview_error.clear();
    return true;
}

bool run_repair_preview(AppState& s, const CheckpointRef& ref, const std::string& tensor, const RepairParams& params) {
    if (!find_checkpoint(s, ref)) {
        log_error(s, "repair: open a checkpoint first");
        return false;
    }
    auto keep = find_document(s, ref.document)->checkpoints[ref.checkpoint];
    JobControl control;
    try {
        s.repair.preview = RepairPreview{ref, tensor, params, preview_work(keep, tensor, params)(control)};
        s.repair.preview_error.clear();
        return true;
    } catch (const std::exception& e) {
        s.repair.preview_error = e.what();
        log_error(s, preview_title(s, ref, tensor, params) + ": " + e.what());
        return false;
    }
}

bool start_repair_run(AppState& s, const CheckpointRef& ref, const RepairParams& params, const fs::path& output,
                      const std::string& only_tensor) {
    const CheckpointData* c = find_checkpoint(s, ref);
    if (!c) {
        log_error(s, "repair: open a checkpoint first");
        return false;
    }
    if (s.repair.run_job) {
        log_error(s, "repair: one repair is already being written (" + s.repair.run_job->job->title() + ")");
        return false;
    }
    const fs::path input = c->path;
    repair::RepairOptions o = repair_options(params, c->report, only_tensor);
    RepairRunJob job{ref, input, output, params, nullptr};
    const std::string title = "repair " + input.filename().string() + " -> " + output.string() + " (" + repair_params_label(params) + ")";
    job.job = s.jobs.start<repair::RepairLog>(
        title,
        [input, output, o](JobControl& control) {
            repair::RepairOptions options = o;
            options.progress = control.callback();
            control.progress(0, 1, "repairing");
            return repair::repair_checkpoint(input, output, options);
        },
        [&s](Job<repair::RepairLog>& j) {
            auto& handle = s.repair.run_job;
            const bool mine = handle && handle->job.get() == &j;
            if (ended_ok(s, j, handle)) {
                RepairRun r{handle->source, handle->output, handle->params, std::move(*j.take())};
                log_info(s, "repaired " + r.log.input + " -> " + r.log.output + ": " + std::to_string(r.log.tensors.size()) +
                                " tensors changed, verdict " + verdict_change(r.log) + " (log " + repair::repair_log_path(r.output).string() + ")");
                s.repair.open_pending = std::make_pair(r.output, r.source);
                start_open(s, r.output);
                s.repair.last_run = std::move(r);
            }
            if (mine) handle.reset();
        });
    s.repair.run_job = std::move(job);
    log_info(s, title);
    return true;
}

int poll_jobs(AppState& s) { return s.jobs.poll(); }

bool busy(const AppState& s) { return s.jobs.busy(); }

// Every running job is asked to stop; each one's ending (at the library's next check) logs it and
// lets its view's handle go. A repair writes under a temporary name: nothing half-written stays.
void cancel_all(AppState& s) { s.jobs.cancel_all(); }

float overall_progress(const AppState& s, std::string* label) { return s.jobs.progress(label); }

}  // namespace bitfsck::app
