#include "bitfsck/repair/repair.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <map>

#include "bitfsck/analysis/layers.hpp"
#include "bitfsck/analysis/median.hpp"
#include "bitfsck/analysis/run.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/io/checkpoint_files.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/parallel.hpp"
#include "bitfsck/io/progress.hpp"
#include "bitfsck/io/pt_writer.hpp"
#include "bitfsck/io/safetensors_writer.hpp"
#include "bitfsck/io/shard_writer.hpp"
#include "bitfsck/io/tensor.hpp"
#include "bitfsck/repair/repair_json.hpp"

namespace bitfsck::repair {
namespace fs = std::filesystem;
using analysis::Role;

namespace {

std::vector<double> read_values(const io::Checkpoint& c, const io::TensorEntry& t) {
    std::vector<double> v(static_cast<std::size_t>(t.numel()));
    const io::TensorData data = c.data(t);
    data.read(0, t.numel(), v.data());
    data.release();
    return v;
}

std::vector<std::byte> encode(const std::vector<double>& v, io::DType dtype, const std::string& name) {
    return io::encode_float_values(std::span<const double>(v), dtype, name);
}

TensorFigures figures_of(const analysis::ScanReport& scan, const std::string& name) {
    for (const auto& t : scan.tensors)
        if (t.name == name) return {t.std, t.absmean, t.ternary.neg, t.ternary.zero, t.ternary.pos, t.dead.dead_rows};
    return {};
}

// Healthy reference figures for one tensor: the same name in the reference checkpoint, else the
// mean over the reference's tensors of the same role.
struct Reference {
    std::optional<std::vector<double>> values;  // same name, same size
    double absmean = 0;
    LatticeMasses masses;
    std::string source;
};

class ReferenceSet {
public:
    ReferenceSet(const fs::path& path, const RepairOptions& options)
        : checkpoint_(io::Checkpoint::open(path)) {
        analysis::ScanOptions so;
        so.analysis.quantizer = options.quantizer;
        so.thresholds = options.thresholds;
        so.threads = options.threads;
        scan_ = analysis::scan_checkpoint(checkpoint_, so);
    }
    const analysis::ScanReport& scan() const { return scan_; }

    std::optional<Reference> find(const io::TensorEntry& t, analysis::Quantizer q) const {
        const std::string file = checkpoint_.path().filename().string();
        if (const io::TensorEntry* r = checkpoint_.find_tensor(t.name);
            r && r->numel() == t.numel() && io::dtype_is_floating(r->dtype) && r->encoding == io::TensorEncoding::Plain) {
            Reference ref;
            ref.values = read_values(checkpoint_, *r);
            long double s = 0;
            for (double v : *ref.values) s += std::abs(v);
            ref.absmean = ref.values->empty() ? 0 : static_cast<double>(s / ref.values->size());
            ref.masses = ternary_masses(*ref.values, q);
            ref.source = "like " + file + " " + t.name;
            return ref;
        }
        const Role role = analysis::place_of(t.name).role;
        double absmean = 0, neg = 0, zero = 0, pos = 0;
        int n = 0;
        for (const auto& s : scan_.tensors) {
            if (analysis::place_of(s.name).role != role || s.shape.size() < 2) continue;
            absmean += s.absmean; neg += s.ternary.neg; zero += s.ternary.zero; pos += s.ternary.pos;
            ++n;
        }
        if (n == 0) return std::nullopt;
        Reference ref;
        ref.absmean = absmean / n;
        ref.masses = {neg / n, zero / n, pos / n};
        ref.source = "like " + file + " role " + std::string(analysis::role_name(role)) + " (mean of " + std::to_string(n) + ")";
        return ref;
    }

private:
    io::Checkpoint checkpoint_;
    analysis::ScanReport scan_;
};

// Median absmean of the input's tensors of `role` in layer-roles judged healthy.
std::optional<double> healthy_role_absmean(const analysis::ScanReport& scan, Role role) {
    std::vector<double> v;
    for (const auto& t : scan.tensors) {
        const auto place = analysis::place_of(t.name);
        if (place.role != role || t.shape.size() < 2) continue;
        for (const auto& l : scan.layers)
            if (l.layer == place.layer && l.role == role && l.verdict == analysis::Verdict::Healthy) { v.push_back(t.absmean); break; }
    }
    if (v.empty()) return std::nullopt;
    return analysis::median(v);
}

struct Work {
    const io::TensorEntry* entry = nullptr;
    TensorRepair result;
    std::vector<std::byte> bytes;
};

void apply_step(const io::Checkpoint& input, const analysis::ScanReport& scan, const ReferenceSet* reference,
                const RepairOptions& options, Work& work) {
    const io::TensorEntry& t = *work.entry;
    TensorRepair& r = work.result;
    std::vector<double> values = read_values(input, t);
    const std::vector<double> original = values;
    for (double v : values)
        if (!std::isfinite(v)) throw Error("holds NaN or Inf; repair does not guess values for them");
    const Role role = analysis::place_of(t.name).role;
    const std::string role_label(analysis::role_name(role));
    // Only align and inflate take targets from the reference; svd would read it for nothing.
    const bool uses_reference = options.step.kind == StepKind::Align || options.step.kind == StepKind::Inflate;
    const std::optional<Reference> ref = reference && uses_reference ? reference->find(t, options.quantizer) : std::nullopt;
    long double abs_sum = 0;
    for (double v : values) abs_sum += std::abs(v);
    const double own_absmean = values.empty() ? 0 : static_cast<double>(abs_sum / values.size());

    switch (options.step.kind) {
        case StepKind::Svd: {
            Matrix m(t.shape[0], t.numel() / std::max<std::int64_t>(1, t.shape[0]));
            m.values = values;
            r.svd = svd_denoise(m, options.step.svd);
            values = std::move(m.values);
            break;
        }
        case StepKind::Align: {
            const AlignParams& p = options.step.align;
            LatticeMasses masses = healthy_gaussian_masses();
            if (p.masses) masses = *p.masses;
            else if (ref) masses = ref->masses;
            double guess = 0;
            if (p.scale) {
                r.scale_source = "explicit";
            } else if (ref) {
                guess = ref->absmean / std::max(1e-12, 1 - masses.zero);
                r.scale_source = ref->source;
            } else if (auto h = healthy_role_absmean(scan, role)) {
                guess = *h / std::max(1e-12, 1 - masses.zero);
                r.scale_source = "healthy " + role_label + " layers of the input (median absmean)";
            } else {
                guess = own_absmean / std::max(1e-12, 1 - masses.zero);
                r.scale_source = "own absmean (no healthy " + role_label + " layer; pass --like or --scale to restore the magnitude)";
            }
            r.align = align_to_lattice(values, masses, p, guess, options.quantizer);
            break;
        }
        case StepKind::Inflate: {
            const InflateParams& p = options.step.inflate;
            double target = 0;
            if (p.target) {
                target = *p.target;
                r.scale_source = "explicit";
            } else if (ref) {
                target = ref->absmean;
                r.scale_source = ref->source;
            } else if (auto h = healthy_role_absmean(scan, role)) {
                target = *h;
                r.scale_source = "healthy " + role_label + " layers of the input (median absmean)";
            } else {
                target = analysis::effective_scale(options.quantizer, own_absmean);
                r.scale_source = "own effective scale (no healthy " + role_label + " layer; pass --like or --target)";
            }
            std::span<const double> signs;
            if (ref && ref->values) signs = *ref->values;
            r.inflate = inflate_dead_zone(values, p, target, signs, options.quantizer);
            break;
        }
        case StepKind::Pick: throw Error("pick is not a tensor step");
    }
    r.relative_change = relative_frobenius_change(original, values);
    work.bytes = encode(values, t.dtype, t.name);
    const std::vector<std::byte> before = encode(original, t.dtype, t.name);
    const std::size_t es = io::dtype_size(t.dtype);
    for (std::size_t i = 0; i < original.size(); ++i)
        r.changed_elements += std::memcmp(before.data() + i * es, work.bytes.data() + i * es, es) != 0;
}

void write_output(const io::Checkpoint& input, const fs::path& output, std::vector<Work>& work,
                  const RepairOptions& options, const std::vector<fs::path>& inputs, RepairLog& log) {
    io::ensure_not_an_input(output, inputs);
    std::map<std::string, io::ReplacementTensor> replacements;
    for (Work& w : work) {
        io::ReplacementTensor rt;
        rt.dtype = w.entry->dtype;
        rt.shape = w.entry->shape;
        rt.view = w.bytes;
        replacements.emplace(w.entry->name, std::move(rt));
    }
    if (input.format() == io::Format::TorchZip || input.format() == io::Format::TorchLegacy || input.format() == io::Format::Safetensors) {
        io::RewriteOptions ro;
        ro.drop_optimizer_state = options.drop_optimizer_state;
        log.dropped_keys = io::rewrite_checkpoint(input, output, replacements, ro, inputs).dropped_keys;
        return;
    }
    throw Error(input.path().string() + ": repair writes PyTorch .pt and safetensors checkpoints; convert this " +
                std::string(io::format_name(input.format())) + " file first (bitfsck convert)");
}

// The output keeps the input's format; a name that promises another one is refused up front
// rather than producing a .pt full of safetensors bytes.
void check_output_name(const io::Checkpoint& input, const fs::path& output) {
    if (input.sharded()) return io::ensure_folder_output(output);  // sharded in, a folder of shards out
    const std::string ext = output.extension().string();
    const bool torch = input.format() == io::Format::TorchZip || input.format() == io::Format::TorchLegacy;
    if (torch && ext == ".safetensors")
        throw Error(output.string() + ": repair writes a .pt checkpoint for a .pt input; name the output .pt (bitfsck convert changes formats)");
    if (input.format() == io::Format::Safetensors && (ext == ".pt" || ext == ".pth" || ext == ".ckpt" || ext == ".bin"))
        throw Error(output.string() + ": repair writes safetensors for a safetensors input; name the output .safetensors");
}

analysis::ScanOptions scan_options(const RepairOptions& options) {
    analysis::ScanOptions so;
    so.analysis.quantizer = options.quantizer;
    so.thresholds = options.thresholds;
    so.threads = options.threads;
    so.progress = options.progress;  // the scans before and after report (and stop) like the steps
    return so;
}

void fill_layers(RepairLog& log, const analysis::ScanReport& before, const analysis::ScanReport& after) {
    for (const auto& b : before.layers) {
        LayerChange c;
        c.layer = b.layer;
        c.role = b.role;
        c.before = b;
        for (const auto& a : after.layers)
            if (a.layer == b.layer && a.role == b.role) c.after = a;
        log.layers.push_back(std::move(c));
    }
}

}  // namespace

std::string_view step_name(StepKind k) {
    switch (k) {
        case StepKind::Svd: return "svd";
        case StepKind::Align: return "align";
        case StepKind::Inflate: return "inflate";
        case StepKind::Pick: return "pick";
    }
    return "?";
}

std::optional<StepKind> step_from_name(std::string_view name) {
    for (StepKind k : {StepKind::Svd, StepKind::Align, StepKind::Inflate, StepKind::Pick})
        if (step_name(k) == name) return k;
    return std::nullopt;
}

fs::path repair_log_path(const fs::path& output) {
    const fs::path named = output.filename().empty() ? output.parent_path() : output;  // "out/": beside the folder
    return fs::path(named.string() + ".repair.json");
}

RepairLog repair_checkpoint(const fs::path& input_path, const fs::path& output, const RepairOptions& options) {
    const auto t0 = std::chrono::steady_clock::now();
    if (options.step.kind == StepKind::Pick) throw Error("use pick_checkpoint for pick");
    std::vector<fs::path> inputs = {input_path};
    if (options.like) inputs.push_back(*options.like);
    io::ensure_not_an_input(output, inputs);
    io::ensure_not_an_input(repair_log_path(output), inputs);

    const io::Checkpoint input = io::Checkpoint::open(input_path);
    check_output_name(input, output);
    const analysis::ScanReport before = analysis::scan_checkpoint(input, scan_options(options));
    std::optional<ReferenceSet> reference;
    if (options.like) reference.emplace(*options.like, options);

    RepairLog log;
    log.input = fs::absolute(input_path).string();
    log.input_hash = before.content_hash;
    log.output = fs::absolute(output).string();
    if (options.like) {
        log.like = fs::absolute(*options.like).string();
        log.like_hash = reference->scan().content_hash;
    }
    log.step = options.step;
    log.selection = options.selection;
    log.quantizer = options.quantizer;
    log.thresholds = options.thresholds;
    log.drop_optimizer_state = options.drop_optimizer_state;
    log.verdict_before = before.verdict;

    const std::vector<SelectedTensor> selected = select_tensors(input, before, options.selection);
    if (selected.empty())
        throw Error(input_path.string() + ": no tensor to repair: " +
                    (options.selection.is_default() ? std::string("the scan found no degraded or collapsed layer (select tensors with --layers, --roles or --match)")
                                                    : std::string("the selection matches no floating-point matrix")));
    std::vector<Work> work(selected.size());
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < selected.size(); ++i) {
        work[i].entry = input.find_tensor(selected[i].name);
        work[i].result.name = selected[i].name;
        work[i].result.reason = selected[i].reason;
        work[i].result.shape = work[i].entry->shape;
        work[i].result.dtype = std::string(io::dtype_name(work[i].entry->dtype));
        work[i].result.before = figures_of(before, selected[i].name);
        total += work[i].entry->nbytes();
    }

    // Tensors are independent: workers take them in turn; results land in their own slots, so the
    // output does not depend on the number of threads.
    ProgressTracker progress(options.progress, ProgressUnit::Bytes, total);
    parallel_for(work.size(), options.threads, [&](std::size_t i) {
        progress.check();
        try {
            apply_step(input, before, reference ? &*reference : nullptr, options, work[i]);
        } catch (const Cancelled&) {
            throw;
        } catch (const Error& e) {
            throw Error(input_path.string() + ": " + work[i].entry->name + ": " + e.what(), e.kind(), input_path.string(), work[i].entry->name);
        } catch (const std::exception& e) {
            throw Error(input_path.string() + ": " + work[i].entry->name + ": " + e.what(), ErrorKind::Other, input_path.string(),
                        work[i].entry->name);
        }
        progress.advance(work[i].entry->nbytes(), std::string(step_name(options.step.kind)) + " " + work[i].entry->name);
    });
    progress.check(true);
    write_output(input, output, work, options, inputs, log);

    // Judge the output by what is in the file, not by the steps' own bookkeeping.
    const io::Checkpoint written = io::Checkpoint::open(output);
    const analysis::ScanReport after = analysis::scan_checkpoint(written, scan_options(options));
    log.output_hash = after.content_hash;
    log.verdict_after = after.verdict;
    log.findings_after = after.findings;
    for (Work& w : work) {
        w.result.after = figures_of(after, w.result.name);
        log.tensors.push_back(std::move(w.result));
    }
    fill_layers(log, before, after);
    log.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    write_repair_log(log, repair_log_path(output));
    return log;
}

TensorPreview preview_repair(const io::Checkpoint& input, const analysis::ScanReport& scan, const std::string& tensor,
                             const RepairOptions& options) {
    const io::TensorEntry* entry = input.find_tensor(tensor);
    if (!entry || !io::dtype_is_floating(entry->dtype) || entry->encoding != io::TensorEncoding::Plain || entry->shape.size() < 2)
        throw Error(input.path().string() + ": " + tensor + ": not a plain floating-point matrix of this checkpoint");
    std::optional<ReferenceSet> reference;
    if (options.like) reference.emplace(*options.like, options);
    Work work;
    work.entry = entry;
    work.result.name = tensor;
    work.result.shape = entry->shape;
    work.result.dtype = std::string(io::dtype_name(entry->dtype));
    work.result.reason = "preview";
    work.result.before = figures_of(scan, tensor);
    try {
        apply_step(input, scan, reference ? &*reference : nullptr, options, work);
    } catch (const std::exception& e) {
        throw Error(input.path().string() + ": " + tensor + ": " + e.what());
    }
    analysis::AnalysisOptions ao;
    ao.quantizer = options.quantizer;
    TensorPreview preview;
    preview.before_stats = analysis::analyze_tensor(tensor, input.data(*entry), ao);
    preview.after_stats = analysis::analyze_tensor(tensor, io::TensorData(work.bytes, entry->dtype, entry->shape), ao);
    const auto& a = preview.after_stats;
    work.result.after = {a.std, a.absmean, a.ternary.neg, a.ternary.zero, a.ternary.pos, a.dead.dead_rows};
    preview.repair = std::move(work.result);
    return preview;
}

namespace {

// A checkpoint copied whole to a new name, atomically: a file, or a sharded model's folder.
void copy_checkpoint(const fs::path& from, const fs::path& to) {
    std::error_code ec;
    if (fs::is_directory(from, ec)) {
        io::replace_folder_atomically(to, [&](const fs::path& tmp) {
            fs::copy(from, tmp, fs::copy_options::recursive | fs::copy_options::overwrite_existing, ec);
            if (ec) throw io::OutputError(to.string(), "cannot copy " + from.string() + ": " + ec.message());
        });
        return;
    }
    io::replace_atomically(to, [&](const fs::path& tmp) {
        fs::copy_file(from, tmp, fs::copy_options::overwrite_existing, ec);
        if (ec) throw io::OutputError(to.string(), "cannot copy " + from.string() + ": " + ec.message());
    });
}

}  // namespace

RepairLog pick_checkpoint(const std::vector<std::string>& run_inputs, const fs::path& output, const PickOptions& options) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<fs::path> files = io::expand_checkpoint_inputs(run_inputs);
    io::ensure_not_an_input(output, files);
    io::ensure_not_an_input(repair_log_path(output), files);
    analysis::RunScanOptions ro;
    ro.scan = options.scan;
    const analysis::Timeline timeline = analysis::timeline_of(analysis::scan_run(run_inputs, ro));

    RepairLog log;
    log.step.kind = StepKind::Pick;
    log.quantizer = options.scan.analysis.quantizer;
    log.thresholds = options.scan.thresholds;
    if (run_inputs.size() == 1) log.run = fs::absolute(run_inputs.front()).string();
    std::string chosen;
    std::int64_t step = 0;
    if (timeline.last_healthy_step) {
        chosen = timeline.last_healthy_file;
        step = *timeline.last_healthy_step;
        log.reasons.push_back("step " + std::to_string(step) + " is the last healthy checkpoint before the run stopped being healthy");
    } else if (!timeline.onset_step) {
        chosen = timeline.points.back().file;
        step = timeline.points.back().step;
        log.reasons.push_back("every checkpoint is healthy; step " + std::to_string(step) + " is the latest");
    } else if (options.allow_degraded && timeline.last_before_collapse_step) {
        chosen = timeline.last_before_collapse_file;
        step = *timeline.last_before_collapse_step;
        log.reasons.push_back("no healthy checkpoint; step " + std::to_string(step) +
                              " is the last one before the collapse (degraded, taken because of --allow-degraded)");
    } else {
        throw Error("pick: no healthy checkpoint in the run (the first one, step " + std::to_string(timeline.points.front().step) +
                    ", is already " + std::string(analysis::verdict_name(timeline.points.front().verdict)) +
                    "); --allow-degraded takes the last one before the collapse");
    }
    if (timeline.onset_step)
        log.reasons.push_back("the run stopped being healthy at step " + std::to_string(*timeline.onset_step) + " (" +
                              fs::path(timeline.onset_file).filename().string() + ")" +
                              (timeline.collapsed_step ? " and collapsed from step " + std::to_string(*timeline.collapsed_step) : std::string()));
    for (const auto& f : timeline.reasons) log.reasons.push_back(std::string(analysis::verdict_name(f.severity)) + " at the onset: " + f.message);
    for (const auto& skipped : timeline.skipped) log.skipped.push_back(skipped.reason);

    copy_checkpoint(chosen, output);
    for (const auto& p : timeline.points) {
        if (p.step != step) continue;
        log.input_hash = p.content_hash;
        log.verdict_before = log.verdict_after = p.verdict;
        for (const auto& l : p.layers) log.layers.push_back({l.layer, l.role, l, l});
    }
    log.input = fs::absolute(chosen).string();
    log.output = fs::absolute(output).string();
    log.output_hash = analysis::content_hash_of(output);
    if (log.output_hash != log.input_hash) throw Error("pick: the copy of " + chosen + " differs from it (" + output.string() + ")");
    log.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    write_repair_log(log, repair_log_path(output));
    return log;
}

ReplayResult replay_repair(const fs::path& log_file, const fs::path& output, const ProgressCallback& progress) {
    nlohmann::json j;
    try {
        const io::MappedFile f(log_file);
        const auto bytes = f.bytes(0, f.size(), "repair log");
        j = nlohmann::json::parse(reinterpret_cast<const char*>(bytes.data()), reinterpret_cast<const char*>(bytes.data()) + bytes.size());
    } catch (const nlohmann::json::exception& e) {
        throw Error(log_file.string() + ": not a repair log: " + e.what(), ErrorKind::Unreadable, log_file.string());
    }
    auto need = [&](const char* key) -> const nlohmann::json& {
        if (!j.contains(key)) throw Error(log_file.string() + ": not a repair log: no '" + key + "'", ErrorKind::Unreadable, log_file.string());
        return j.at(key);
    };
    try {
        if (need("schema_version").get<int>() > kRepairSchemaVersion)
            throw Error(log_file.string() + ": repair log schema " + std::to_string(j["schema_version"].get<int>()) + " is newer than this bitfsck reads");
        const fs::path input = need("input").get<std::string>();
        const std::string input_hash = need("input_hash").get<std::string>();
        ReplayResult result;
        result.expected_hash = need("output_hash").get<std::string>();
        const StepSpec step = step_from_json(need("step"));
        {
            const std::string actual = analysis::content_hash_of(input);
            if (actual != input_hash)
                throw Error(input.string() + ": changed since the repair was logged (" + actual + ", the log says " + input_hash + ")",
                            ErrorKind::Unreadable, input.string());
        }
        if (step.kind == StepKind::Pick) {
            io::ensure_not_an_input(output, {input});
            copy_checkpoint(input, output);
            result.log.step = step;
            result.log.input = input.string();
            result.log.input_hash = input_hash;
            result.log.output = fs::absolute(output).string();
            result.log.output_hash = analysis::content_hash_of(output);
            write_repair_log(result.log, repair_log_path(output));
        } else {
            RepairOptions options;
            options.step = step;
            options.selection = selection_from_json(need("selection"));
            const auto q = analysis::quantizer_from_name(need("quantizer").get<std::string>());
            if (!q) throw Error(log_file.string() + ": unknown quantizer in the log");
            options.quantizer = *q;
            options.thresholds = analysis::thresholds_from_json(need("thresholds"));
            options.drop_optimizer_state = need("drop_optimizer_state").get<bool>();
            options.progress = progress;
            if (j.contains("like") && !j["like"].is_null()) {
                options.like = j["like"].get<std::string>();
                if (analysis::content_hash_of(*options.like) != j.at("like_hash").get<std::string>())
                    throw Error(options.like->string() + ": the reference changed since the repair was logged", ErrorKind::Unreadable,
                                options.like->string());
            }
            result.log = repair_checkpoint(input, output, options);
        }
        result.identical = result.log.output_hash == result.expected_hash;
        return result;
    } catch (const nlohmann::json::exception& e) {
        throw Error(log_file.string() + ": bad repair log: " + e.what(), ErrorKind::Unreadable, log_file.string());
    }
}

}  // namespace bitfsck::repair
