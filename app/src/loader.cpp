#include "bitfsck/app/loader.hpp"

#include <algorithm>
#include <functional>
#include <cstdio>
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

[[maybe_unused]] std::string fmt_g(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", v);
    return buf;
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

bool start_induction(AppState& s, const CheckpointRef& ref, const InductionParams& params) {
#ifdef BITFSCK_APP_HAVE_MODEL
    const CheckpointData* c = find_checkpoint(s, ref);
    if (!c) {
        log_error(s, "induction: open a checkpoint first");
        return false;
    }
    auto keep = find_document(s, ref.document)->checkpoints[ref.checkpoint];
    if (s.induction.job) {
        // The forward pass cannot stop midway: the old job runs to its end, its result dropped.
        s.induction.job->job->cancel();
        s.abandoned.push_back(std::move(s.induction.job->job));
    }
    InductionJob job;
    job.checkpoint = ref;
    job.params = params;
    const std::string title = "induction probe of " + checkpoint_label(s, ref);
    job.job = std::make_unique<Job<model::InductionReport>>(title, [keep, params](JobControl& c) {
        // The bar: a tenth for loading (config, tensors, quantization), the rest for the forward
        // passes. Cancelling stops at the next step boundary (the library polls no flag itself).
        c.progress(0, 100, "loading the model on " + params.device);
        model::InductionOptions o = induction_options(params);
        model::Model m = model::Model::load(*keep->checkpoint, o.load);
        if (c.cancel_requested()) throw analysis::Cancelled();
        c.progress(10, 100, "forward pass on " + m.device());
        o.progress = [&c](std::int64_t done, std::int64_t total) {
            c.progress(10 + static_cast<std::uint64_t>(total > 0 ? 90.0 * double(done) / double(total) : 0.0), 100, "forward passes");
            if (c.cancel_requested()) throw analysis::Cancelled();
        };
        return model::run_induction(m, keep->path.string(), o);
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
        o.cancel = c.cancel_flag();
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
    if (s.repair.preview_job) {
        s.repair.preview_job->job->cancel();
        s.abandoned.push_back(std::move(s.repair.preview_job->job));
    }
    RepairPreviewJob job{ref, tensor, params, nullptr};
    job.job = std::make_unique<Job<repair::TensorPreview>>(preview_title(s, ref, tensor, params), preview_work(keep, tensor, params));
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
    job.job = std::make_unique<Job<repair::RepairLog>>(title, [input, output, o](JobControl& control) {
        repair::RepairOptions options = o;
        options.cancel = control.cancel_flag();
        options.progress = [&control](std::uint64_t done, std::uint64_t total, const std::string& label) {
            control.progress(done, total, label);
        };
        control.progress(0, 1, "repairing");
        return repair::repair_checkpoint(input, output, options);
    });
    s.repair.run_job = std::move(job);
    log_info(s, title);
    return true;
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
#ifdef BITFSCK_APP_HAVE_MODEL
    if (s.induction.job && s.induction.job->job->finished()) {
        ++finished;
        auto& job = *s.induction.job->job;
        if (job.status() == JobStatus::Done) {
            InductionResult r{s.induction.job->checkpoint, s.induction.job->params, std::move(*job.take())};
            std::string line = job.title() + ": " + std::to_string(r.report.specialists) + " of " +
                               std::to_string(r.report.layers * r.report.heads) + " heads with IPMR >= " +
                               fmt_g(r.report.specialist_threshold);
            if (!r.report.top.empty()) {
                const auto& t = r.report.top.front();
                line += ", top " + head_label({t.layer, t.head}) + " (IPMR " + fmt_g(t.metrics.ipmr) + ")";
            }
            // Results of a document closed meanwhile are dropped.
            if (find_checkpoint(s, r.checkpoint)) add_induction_result(s, std::move(r));
            log_info(s, line);
        } else if (job.status() == JobStatus::Failed) {
            log_error(s, job.error());
        } else {
            log_info(s, "cancelled: " + job.title());
        }
        s.induction.job.reset();
    }
#endif
    if (s.repair.preview_job && s.repair.preview_job->job->finished()) {
        ++finished;
        auto& job = *s.repair.preview_job->job;
        if (job.status() == JobStatus::Done) {
            const RepairPreviewJob& pj = *s.repair.preview_job;
            if (find_checkpoint(s, pj.checkpoint)) s.repair.preview = RepairPreview{pj.checkpoint, pj.tensor, pj.params, std::move(*job.take())};
        } else if (job.status() == JobStatus::Failed) {
            s.repair.preview_error = job.error();
            log_error(s, job.title() + ": " + job.error());
        }
        s.repair.preview_job.reset();
    }
    if (s.repair.run_job && s.repair.run_job->job->finished()) {
        ++finished;
        auto& job = *s.repair.run_job->job;
        if (job.status() == JobStatus::Done) {
            RepairRun r{s.repair.run_job->source, s.repair.run_job->output, s.repair.run_job->params, std::move(*job.take())};
            log_info(s, "repaired " + r.log.input + " -> " + r.log.output + ": " + std::to_string(r.log.tensors.size()) +
                            " tensors changed, verdict " + verdict_change(r.log) + " (log " +
                            repair::repair_log_path(r.output).string() + ")");
            s.repair.open_pending = std::make_pair(r.output, r.source);
            start_open(s, r.output);
            s.repair.last_run = std::move(r);
        } else if (job.status() == JobStatus::Failed) {
            log_error(s, job.error());
        } else {
            log_info(s, "cancelled: " + job.title());
        }
        s.repair.run_job.reset();
    }
    s.abandoned.erase(std::remove_if(s.abandoned.begin(), s.abandoned.end(), [](const auto& j) { return j->finished(); }),
                      s.abandoned.end());
    return finished;
}

bool busy(const AppState& s) {
#ifdef BITFSCK_APP_HAVE_MODEL
    if (s.induction.job) return true;
#endif
    return !s.loads.empty() || s.diff_job.has_value() || s.repair.preview_job.has_value() || s.repair.run_job.has_value() ||
           s.resurrect.plan_job != nullptr || s.resurrect.run_job != nullptr;
}

void cancel_all(AppState& s) {
    for (auto& l : s.loads) l.job->cancel();
    if (s.repair.preview_job) {
        s.repair.preview_job->job->cancel();
        s.abandoned.push_back(std::move(s.repair.preview_job->job));
        s.repair.preview_job.reset();
    }
    if (s.repair.run_job) {
        // repair_checkpoint polls the flag and writes under a temporary name: nothing half-written stays.
        s.repair.run_job->job->cancel();
        log_info(s, "cancelled: " + s.repair.run_job->job->title());
        s.abandoned.push_back(std::move(s.repair.run_job->job));
        s.repair.run_job.reset();
    }
    if (s.diff_job) {
        s.diff_job->job->cancel();
        log_info(s, "cancelled: " + s.diff_job->job->title());
        s.abandoned.push_back(std::move(s.diff_job->job));
        s.diff_job.reset();
    }
#ifdef BITFSCK_APP_HAVE_MODEL
    if (s.induction.job) {
        s.induction.job->job->cancel();
        log_info(s, "cancelled: " + s.induction.job->job->title());
        s.abandoned.push_back(std::move(s.induction.job->job));
        s.induction.job.reset();
    }
#endif
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
    if (s.repair.preview_job) add(*s.repair.preview_job->job);
    if (s.repair.run_job) add(*s.repair.run_job->job);
#ifdef BITFSCK_APP_HAVE_MODEL
    if (s.induction.job) add(*s.induction.job->job);
#endif
    if (label) *label = n > 1 ? first + " (+" + std::to_string(n - 1) + " more)" : first;
    return n ? sum / static_cast<float>(n) : 0.0f;
}

}  // namespace bitfsck::app
