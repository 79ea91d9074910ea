// report.html of a resurrection: one self-contained page (inline SVG and CSS, no script, no
// network) that a reviewer can open from an e-mail attachment.
#include <algorithm>
#include <sstream>

#include "bitfsck/io/text.hpp"
#include "bitfsck/repair/resurrect.hpp"

namespace bitfsck::repair {
namespace {

std::string esc(const std::string& s) {
    std::string o;
    for (char c : s) {
        switch (c) {
            case '&': o += "&amp;"; break;
            case '<': o += "&lt;"; break;
            case '>': o += "&gt;"; break;
            case '"': o += "&quot;"; break;
            default: o += c;
        }
    }
    return o;
}

struct Bar {
    std::string label;
    double value = 0;
    std::string colour;
};

// Horizontal bars, one per row, value printed at the end.
std::string bar_chart(const std::vector<Bar>& bars, const char* value_format, double lo, double hi) {
    const int row = 22, label_w = 330, bar_w = 380;
    std::ostringstream s;
    s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << label_w + bar_w + 90 << "' height='" << row * bars.size() + 8 << "'>";
    for (std::size_t i = 0; i < bars.size(); ++i) {
        const double f = hi > lo ? std::clamp((bars[i].value - lo) / (hi - lo), 0.0, 1.0) : 0.5;
        const int y = static_cast<int>(i) * row + 4;
        s << "<text x='0' y='" << y + 14 << "' font-size='12'>" << esc(bars[i].label) << "</text>"
          << "<rect x='" << label_w << "' y='" << y << "' width='" << std::max(1, static_cast<int>(f * bar_w)) << "' height='16' fill='"
          << bars[i].colour << "'/>"
          << "<text x='" << label_w + static_cast<int>(f * bar_w) + 6 << "' y='" << y + 14 << "' font-size='12'>" << fmt(value_format, bars[i].value)
          << "</text>";
    }
    s << "</svg>";
    return s.str();
}

// Per layer-role: two bars (before, after) for std on a log axis, and for the ternary zeros.
std::string role_chart(const Measurement& before, const Measurement& after, bool zeros) {
    std::vector<Bar> bars;
    for (const auto& r : before.roles) {
        auto it = std::find_if(after.roles.begin(), after.roles.end(), [&](const RoleFigure& a) { return a.label == r.label; });
        const auto colour = [](analysis::Verdict v) {
            return v == analysis::Verdict::Collapsed ? "#d9534f" : v == analysis::Verdict::Degraded ? "#f0ad4e" : "#5cb85c";
        };
        bars.push_back({r.label + " before", zeros ? 100 * r.zero : std::log10(std::max(r.std, 1e-9)), colour(r.verdict)});
        if (it != after.roles.end())
            bars.push_back({r.label + " after", zeros ? 100 * it->zero : std::log10(std::max(it->std, 1e-9)), colour(it->verdict)});
    }
    if (zeros) return bar_chart(bars, "%.0f%%", 0, 100);
    double lo = 0, hi = -9;
    for (const auto& b : bars) lo = std::min(lo, b.value), hi = std::max(hi, b.value);
    return bar_chart(bars, "1e%.2f", std::floor(lo) - 0.5, hi);
}

std::string heat_map(const Measurement& m, const std::string& title) {
    if (m.ipmr.empty()) return "<p>(no induction probe)</p>";
    const int cell = 34;
    const int L = static_cast<int>(m.ipmr.size()), H = static_cast<int>(m.ipmr.front().size());
    std::ostringstream s;
    s << "<figure><svg xmlns='http://www.w3.org/2000/svg' width='" << 40 + H * cell << "' height='" << 24 + L * cell << "'>";
    for (int h = 0; h < H; ++h) s << "<text x='" << 40 + h * cell + 8 << "' y='14' font-size='11'>H" << h << "</text>";
    for (int l = 0; l < L; ++l) {
        s << "<text x='2' y='" << 24 + l * cell + 21 << "' font-size='11'>L" << l << "</text>";
        for (int h = 0; h < H && h < static_cast<int>(m.ipmr[l].size()); ++h) {
            const double v = std::clamp(m.ipmr[l][h], 0.0, 1.0);
            const int shade = static_cast<int>(255 - 200 * v);
            s << "<rect x='" << 40 + h * cell << "' y='" << 24 + l * cell << "' width='" << cell - 2 << "' height='" << cell - 2
              << "' fill='rgb(" << shade << "," << shade << ",255)'><title>L" << l << ".H" << h << " IPMR " << fmt("%.3f", m.ipmr[l][h])
              << "</title></rect><text x='" << 40 + h * cell + 3 << "' y='" << 24 + l * cell + 20 << "' font-size='9'>" << fmt("%.2f", v) << "</text>";
        }
    }
    s << "</svg><figcaption>" << esc(title) << "</figcaption></figure>";
    return s.str();
}

}  // namespace

std::string resurrection_report_html(const ResurrectionLog& log) {
    const Measurement* final_m = &log.start;
    for (const auto& s : log.stages)
        if (s.accepted) final_m = &s.after;
    std::ostringstream h;
    h << "<!doctype html><html><head><meta charset='utf-8'><title>bitfsck resurrection</title><style>"
         "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;vertical-align:top}pre{background:#f6f6f6;padding:8px;white-space:pre-wrap}"
         ".ok{color:#2e7d32}.no{color:#c62828}figure{display:inline-block;margin:0 2em 1em 0}</style></head><body>";
    h << "<h1>Resurrection of " << esc(log.recipe.latest) << "</h1>";
    // The one thing a reader must not miss: whether the result is worth using at all.
    if (!log.beats_best_baseline && log.best_baseline)
        h << "<p class='no' style='font-size:1.2em;border:2px solid #c62828;padding:8px'><b>The result does not beat the best baseline</b>, "
          << esc(log.best_baseline->baseline) << " (" << fmt("%.4f", log.best_baseline->baseline_loss) << " vs " << fmt("%.4f", log.best_baseline->result_loss)
          << "): use <code>" << esc(log.best_baseline->checkpoint) << "</code> instead.</p>";
    else if (log.best_baseline)
        h << "<p class='ok' style='font-size:1.2em'><b>The result beats the best baseline</b>, " << esc(log.best_baseline->baseline)
          << ", by a paired interval above 0 (each baseline's claim is below).</p>";
    if (log.control)
        h << "<p>Control <code>" << esc(log.control->checkpoint) << "</code> (a run that never collapsed): " << esc(log.control->summary) << ".</p>";
    h << "<p>Final checkpoint: <code>" << esc(log.output) << "</code> (" << esc(log.output_hash) << "), " << fmt("%.1f", log.seconds) << " s.</p>";
    h << "<h2>Verdict</h2><ul>";
    for (const auto& c : log.claims) h << "<li class='" << (c.rfind("beats", 0) == 0 ? "ok" : c.rfind("no significant", 0) == 0 ? "" : "no") << "'>" << esc(c) << "</li>";
    h << "<li>scan: " << analysis::verdict_name(log.start.verdict) << " → " << analysis::verdict_name(final_m->verdict) << "; collapsed layer-roles "
      << log.start.collapsed.size() << " → " << final_m->collapsed.size() << "</li></ul>";
    h << "<h2>Diagnosis</h2><ul>";
    for (const auto& d : log.recipe.diagnosis) h << "<li>" << esc(d) << "</li>";
    h << "</ul><h2>Stages</h2><table><tr><th>#</th><th>stage</th><th>why</th><th>val loss</th><th>verdict</th><th>decisions</th></tr>";
    h << "<tr><td>0</td><td>start</td><td>the run's latest checkpoint</td><td>" << fmt("%.4f", log.start.val_loss) << "</td><td>"
      << analysis::verdict_name(log.start.verdict) << "</td><td></td></tr>";
    for (const auto& s : log.stages) {
        h << "<tr><td>" << s.index << "</td><td>" << stage_name(s.stage.kind) << "</td><td>" << esc(s.stage.reason) << "</td><td>"
          << fmt("%.4f", s.after.val_loss) << "</td><td>" << analysis::verdict_name(s.after.verdict) << "</td><td class='"
          << (s.accepted ? "ok" : "no") << "'>";
        for (const auto& d : s.decisions) h << esc(d) << "<br>";
        h << "</td></tr>";
    }
    h << "</table>";
    for (const auto& s : log.stages) {
        if (!s.search) continue;
        const SearchRecord& r = *s.search;
        h << "<h2>Candidates of stage " << s.index << " (successive halving)</h2><p>" << esc(r.why)
          << ". Selection loss: the mean loss on the " << r.selection_windows
          << " validation windows after the claims' windows (no claim uses them).</p><table><tr><th>#</th><th>candidate</th>";
        for (auto steps : r.rung_steps) h << "<th>" << steps << " steps</th>";
        h << "<th></th></tr>";
        for (std::size_t i = 0; i < r.candidates.size(); ++i) {
            const auto& c = r.candidates[i];
            h << "<tr" << (c.winner ? " style='font-weight:bold'" : "") << "><td>" << i + 1 << "</td><td>" << esc(c.name) << "</td>";
            for (auto steps : r.rung_steps) {
                const auto loss = selection_loss_at(c, steps);
                h << "<td>" << (loss ? fmt("%.4f", *loss) : "") << "</td>";
            }
            h << "<td class='" << (c.winner ? "ok" : "") << "'>" << esc(c.note) << "</td></tr>";
        }
        h << "</table>";
    }

    std::vector<Bar> losses;
    losses.push_back({"start: " + log.recipe.latest, log.start.val_loss, "#999"});
    for (const auto& s : log.stages)
        losses.push_back({"stage " + std::to_string(s.index) + " " + std::string(stage_name(s.stage.kind)) + (s.accepted ? "" : " (rejected)"),
                          s.after.val_loss, s.accepted ? "#337ab7" : "#d9534f"});
    for (const auto& b : log.baselines) losses.push_back({"baseline: " + b.name, b.measurement.val_loss, "#f0ad4e"});
    double lo = 1e300, hi = -1e300;
    for (const auto& b : losses) lo = std::min(lo, b.value), hi = std::max(hi, b.value);
    h << "<h2>Validation loss (nats/token, held-out tokens)</h2>" << bar_chart(losses, "%.4f", lo - 0.05 * (hi - lo + 1e-9), hi);
    h << "<h2>Per layer-role std (log10), before → after</h2>" << role_chart(log.start, *final_m, false);
    h << "<h2>Per layer-role ternary zeros, before → after</h2>" << role_chart(log.start, *final_m, true);
    h << "<h2>Induction (IPMR per head)</h2>" << heat_map(log.start, "before: " + log.start.top_heads + "; specialist heads " +
                                                                    std::to_string(log.start.specialist_heads))
      << heat_map(*final_m, "after: " + final_m->top_heads + "; specialist heads " + std::to_string(final_m->specialist_heads));
    h << "<h2>Greedy generation</h2><p>before" << (log.start.degenerate ? " (degenerate)" : "") << ":</p><pre>" << esc(log.start.generation)
      << "</pre><p>after" << (final_m->degenerate ? " (degenerate)" : "") << ":</p><pre>" << esc(final_m->generation) << "</pre>";
    h << "<h2>Baselines</h2><table><tr><th>baseline</th><th>what</th><th>val loss</th><th>verdict</th></tr>";
    for (const auto& b : log.baselines)
        h << "<tr><td>" << esc(b.name) << "</td><td>" << esc(b.description) << "</td><td>" << fmt("%.4f", b.measurement.val_loss) << "</td><td>"
          << analysis::verdict_name(b.measurement.verdict) << "</td></tr>";
    h << "</table><p>Budget: " << log.budget_tokens << " fine-tuning tokens for the result and each fine-tuned baseline. Claims on the first "
      << log.claim_windows << " validation windows" << (log.selection_windows ? ", a search's scores on the " + std::to_string(log.selection_windows) + " after them" : std::string())
      << ".</p><p>Data: " << esc(log.tokens) << " (training), " << esc(log.val_tokens) << " (validation); seed " << log.recipe.seed << ", "
      << log.recipe.threads << " thread(s). Replay: <code>bitfsck resurrect --replay resurrection.json -o OTHER_DIR</code>.</p></body></html>\n";
    return h.str();
}

}  // namespace bitfsck::repair
