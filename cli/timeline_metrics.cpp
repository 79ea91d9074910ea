#include "timeline_metrics.hpp"

#include <cstdio>
#include <iostream>

#include "bitfsck/analysis/layers.hpp"
#include "bitfsck/analysis/report_json.hpp"
#include "bitfsck/analysis/training_metrics.hpp"
#include "bitfsck/io/text.hpp"
#include "subcommands.hpp"
#include "verdicts.hpp"
#include "table.hpp"
#include "terminal.hpp"

namespace bitfsck::cli {
namespace {

constexpr std::size_t kMaxRows = 40;

std::string paint(analysis::Verdict v, const std::string& s) {
    return v == analysis::Verdict::Collapsed ? red(s) : v == analysis::Verdict::Degraded ? yellow(s) : s;
}

}  // namespace

bool is_metrics_file(const std::filesystem::path& p) { return p.extension() == ".jsonl"; }

void run_metrics_timeline(const std::filesystem::path& file, bool json, const analysis::Thresholds& thresholds) {
    const analysis::MetricsTimeline t = analysis::read_training_metrics(file, thresholds);
    if (json) {
        std::cout << analysis::dump_json(analysis::to_json(t)) << "\n";
    } else {
        std::vector<std::string> headers{"step", "loss", "val loss", "verdict"};
        const auto& roles = t.points.back().roles;
        for (const auto& r : roles) headers.push_back(std::string(analysis::role_name(r.role)) + " std/zeros");
        Table table(headers);
        // Long runs: every k-th step, and always the first, the last and where the verdict changes.
        const std::size_t every = (t.points.size() + kMaxRows - 1) / kMaxRows;
        for (std::size_t i = 0; i < t.points.size(); ++i) {
            const auto& p = t.points[i];
            const bool change = i > 0 && t.points[i - 1].verdict != p.verdict;
            if (i % every != 0 && i + 1 != t.points.size() && !change) continue;
            std::vector<std::string> row{std::to_string(p.step), p.loss ? fmt("%.4f", *p.loss) : "-",
                                         p.val_loss ? fmt("%.4f", *p.val_loss) : "-",
                                         paint(p.verdict, std::string(analysis::verdict_name(p.verdict)))};
            for (const auto& want : roles) {
                std::string cell = "-";
                for (const auto& r : p.roles)
                    if (r.role == want.role) cell = paint(r.verdict, fmt("%.2e", r.std) + " " + fmt("%.0f%%", 100 * r.zero));
                row.push_back(cell);
            }
            table.add(std::move(row));
        }
        std::cout << bold(file.string()) << "  (fine-tuning metrics, " << t.points.size() << " steps)\n" << table.render();
        if (t.onset_step) {
            std::cout << "collapse onset: " << bold("step " + std::to_string(*t.onset_step));
            if (t.collapsed_step && *t.collapsed_step != *t.onset_step) std::cout << ", collapsed from step " << *t.collapsed_step;
            std::cout << "\n";
            for (const auto& p : t.points)
                if (p.step == *t.onset_step)
                    for (const auto& r : p.roles)
                        if (!r.reason.empty()) std::cout << "  " << analysis::role_name(r.role) << ": " << r.reason << "\n";
            if (t.last_healthy_step) std::cout << "last healthy step: " << *t.last_healthy_step << "\n";
        } else {
            std::cout << "collapse onset: none (every step healthy)\n";
        }
        if (t.best_val_step) std::cout << "best validation loss: " << fmt("%.4f", *t.best_val_loss) << " at step " << *t.best_val_step << "\n";
    }
    set_verdict_exit_code(t.final_verdict);
}

}  // namespace bitfsck::cli
