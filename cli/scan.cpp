// bitfsck scan FILE...: per-layer health, collapse verdicts with reasons, JSON sidecars, HDF5.
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "bitfsck/analysis/h5_report.hpp"
#include "bitfsck/analysis/report_json.hpp"
#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/io/checkpoint_files.hpp"
#include "scan_options.hpp"
#include "subcommands.hpp"
#include "table.hpp"
#include "terminal.hpp"

namespace bitfsck::cli {
namespace {

namespace fs = std::filesystem;

struct ScanCommandFlags {
    std::vector<std::string> inputs;
    bool json = false;
    bool sidecar = false;
    std::string out_dir;
    std::string h5;
    std::vector<std::string> trusted;
    bool show_tensors = false;
};

std::string fmt(const char* f, double v) {
    char buf[48];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

std::string coloured_verdict(analysis::Verdict v) {
    std::string name(analysis::verdict_name(v));
    switch (v) {
        case analysis::Verdict::Collapsed: return red(name);
        case analysis::Verdict::Degraded: return yellow(name);
        default: return green(name);
    }
}

void print_report(const analysis::ScanReport& r, bool show_tensors) {
    std::cout << bold(r.file) << "  (" << r.format << ", " << human_bytes(r.file_size);
    if (r.step) std::cout << ", step " << *r.step;
    std::cout << ", quantizer " << analysis::quantizer_name(r.quantizer) << ")\n";
    for (const auto& s : r.security)
        std::cout << "  " << (s.severity == "critical" ? red("SECURITY " + s.severity) : yellow("SECURITY " + s.severity)) << "  "
                  << s.reason << "\n";
    Table layers({"layer", "role", "std", "absmean", "zeros %", "-1/0/+1 %", "dead rows", "verdict"});
    for (const auto& l : r.layers) {
        layers.add({l.layer ? std::to_string(*l.layer) : "-", std::string(analysis::role_name(l.role)), fmt("%.3g", l.std),
                    fmt("%.3g", l.absmean), fmt("%.1f", 100 * l.zero_frac),
                    fmt("%.1f", 100 * l.neg) + "/" + fmt("%.1f", 100 * l.zero) + "/" + fmt("%.1f", 100 * l.pos),
                    std::to_string(l.dead_rows) + "/" + std::to_string(l.rows), coloured_verdict(l.verdict)});
    }
    if (layers.rows()) std::cout << layers.render();
    if (show_tensors) {
        Table tensors({"tensor", "dtype", "std", "zeros %", "-1/0/+1 %", "stored ternary", "non-finite"});
        for (const auto& t : r.tensors)
            tensors.add({t.name, t.dtype, fmt("%.3g", t.std), fmt("%.1f", 100 * t.zero_frac),
                         fmt("%.1f", 100 * t.ternary.neg) + "/" + fmt("%.1f", 100 * t.ternary.zero) + "/" + fmt("%.1f", 100 * t.ternary.pos),
                         t.lattice.is_ternary ? (t.lattice.per_channel ? "per channel" : "yes") : "no",
                         std::to_string(t.nan_count + t.inf_count)});
        std::cout << tensors.render();
    }
    for (const auto& f : r.findings)
        std::cout << "  " << coloured_verdict(f.severity) << ": " << f.message << "\n";
    std::cout << "verdict: " << coloured_verdict(r.verdict) << "  (" << r.tensors.size() << " tensors, " << r.layers.size()
              << " layer groups)\n";
}

fs::path sidecar_path(const fs::path& input, const std::string& out_dir) {
    fs::path name = input.filename();
    name += ".health.json";
    return out_dir.empty() ? input.parent_path() / name : fs::path(out_dir) / name;
}

int exit_code_for(const analysis::ScanReport& r) {
    int code = r.verdict == analysis::Verdict::Collapsed ? kCollapsed : r.verdict == analysis::Verdict::Degraded ? kDegraded : kOk;
    if (!r.security.empty()) set_exit_code(kSecurity);
    return code;
}

void run_scan(const ScanCommandFlags& flags, const ScanFlags& scan_flags) {
    std::vector<fs::path> files = io::expand_checkpoint_inputs(flags.inputs);
    if (files.empty()) throw CLI::ValidationError("scan", "no checkpoint files found in the given folders");
    analysis::ScanOptions base = make_scan_options(scan_flags);
    unsigned threads = base.threads ? base.threads : std::max(1u, std::thread::hardware_concurrency());
    if (!flags.out_dir.empty()) fs::create_directories(flags.out_dir);

    // One file: every core on its tensors. Many files: one core per file, files in parallel.
    const bool many = files.size() > 1;
    unsigned workers = many ? std::min<unsigned>(threads, static_cast<unsigned>(files.size())) : 1;
    std::vector<std::optional<analysis::ScanReport>> reports(files.size());
    std::vector<std::string> errors(files.size());
    std::vector<std::vector<std::string>> warnings(files.size());  // printed with the report, not from the workers
    ProgressLine progress("scan");
    std::atomic<std::size_t> next{0};
    std::mutex progress_mutex;
    std::uint64_t total_bytes = 0;
    for (const auto& f : files) {
        std::error_code ec;
        auto s = fs::file_size(f, ec);
        if (!ec) total_bytes += s;
    }
    std::atomic<std::uint64_t> finished_bytes{0};
    auto worker = [&] {
        for (std::size_t i = next++; i < files.size(); i = next++) {
            try {
                io::OpenOptions open;
                open.pickle.trusted_globals.insert(flags.trusted.begin(), flags.trusted.end());
                io::Checkpoint c = io::Checkpoint::open(files[i], open);
                analysis::ScanOptions options = base;
                options.threads = many ? 1 : threads;
                std::uint64_t before = finished_bytes.load();
                options.progress = [&, before](std::uint64_t done, std::uint64_t, const std::string& label) {
                    if (!many) progress.update(before + done, total_bytes, label);
                };
                reports[i] = analysis::scan_checkpoint(c, options);
                warnings[i] = c.warnings();
            } catch (const Error& e) {
                errors[i] = e.what();
            }
            std::error_code ec;
            auto s = fs::file_size(files[i], ec);
            finished_bytes += ec ? 0 : s;
            if (many) progress.update(finished_bytes.load(), total_bytes, files[i].filename().string());
        }
    };
    std::vector<std::thread> pool;
    for (unsigned w = 1; w < workers; ++w) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
    progress.finish();

    nlohmann::ordered_json all = nlohmann::ordered_json::array();
    std::optional<analysis::H5Report> h5;
    if (!flags.h5.empty()) {
        std::vector<fs::path> inputs(files.begin(), files.end());
        io::ensure_not_an_input(flags.h5, inputs);
        h5.emplace(flags.h5);
    }
    for (std::size_t i = 0; i < files.size(); ++i) {
        if (!reports[i]) {
            print_error(errors[i]);
            set_exit_code(kUnreadable);
            continue;
        }
        const auto& r = *reports[i];
        for (const auto& w : warnings[i]) print_warning(r.file + ": " + w);
        set_exit_code(exit_code_for(r));
        auto j = analysis::to_json(r);
        if (flags.sidecar) {
            fs::path out = sidecar_path(files[i], flags.out_dir);
            io::ensure_not_an_input(out, {files[i]});
            io::write_file_atomically(out, analysis::dump_json(j) + "\n");
        }
        if (h5) h5->add_scan(r);
        if (flags.json) all.push_back(std::move(j));
        else {
            if (i) std::cout << "\n";
            print_report(r, flags.show_tensors);
        }
    }
    if (h5) h5->close();
    if (flags.json) std::cout << analysis::dump_json(all) << "\n";
}

}  // namespace

void add_scan_subcommand(CLI::App& app) {
    auto flags = std::make_shared<ScanCommandFlags>();
    auto scan_flags = std::make_shared<ScanFlags>();
    auto* sub = app.add_subcommand("scan", "Per-layer health of checkpoints: std, ternary zeros, dead rows, collapse verdicts");
    sub->add_option("inputs", flags->inputs, "Checkpoint files or folders of checkpoints")->required()->check(CLI::ExistingPath);
    sub->add_flag("--json", flags->json, "Print the reports as a JSON array on stdout (schema: docs/scan.schema.json)");
    sub->add_flag("--sidecar", flags->sidecar, "Write <checkpoint>.health.json next to each input (or into --out-dir)");
    sub->add_option("--out-dir", flags->out_dir, "Folder for the sidecar files");
    sub->add_option("--h5", flags->h5, "Write an HDF5 report (one group per checkpoint)");
    sub->add_option("--trust", flags->trusted, "A module.Class you trust: not reported as a security finding");
    sub->add_flag("--tensors", flags->show_tensors, "Also print the per-tensor table");
    add_scan_flags(*sub, scan_flags);
    sub->footer(
        "Example:\n  bitfsck scan run/step_000400.pt\n  bitfsck scan --sidecar --h5 run.h5 run/\n"
        "Exit codes: 0 healthy, 2 unreadable file, 3 security findings, 4 degraded, 5 collapsed (the most important wins).");
    sub->callback([flags, scan_flags] { run_scan(*flags, *scan_flags); });
}

}  // namespace bitfsck::cli
