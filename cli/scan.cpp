// bitfsck scan FILE...: per-layer health, collapse verdicts with reasons, JSON sidecars, HDF5.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include "bitfsck/analysis/h5_report.hpp"
#include "bitfsck/analysis/report_json.hpp"
#include "bitfsck/analysis/run.hpp"
#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/io/checkpoint_files.hpp"
#include "bitfsck/io/text.hpp"
#include "scan_options.hpp"
#include "subcommands.hpp"
#include "table.hpp"
#include "verdicts.hpp"
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
    SelectionFlags selection;
};

// At most `most` names, then how many more.
std::string some_of(const std::vector<std::string>& items, std::size_t most) {
    std::string out;
    for (std::size_t i = 0; i < items.size() && i < most; ++i) out += (i ? ", " : "") + items[i];
    if (items.size() > most) out += ", … (" + std::to_string(items.size() - most) + " more)";
    return out;
}

void print_report(const analysis::ScanReport& r, bool show_tensors) {
    std::cout << bold(r.file) << "  (" << r.format;
    if (!r.shards.empty()) std::cout << ", " << r.shards.size() << " shards";
    std::cout << ", " << human_bytes(r.file_size);
    if (r.step) std::cout << ", step " << *r.step;
    if (r.name_layout != "unknown" && r.name_layout != "llama") std::cout << ", " << r.name_layout << " names";
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
    if (!r.unassigned.empty())
        std::cout << "  " << yellow(std::to_string(r.unassigned.size()) + " tensors not assigned to a layer") << " (names bitfsck does not know): "
                  << some_of(r.unassigned, 4) << "\n";
    if (!r.undecoded.empty()) {
        // "name: why", grouped by why: a file of TL1 matrices has one reason, said once.
        std::vector<std::pair<std::string, std::vector<std::string>>> by_reason;
        for (const auto& u : r.undecoded) {
            const auto colon = u.find(": ");
            const std::string name = u.substr(0, colon), why = colon == std::string::npos ? "" : u.substr(colon + 2);
            auto it = std::find_if(by_reason.begin(), by_reason.end(), [&](const auto& g) { return g.first == why; });
            if (it == by_reason.end()) by_reason.push_back({why, {name}});
            else it->second.push_back(name);
        }
        std::cout << "  " << yellow(std::to_string(r.undecoded.size()) + " tensors not decoded") << ":\n";
        for (const auto& [why, names] : by_reason) std::cout << "    " << some_of(names, 3) << ": " << why << "\n";
    }
    for (const auto& w : r.warnings) std::cout << "  " << yellow("warning") << ": " << w << "\n";
    if (!quiet())
        for (const auto& n : r.notes) std::cout << "  note: " << n << "\n";
    std::cout << "verdict: " << coloured_verdict(r.verdict) << "  (" << r.tensors.size() << " tensors, " << r.layers.size()
              << " layer groups)\n";
}

fs::path sidecar_path(fs::path input, const std::string& out_dir) {
    if (input.filename().empty()) input = input.parent_path();  // "release/": the folder's own name
    fs::path name = input.filename();
    name += ".health.json";
    return out_dir.empty() ? input.parent_path() / name : fs::path(out_dir) / name;
}

int exit_code_of_report(const analysis::ScanReport& r) {
    const int code = verdict_exit_code(r.verdict);
    if (!r.security.empty()) set_exit_code(kSecurity);
    return code;
}

void run_scan(const ScanCommandFlags& flags, const ScanFlags& scan_flags) {
    analysis::RunScanOptions options = make_run_scan_options(scan_flags, flags.selection);
    options.open.pickle.trusted_globals.insert(flags.trusted.begin(), flags.trusted.end());
    const std::vector<fs::path> inputs = io::expand_checkpoint_inputs(flags.inputs);
    // Outputs are checked before any work: an unwritable report is one line, not a lost scan.
    if (!flags.out_dir.empty()) {
        std::error_code ec;
        if (fs::exists(flags.out_dir, ec) && !fs::is_directory(flags.out_dir, ec))
            throw io::OutputError(flags.out_dir, "--out-dir names a file, not a folder");
        fs::create_directories(flags.out_dir, ec);
        if (ec) throw io::OutputError(flags.out_dir, "cannot create the folder: " + ec.message());
    }
    std::optional<analysis::H5Report> h5;
    if (!flags.h5.empty()) {
        io::ensure_not_an_input(flags.h5, inputs);
        h5.emplace(flags.h5, BITFSCK_VERSION);
    }
    ProgressLine progress("scan");
    options.scan.progress = progress.callback();
    const std::vector<analysis::RunMember> members = analysis::scan_run(flags.inputs, options);
    progress.finish();

    nlohmann::ordered_json all = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < members.size(); ++i) {
        const analysis::RunMember& m = members[i];
        if (!m.report) {
            print_error(m.error);
            set_exit_code(kUnreadable);
            continue;
        }
        const auto& r = *m.report;
        set_exit_code(exit_code_of_report(r));
        auto j = analysis::to_json(r);
        if (flags.sidecar) {
            fs::path out = sidecar_path(m.input, flags.out_dir);
            io::ensure_not_an_input(out, {m.input});
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
    sub->add_option("inputs", flags->inputs, "Checkpoint files or folders of checkpoints")->required();
    sub->add_flag("--json", flags->json, "Print the reports as a JSON array on stdout (schema: docs/scan.schema.json)");
    sub->add_flag("--sidecar", flags->sidecar, "Write <checkpoint>.health.json next to each input (or into --out-dir)");
    sub->add_option("--out-dir", flags->out_dir, "Folder for the sidecar files");
    sub->add_option("--h5", flags->h5, "Write an HDF5 report (one group per checkpoint)");
    sub->add_option("--trust", flags->trusted, "A module.Class you trust: not reported as a security finding");
    sub->add_flag("--tensors", flags->show_tensors, "Also print the per-tensor table");
    add_scan_flags(*sub, scan_flags);
    add_selection_flags(*sub, flags->selection, "Scan");
    sub->footer(
        "Example:\n  bitfsck scan run/step_000400.pt\n  bitfsck scan --sidecar --h5 run.h5 run/\n"
        "Exit codes: 0 healthy, 2 unreadable file, 3 security findings, 4 degraded, 5 collapsed, 6 unknown (nothing could be\n"
        "judged: tensor names or encodings bitfsck does not know); the most important wins.");
    sub->callback([flags, scan_flags] { run_scan(*flags, *scan_flags); });
}

}  // namespace bitfsck::cli
