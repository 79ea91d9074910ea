#include "bitfsck/app/app_state.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <nlohmann/json.hpp>

#include "bitfsck/analysis/layers.hpp"
#include "bitfsck/analysis/report_json.hpp"

namespace bitfsck::app {

namespace fs = std::filesystem;
using analysis::LayerRoleStats;
using analysis::Verdict;

std::string Document::title() const {
    fs::path p = path;
    if (p.filename().empty()) p = p.parent_path();  // "run/" names the folder "run"
    return is_run ? p.filename().string() + "/" : p.filename().string();
}

std::string_view view_name(View v) {
    switch (v) {
        case View::Overview: return "overview";
        case View::Layers: return "layers";
        case View::Tensor: return "tensor";
        case View::Timeline: return "timeline";
        case View::Compare: return "compare";
        case View::Induction: return "induction";
        case View::Repair: return "repair";
        case View::Resurrect: return "resurrect";
    }
    return "overview";
}

std::optional<View> view_from_name(std::string_view name) {
    for (int i = 0; i < kViewCount; ++i)
        if (view_name(static_cast<View>(i)) == name) return static_cast<View>(i);
    return std::nullopt;
}

std::string_view layer_column_name(LayerColumn c) {
    switch (c) {
        case LayerColumn::Layer: return "layer";
        case LayerColumn::Role: return "role";
        case LayerColumn::Std: return "std";
        case LayerColumn::Zeros: return "zeros %";
        case LayerColumn::Neg: return "-1 %";
        case LayerColumn::TernaryZero: return "0 %";
        case LayerColumn::Pos: return "+1 %";
        case LayerColumn::DeadRows: return "dead rows";
        case LayerColumn::Verdict: return "verdict";
    }
    return "layer";
}

// --- documents and selection ---------------------------------------------------------------

Document* find_document(AppState& s, int id) {
    for (auto& d : s.documents)
        if (d.id == id) return &d;
    return nullptr;
}

const Document* find_document(const AppState& s, int id) {
    for (const auto& d : s.documents)
        if (d.id == id) return &d;
    return nullptr;
}

Document* selected_document(AppState& s) { return find_document(s, s.selected_document); }
const Document* selected_document(const AppState& s) { return find_document(s, s.selected_document); }

const CheckpointData* find_checkpoint(const AppState& s, const CheckpointRef& ref) {
    const Document* d = find_document(s, ref.document);
    if (!d || ref.checkpoint >= d->checkpoints.size()) return nullptr;
    return d->checkpoints[ref.checkpoint].get();
}

const CheckpointData* current_checkpoint(const AppState& s) {
    const Document* d = selected_document(s);
    if (!d || d->checkpoints.empty()) return nullptr;
    return d->checkpoints[std::min(d->current, d->checkpoints.size() - 1)].get();
}

const std::vector<LayerRoleStats>* current_layers(const AppState& s) {
    const Document* d = selected_document(s);
    if (!d || d->checkpoints.empty()) return nullptr;
    if (d->timeline && d->current < d->timeline->points.size()) return &d->timeline->points[d->current].layers;
    return &current_checkpoint(s)->report.layers;
}

namespace {

// What the tensor view starts with: the worst tensor of the checkpoint (ties: file order), so a
// collapsed model opens on a collapsed tensor, with a healthy one of its role beside it.
void select_default_tensors(AppState& s) {
    s.tensor_a.reset();
    s.tensor_b.reset();
    const CheckpointData* c = current_checkpoint(s);
    if (!c || c->report.tensors.empty()) return;
    const analysis::ScanReport& r = c->report;
    const analysis::TensorStats* best = nullptr;
    Verdict best_verdict = Verdict::Healthy;
    for (const auto& t : r.tensors) {
        Verdict v = analysis::verdict_of_subject(r, t.name);
        bool matrix = analysis::role_is_ternary_matrix(analysis::place_of(t.name).role);
        if (!best || static_cast<int>(v) > static_cast<int>(best_verdict) ||
            (v == best_verdict && v == Verdict::Healthy && matrix &&
             !analysis::role_is_ternary_matrix(analysis::place_of(best->name).role))) {
            best = &t;
            best_verdict = v;
        }
    }
    select_tensor(s, best->name, 0);
}

void refresh_markers(AppState& s) {
    const Document* d = selected_document(s);
    s.markers = d && d->timeline ? timeline_markers(*d->timeline) : std::vector<TimelineMarker>{};
}

}  // namespace

int add_document(AppState& s, Document d) {
    std::error_code ec;
    auto same = [&](const Document& other) {
        return other.path == d.path || fs::equivalent(other.path, d.path, ec);
    };
    s.documents.erase(std::remove_if(s.documents.begin(), s.documents.end(), same), s.documents.end());
    d.id = s.next_document_id++;
    // A run opens on its last checkpoint: what matters first is the state the run is in now.
    if (d.is_run && !d.checkpoints.empty()) d.current = d.checkpoints.size() - 1;
    int id = d.id;
    s.documents.push_back(std::move(d));
    select_document(s, id);
    return id;
}

void close_document(AppState& s, int id) {
    s.documents.erase(std::remove_if(s.documents.begin(), s.documents.end(), [&](const Document& d) { return d.id == id; }),
                      s.documents.end());
    auto gone = [&](const std::optional<CheckpointRef>& r) { return r && r->document == id; };
    if (gone(s.compare_a)) s.compare_a.reset();
    if (gone(s.compare_b)) s.compare_b.reset();
    if (s.diff && (s.diff_a.document == id || s.diff_b.document == id)) s.diff.reset();
    if (s.repair.preview && s.repair.preview->checkpoint.document == id) s.repair.preview.reset();
    if (gone(s.repair.tensor_of)) {
        s.repair.tensor_of.reset();
        s.repair.tensor.clear();
    }
#ifdef BITFSCK_APP_HAVE_MODEL
    auto& results = s.induction.results;
    results.erase(std::remove_if(results.begin(), results.end(), [&](const InductionResult& r) { return r.checkpoint.document == id; }),
                  results.end());
#endif
    if (s.selected_document == id) select_document(s, s.documents.empty() ? 0 : s.documents.back().id);
}

void select_document(AppState& s, int id) {
    s.selected_document = find_document(s, id) ? id : 0;
    s.selected_layer.reset();
    s.timeline_role = 0;
    refresh_markers(s);
    select_default_tensors(s);
}

bool select_checkpoint(AppState& s, std::size_t index) {
    Document* d = selected_document(s);
    if (!d || index >= d->checkpoints.size()) return false;
    d->current = index;
    s.selected_layer.reset();
    select_default_tensors(s);
    return true;
}

bool select_step(AppState& s, std::int64_t step) {
    Document* d = selected_document(s);
    if (!d || !d->timeline) return false;
    const auto& pts = d->timeline->points;
    for (std::size_t i = 0; i < pts.size(); ++i)
        if (pts[i].step == step) return select_checkpoint(s, i);
    return false;
}

std::vector<std::size_t> layer_order(const std::vector<LayerRoleStats>& layers, const LayerSort& sort) {
    std::vector<std::size_t> order(layers.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    // Rows without a layer index (embedding, head) sort after every numbered layer ascending.
    auto layer_key = [](const LayerRoleStats& l) { return l.layer ? *l.layer : std::numeric_limits<int>::max(); };
    auto dead_share = [](const LayerRoleStats& l) { return l.rows ? double(l.dead_rows) / double(l.rows) : 0.0; };
    auto less = [&](const LayerRoleStats& a, const LayerRoleStats& b) -> bool {
        switch (sort.column) {
            case LayerColumn::Layer:
                if (layer_key(a) != layer_key(b)) return layer_key(a) < layer_key(b);
                return static_cast<int>(a.role) < static_cast<int>(b.role);
            case LayerColumn::Role: return analysis::role_name(a.role) < analysis::role_name(b.role);
            case LayerColumn::Std: return a.std < b.std;
            case LayerColumn::Zeros: return a.zero_frac < b.zero_frac;
            case LayerColumn::Neg: return a.neg < b.neg;
            case LayerColumn::TernaryZero: return a.zero < b.zero;
            case LayerColumn::Pos: return a.pos < b.pos;
            case LayerColumn::DeadRows: return dead_share(a) < dead_share(b);
            case LayerColumn::Verdict: return static_cast<int>(a.verdict) < static_cast<int>(b.verdict);
        }
        return false;
    };
    std::stable_sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) {
        return sort.ascending ? less(layers[i], layers[j]) : less(layers[j], layers[i]);
    });
    return order;
}

void sort_layers(AppState& s, LayerColumn column, bool ascending) { s.layer_sort = LayerSort{column, ascending}; }

bool select_layer(AppState& s, std::size_t index) {
    const auto* layers = current_layers(s);
    if (!layers || index >= layers->size()) return false;
    s.selected_layer = index;
    const auto& l = (*layers)[index];
    if (!l.tensors.empty()) select_tensor(s, l.tensors.front(), 0);
    return true;
}

const analysis::TensorStats* find_tensor_stats(const AppState& s, const TensorRef& ref) {
    const CheckpointData* c = find_checkpoint(s, CheckpointRef{ref.document, ref.checkpoint});
    if (!c) return nullptr;
    for (const auto& t : c->report.tensors)
        if (t.name == ref.name) return &t;
    return nullptr;
}

Verdict tensor_verdict(const AppState& s, const TensorRef& ref) {
    const CheckpointData* c = find_checkpoint(s, CheckpointRef{ref.document, ref.checkpoint});
    return c ? analysis::verdict_of_subject(c->report, ref.name) : Verdict::Healthy;
}

std::optional<std::string> healthy_counterpart(const analysis::ScanReport& report, const std::string& name) {
    const analysis::TensorPlace place = analysis::place_of(name);
    // Prefer the nearest healthy layer: neighbours share the most with the dead one.
    std::optional<std::string> best;
    int best_distance = std::numeric_limits<int>::max();
    for (const auto& t : report.tensors) {
        if (t.name == name) continue;
        const analysis::TensorPlace p = analysis::place_of(t.name);
        if (p.role != place.role || p.is_weight != place.is_weight) continue;
        if (analysis::verdict_of_subject(report, t.name) != Verdict::Healthy) continue;
        // A tensor can be healthy alone while its layer-role group is not (another tensor of it
        // collapsed); a group verdict that is not healthy disqualifies it as a reference.
        bool group_healthy = true;
        for (const auto& l : report.layers)
            if (l.layer == p.layer && l.role == p.role && l.verdict != Verdict::Healthy) group_healthy = false;
        if (!group_healthy) continue;
        int distance = (p.layer && place.layer) ? std::abs(*p.layer - *place.layer) : std::numeric_limits<int>::max() - 1;
        if (distance < best_distance) {
            best_distance = distance;
            best = t.name;
        }
    }
    return best;
}

bool select_tensor(AppState& s, const std::string& name, int slot) {
    const Document* d = selected_document(s);
    const CheckpointData* c = current_checkpoint(s);
    if (!d || !c) return false;
    auto it = std::find_if(c->report.tensors.begin(), c->report.tensors.end(), [&](const auto& t) { return t.name == name; });
    if (it == c->report.tensors.end()) return false;
    TensorRef ref{d->id, std::min(d->current, d->checkpoints.size() - 1), name};
    if (slot == 1) {
        s.tensor_b = ref;
        return true;
    }
    s.tensor_a = ref;
    if (analysis::verdict_of_subject(c->report, name) == Verdict::Healthy) {
        if (s.tensor_b && s.tensor_b->document != ref.document) s.tensor_b.reset();  // from another file: unrelated
        return true;
    }
    if (auto other = healthy_counterpart(c->report, name)) {
        s.tensor_b = TensorRef{ref.document, ref.checkpoint, *other};
        return true;
    }
    // Every layer of this role is sick (a whole-run collapse): in a run, the same tensor at the
    // last healthy checkpoint (else the first) is the healthy picture to compare with.
    s.tensor_b.reset();
    if (d->timeline && d->checkpoints.size() > 1) {
        std::size_t before = 0;
        for (std::size_t i = 0; i < d->timeline->points.size(); ++i)
            if (d->timeline->last_healthy_step && d->timeline->points[i].step == *d->timeline->last_healthy_step) before = i;
        TensorRef earlier{ref.document, before, name};
        if (before != ref.checkpoint && find_tensor_stats(s, earlier)) s.tensor_b = earlier;
    }
    return true;
}

std::vector<TimelineMarker> timeline_markers(const analysis::Timeline& t) {
    std::vector<TimelineMarker> m;
    if (t.last_healthy_step)
        m.push_back({TimelineMarker::Kind::LastHealthy, *t.last_healthy_step, t.last_healthy_file, "last healthy"});
    if (t.onset_step) m.push_back({TimelineMarker::Kind::Onset, *t.onset_step, t.onset_file, "collapse onset"});
    if (t.collapsed_step && (!t.onset_step || *t.collapsed_step != *t.onset_step)) {
        std::string file;
        for (const auto& p : t.points)
            if (p.step == *t.collapsed_step) file = p.file;
        m.push_back({TimelineMarker::Kind::Collapsed, *t.collapsed_step, file, "collapsed"});
    }
    std::stable_sort(m.begin(), m.end(), [](const TimelineMarker& a, const TimelineMarker& b) { return a.step < b.step; });
    return m;
}

std::vector<std::string> timeline_labels(const analysis::Timeline& t) {
    std::vector<std::string> labels;
    for (const auto& p : t.points)
        for (const auto& l : p.layers) {
            std::string label = analysis::layer_role_label(l.layer, l.role);
            if (std::find(labels.begin(), labels.end(), label) == labels.end()) labels.push_back(std::move(label));
        }
    return labels;
}

std::vector<double> timeline_series(const analysis::Timeline& t, const std::string& label, SeriesFigure f) {
    std::vector<double> v(t.points.size(), std::numeric_limits<double>::quiet_NaN());
    for (std::size_t i = 0; i < t.points.size(); ++i)
        for (const auto& l : t.points[i].layers)
            if (analysis::layer_role_label(l.layer, l.role) == label)
                v[i] = f == SeriesFigure::Std ? l.std : f == SeriesFigure::TernaryZero ? l.zero : l.absmean;
    return v;
}

std::vector<CheckpointRef> all_checkpoints(const AppState& s) {
    std::vector<CheckpointRef> refs;
    for (const auto& d : s.documents)
        for (std::size_t i = 0; i < d.checkpoints.size(); ++i) refs.push_back({d.id, i});
    return refs;
}

std::optional<CheckpointRef> current_checkpoint_ref(const AppState& s) {
    const Document* d = selected_document(s);
    if (!d || d->checkpoints.empty()) return std::nullopt;
    return CheckpointRef{d->id, std::min(d->current, d->checkpoints.size() - 1)};
}

#ifdef BITFSCK_APP_HAVE_MODEL
const InductionResult* induction_result_for(const AppState& s, const CheckpointRef& ref) {
    const auto& results = s.induction.results;
    for (auto it = results.rbegin(); it != results.rend(); ++it)
        if (it->checkpoint == ref) return &*it;
    return nullptr;
}

void add_induction_result(AppState& s, InductionResult r) {
    auto& results = s.induction.results;
    results.erase(std::remove_if(results.begin(), results.end(), [&](const InductionResult& o) { return o.checkpoint == r.checkpoint; }),
                  results.end());
    if (results.size() >= kMaxInductionResults) results.erase(results.begin(), results.end() - (kMaxInductionResults - 1));
    s.induction.selected = top_head(r.report, InductionMetric::Ipmr);
    s.induction.hovered.reset();
    results.push_back(std::move(r));
}
#endif

std::string checkpoint_label(const AppState& s, const CheckpointRef& ref) {
    const Document* d = find_document(s, ref.document);
    const CheckpointData* c = find_checkpoint(s, ref);
    if (!d || !c) return "(closed)";
    std::string label = c->path.filename().string();
    if (d->is_run) label = d->title() + label;
    if (c->report.step) label += "  (step " + std::to_string(*c->report.step) + ")";
    return label;
}

std::optional<std::pair<CheckpointRef, CheckpointRef>> default_compare_pair(const AppState& s) {
    const Document* d = selected_document(s);
    if (d && d->timeline && d->checkpoints.size() >= 2) {
        const auto& t = *d->timeline;
        auto index_of = [&](const std::string& file) -> std::optional<std::size_t> {
            for (std::size_t i = 0; i < t.points.size(); ++i)
                if (t.points[i].file == file) return i;
            return std::nullopt;
        };
        auto a = index_of(t.last_healthy_file), b = index_of(t.onset_file);
        if (t.last_healthy_step && t.onset_step && a && b) return std::pair{CheckpointRef{d->id, *a}, CheckpointRef{d->id, *b}};
        return std::pair{CheckpointRef{d->id, 0}, CheckpointRef{d->id, d->checkpoints.size() - 1}};
    }
    auto refs = all_checkpoints(s);
    if (refs.size() < 2) return std::nullopt;
    return std::pair{refs[refs.size() - 2], refs.back()};
}

std::vector<std::size_t> diff_order(const analysis::CheckpointDiff& d, DiffColumn column, bool ascending) {
    std::vector<std::size_t> order(d.tensors.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    // Tensors that were not compared have no figures: always last, whichever the direction.
    auto key = [&](const analysis::TensorDiff& t) -> double {
        switch (column) {
            case DiffColumn::RelL2: return t.rel_l2;
            case DiffColumn::FlipRate: return t.flip_rate;
            case DiffColumn::NewDeadRows: return static_cast<double>(t.new_dead_rows);
            case DiffColumn::Tensor: return 0;
        }
        return 0;
    };
    std::stable_sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) {
        const auto &a = d.tensors[i], &b = d.tensors[j];
        if (a.compared != b.compared) return a.compared;
        if (column == DiffColumn::Tensor) return ascending ? a.name < b.name : b.name < a.name;
        double ka = key(a), kb = key(b);
        // NaN never compares; keep it after the numbers so the order stays strict-weak.
        if (std::isnan(ka) != std::isnan(kb)) return !std::isnan(ka);
        return ascending ? ka < kb : kb < ka;
    });
    return order;
}

std::vector<const analysis::Finding*> findings_about(const std::vector<analysis::Finding>& findings, const LayerRoleStats& l) {
    std::vector<const analysis::Finding*> out;
    const std::string label = analysis::layer_role_label(l.layer, l.role);
    for (const auto& f : findings)
        if (f.subject == label || std::find(l.tensors.begin(), l.tensors.end(), f.subject) != l.tensors.end()) out.push_back(&f);
    return out;
}

// --- recent files, log -----------------------------------------------------------------------

void add_recent(std::vector<std::string>& recent, const fs::path& path, std::size_t cap) {
    // Absolute and normalised, so "run", "./run" and "run/" are one entry.
    std::error_code ec;
    fs::path p = fs::absolute(path, ec);
    if (ec) p = path;
    p = p.lexically_normal();
    std::string key = p.string();
    while (key.size() > 1 && key.back() == '/') key.pop_back();
    recent.erase(std::remove(recent.begin(), recent.end(), key), recent.end());
    recent.insert(recent.begin(), key);
    if (recent.size() > cap) recent.resize(cap);
}

std::string recent_to_json(const std::vector<std::string>& recent) {
    nlohmann::json j;
    j["recent"] = recent;
    return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::vector<std::string> recent_from_json(const std::string& text, std::size_t cap) {
    std::vector<std::string> out;
    nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("recent") || !j["recent"].is_array()) return out;
    for (const auto& e : j["recent"]) {
        if (!e.is_string()) continue;
        std::string p = e.get<std::string>();
        if (p.empty() || std::find(out.begin(), out.end(), p) != out.end()) continue;
        out.push_back(std::move(p));
        if (out.size() == cap) break;
    }
    return out;
}

namespace {
void push_log(AppState& s, LogLine::Level level, std::string text) {
    s.log.push_back({level, std::move(text)});
    while (s.log.size() > kMaxLogLines) s.log.pop_front();
}
}  // namespace

void log_info(AppState& s, std::string text) { push_log(s, LogLine::Level::Info, std::move(text)); }
void log_error(AppState& s, std::string text) { push_log(s, LogLine::Level::Error, std::move(text)); }

}  // namespace bitfsck::app
