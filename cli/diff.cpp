// bitfsck diff A B: how far each tensor moved between two checkpoints and how many ternary
// codes flipped, e.g. to see what one bad stretch of training did to the MLP weights.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>

#include "bitfsck/analysis/diff.hpp"
#include "bitfsck/analysis/report_json.hpp"
#include "bitfsck/io/text.hpp"
#include "scan_options.hpp"
#include "subcommands.hpp"
#include "table.hpp"
#include "terminal.hpp"

namespace bitfsck::cli {
namespace {

struct DiffFlags {
    std::string a, b;
    std::string i2s_layout = "act-parallel";
    SelectionFlags selection;
    bool json = false;
    std::string quantizer = "bitnet";
    unsigned threads = 0;
    std::size_t top = 2;
};

const char* code_name(int i) { return i == 0 ? "-1" : i == 1 ? "0" : "+1"; }

// The `top` largest off-diagonal transitions, e.g. "+1→0 3.1%, -1→0 2.9%".
std::string largest_transitions(const analysis::TransitionMatrix& m, std::uint64_t count, std::size_t top) {
    struct Cell {
        int from, to;
        std::uint64_t n;
    };
    std::vector<Cell> cells;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
            if (i != j && m[i][j]) cells.push_back({i, j, m[i][j]});
    std::stable_sort(cells.begin(), cells.end(), [](const Cell& x, const Cell& y) { return x.n > y.n; });
    std::string s;
    for (std::size_t k = 0; k < std::min(top, cells.size()); ++k) {
        if (!s.empty()) s += ", ";
        s += std::string(code_name(cells[k].from)) + "\u2192" + code_name(cells[k].to) + " " +
             fmt("%.2f%%", count ? 100.0 * static_cast<double>(cells[k].n) / static_cast<double>(count) : 0.0);
    }
    return s.empty() ? "-" : s;
}

std::optional<io::Checkpoint> open_or_report(const std::string& file, const std::string& i2s_layout) {
    try {
        io::Checkpoint c = io::Checkpoint::open(file, open_options(i2s_layout));
        if (!c.findings().empty()) {
            print_warning(file + ": the pickle imports " + std::to_string(c.findings().size()) +
                          " global(s) outside the allow-list; torch.load would run them (see bitfsck inspect)");
            set_exit_code(kSecurity);
        }
        return c;
    } catch (const Error& e) {
        std::string what = e.what();
        print_error(what.find(file) != std::string::npos ? what : file + ": " + what);
        set_exit_code(kUnreadable);
        return std::nullopt;
    }
}

void print_diff(const analysis::CheckpointDiff& d, std::size_t top) {
    std::cout << bold("A: ") << d.file_a << "\n" << bold("B: ") << d.file_b << "\n";
    Table table({"tensor", "shape", "rel L2", "flips %", "largest transitions", "new dead rows"});
    std::vector<std::string> notes;
    for (const auto& t : d.tensors) {
        if (t.only_in_a) {
            notes.push_back(t.name + ": only in A");
            continue;
        }
        if (t.only_in_b) {
            notes.push_back(t.name + ": only in B");
            continue;
        }
        if (!t.compared) {
            notes.push_back(t.name + ": not compared, " + t.note);
            continue;
        }
        std::string shape;
        for (std::size_t i = 0; i < t.shape.size(); ++i) shape += (i ? "x" : "") + std::to_string(t.shape[i]);
        std::string flips = fmt("%.2f", 100 * t.flip_rate);
        table.add({t.name, shape.empty() ? "scalar" : shape, fmt("%.3g", t.rel_l2),
                   t.flip_rate > 0.5 ? red(flips) : t.flip_rate > 0.1 ? yellow(flips) : flips,
                   largest_transitions(t.transitions, t.count, top),
                   t.new_dead_rows ? red(std::to_string(t.new_dead_rows)) : std::string("0")});
    }
    if (table.rows()) std::cout << table.render();
    for (const auto& n : notes) std::cout << "  " << n << "\n";
    const auto& s = d.totals;
    std::cout << "total: " << s.tensors_compared << " tensors compared, rel L2 " << fmt("%.3g", s.rel_l2) << ", "
              << fmt("%.2f", 100 * s.flip_rate) << "% codes flipped (" << largest_transitions(s.transitions, s.count, 3)
              << "), " << s.new_dead_rows << " new dead rows";
    if (s.only_in_a || s.only_in_b) std::cout << "; " << s.only_in_a << " only in A, " << s.only_in_b << " only in B";
    if (s.non_finite) std::cout << "; " << s.non_finite << " non-finite element pairs skipped";
    std::cout << "  [quantizer " << analysis::quantizer_name(d.quantizer) << "]\n";
}

void run_diff(const DiffFlags& flags) {
    auto q = analysis::quantizer_from_name(flags.quantizer);
    if (!q) throw CLI::ValidationError("--quantizer", "unknown quantizer '" + flags.quantizer + "'");
    // Open both before giving up, so one run reports every unreadable input.
    auto a = open_or_report(flags.a, flags.i2s_layout);
    auto b = open_or_report(flags.b, flags.i2s_layout);
    if (!a || !b) return;
    ProgressLine progress("diff");
    const analysis::CheckpointDiff d =
        analysis::diff_checkpoints(*a, *b, *q, flags.threads, progress.callback(), make_selection(flags.selection));
    progress.finish();
    // Nothing in common (another model, or names bitfsck cannot pair): a diff that compared
    // nothing says nothing, and must not look like "no change".
    if (d.totals.tensors_compared == 0 && !d.tensors.empty()) {
        set_exit_code(kUsage);
        print_error(flags.a + " and " + flags.b + " have no tensor in common (" + std::to_string(d.totals.only_in_a) + " only in A, " +
                    std::to_string(d.totals.only_in_b) + " only in B): not two checkpoints of one model?");
    }
    if (flags.json) std::cout << analysis::dump_json(analysis::to_json(d, BITFSCK_VERSION)) << "\n";
    else print_diff(d, flags.top);
}

}  // namespace

void add_diff_subcommand(CLI::App& app) {
    auto flags = std::make_shared<DiffFlags>();
    auto* sub = app.add_subcommand("diff", "Per-tensor change between two checkpoints: relative L2 distance and ternary code flips");
    sub->add_option("A", flags->a, "The earlier checkpoint (a file, a sharded index.json or its folder)")->required();
    sub->add_option("B", flags->b, "The later checkpoint")->required();
    sub->add_flag("--json", flags->json, "Print the diff as JSON on stdout (schema: docs/diff.schema.json)");
    sub->add_option("--quantizer", flags->quantizer, "Quantizer for the ternary codes: bitnet or distillix (each side uses its own scale)")
        ->check(CLI::IsMember({"bitnet", "distillix"}))
        ->capture_default_str();
    sub->add_option("-j,--threads", flags->threads, "Worker threads (0: every core)")->capture_default_str();
    add_i2s_layout_flag(*sub, flags->i2s_layout);
    add_selection_flags(*sub, flags->selection, "Compare");
    sub->add_option("--top", flags->top, "How many of the largest code transitions to show per tensor")->capture_default_str();
    sub->footer(
        "Tensors are matched by state-dict name; rel L2 = ||B-A|| / ||A||; a flip is a ternary code that differs.\n"
        "Example:\n  bitfsck diff run/step_000400.pt run/step_000600.pt\n"
        "Exit codes: 0 compared, 1 usage, 2 unreadable file, 3 security findings in either file.");
    sub->callback([flags] { run_diff(*flags); });
}

}  // namespace bitfsck::cli
