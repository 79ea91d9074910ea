// resurrection.json: one place for the log's JSON form, read back for resuming and replaying.
#include "bitfsck/repair/resurrect.hpp"

#include <cmath>

#include "bitfsck/io/json_document.hpp"

namespace bitfsck::repair {
using ojson = nlohmann::ordered_json;

namespace {

analysis::Verdict verdict_from(const std::string& s) {
    if (s == "collapsed") return analysis::Verdict::Collapsed;
    if (s == "degraded") return analysis::Verdict::Degraded;
    if (s == "unknown") return analysis::Verdict::Unknown;
    return analysis::Verdict::Healthy;
}

ojson to_json(const Measurement& m) {
    ojson j;
    j["checkpoint"] = m.checkpoint;
    j["content_hash"] = m.content_hash;
    j["val_loss"] = m.val_loss;
    j["perplexity"] = m.perplexity;
    if (!m.window_losses.empty()) j["window_losses"] = m.window_losses;
    j["verdict"] = analysis::verdict_name(m.verdict);
    ojson roles = ojson::array();
    for (const auto& r : m.roles) roles.push_back({{"label", r.label}, {"std", r.std}, {"zero", r.zero}, {"verdict", analysis::verdict_name(r.verdict)}});
    j["roles"] = roles;
    j["collapsed"] = m.collapsed;
    j["probes"] = m.probes;
    if (m.probes) {
        j["specialist_heads"] = m.specialist_heads;
        j["ipmr"] = m.ipmr;
        j["top_heads"] = m.top_heads;
        j["degenerate"] = m.degenerate;
        j["degeneration_reasons"] = m.degeneration_reasons;
        j["generation"] = m.generation;
    }
    return j;
}

Measurement measurement_from(const nlohmann::json& j) {
    Measurement m;
    m.checkpoint = j.at("checkpoint").get<std::string>();
    m.content_hash = j.at("content_hash").get<std::string>();
    m.val_loss = j.at("val_loss").get<double>();
    m.perplexity = j.at("perplexity").get<double>();
    if (j.contains("window_losses")) m.window_losses = j["window_losses"].get<std::vector<double>>();
    m.verdict = verdict_from(j.at("verdict").get<std::string>());
    for (const auto& r : j.at("roles"))
        m.roles.push_back({r.at("label").get<std::string>(), r.at("std").get<double>(), r.at("zero").get<double>(),
                           verdict_from(r.at("verdict").get<std::string>())});
    m.collapsed = j.at("collapsed").get<std::vector<std::string>>();
    m.probes = j.at("probes").get<bool>();
    if (m.probes) {
        m.specialist_heads = j.at("specialist_heads").get<std::int64_t>();
        m.ipmr = j.at("ipmr").get<std::vector<std::vector<double>>>();
        m.top_heads = j.at("top_heads").get<std::string>();
        m.degenerate = j.at("degenerate").get<bool>();
        m.degeneration_reasons = j.at("degeneration_reasons").get<std::vector<std::string>>();
        m.generation = j.at("generation").get<std::string>();
    }
    return m;
}

ojson to_json(const BaselineComparison& c) {
    ojson j{{"baseline", c.baseline},
            {"checkpoint", c.checkpoint},
            {"result_loss", c.result_loss},
            {"baseline_loss", c.baseline_loss},
            {"outcome", outcome_name(c.outcome)}};
    if (c.interval)
        j["interval"] = {{"method", "paired Student t over the validation windows"},
                         {"confidence", c.interval->confidence},
                         {"windows", c.interval->n},
                         {"mean_difference", c.interval->mean},
                         {"sd", c.interval->sd},
                         {"low", c.interval->low},
                         {"high", c.interval->high}};
    else
        j["interval"] = nullptr;
    return j;
}

BaselineComparison comparison_from(const nlohmann::json& j) {
    BaselineComparison c;
    c.baseline = j.at("baseline").get<std::string>();
    c.checkpoint = j.at("checkpoint").get<std::string>();
    c.result_loss = j.at("result_loss").get<double>();
    c.baseline_loss = j.at("baseline_loss").get<double>();
    const std::string o = j.at("outcome").get<std::string>();
    c.outcome = o == "beats" ? BaselineComparison::Outcome::Beats
                : o == "worse" ? BaselineComparison::Outcome::Worse
                               : BaselineComparison::Outcome::NoSignificantDifference;
    if (j.contains("interval") && j["interval"].is_object()) {
        const auto& i = j["interval"];
        analysis::PairedInterval p;
        p.confidence = i.at("confidence").get<double>();
        p.n = i.at("windows").get<std::int64_t>();
        p.mean = i.at("mean_difference").get<double>();
        p.sd = i.at("sd").get<double>();
        p.low = i.at("low").get<double>();
        p.high = i.at("high").get<double>();
        c.interval = p;
    }
    return c;
}

ojson to_json(const SearchRecord& r) {
    ojson candidates = ojson::array();
    for (const auto& c : r.candidates) {
        ojson rungs = ojson::array();
        for (const auto& [steps, loss] : c.rungs) rungs.push_back({{"steps", steps}, {"selection_loss", loss}});
        candidates.push_back({{"name", c.name}, {"start", c.start}, {"rungs", rungs}, {"winner", c.winner}, {"note", c.note}});
    }
    return {{"method", "successive halving"}, {"rung_steps", r.rung_steps}, {"selection_windows", r.selection_windows},
            {"tokens", r.tokens}, {"winner", r.winner}, {"why", r.why}, {"candidates", candidates}};
}

SearchRecord search_from(const nlohmann::json& j) {
    SearchRecord r;
    r.rung_steps = j.at("rung_steps").get<std::vector<std::int64_t>>();
    r.selection_windows = j.at("selection_windows").get<std::int64_t>();
    r.tokens = j.at("tokens").get<std::int64_t>();
    r.winner = j.at("winner").get<std::string>();
    r.why = j.at("why").get<std::string>();
    for (const auto& cj : j.at("candidates")) {
        CandidateResult c;
        c.name = cj.at("name").get<std::string>();
        c.start = cj.at("start").get<std::string>();
        for (const auto& rj : cj.at("rungs")) c.rungs.emplace_back(rj.at("steps").get<std::int64_t>(), rj.at("selection_loss").get<double>());
        c.winner = cj.at("winner").get<bool>();
        c.note = cj.at("note").get<std::string>();
        r.candidates.push_back(std::move(c));
    }
    return r;
}

}  // namespace

std::string_view outcome_name(BaselineComparison::Outcome o) {
    switch (o) {
        case BaselineComparison::Outcome::Beats: return "beats";
        case BaselineComparison::Outcome::Worse: return "worse";
        case BaselineComparison::Outcome::NoSignificantDifference: break;
    }
    return "no significant difference";
}

ojson to_json(const ResurrectionLog& log) {
    ojson j = json_document(log.schema_version);
    j["command"] = "resurrect";
    j["complete"] = log.complete;
    j["recipe"] = to_json(log.recipe);
    j["seed"] = log.recipe.seed;
    j["threads"] = log.recipe.threads;
    j["data"] = {{"tokens", log.tokens}, {"tokens_hash", log.tokens_hash}, {"val_tokens", log.val_tokens},
                 {"val_tokens_hash", log.val_tokens_hash}, {"token_dtype", log.token_dtype}};
    ojson inputs = ojson::array();
    for (const auto& [f, h] : log.input_hashes) inputs.push_back({{"file", f}, {"content_hash", h}});
    j["inputs"] = inputs;
    j["windows"] = {{"claims", log.claim_windows}, {"selection", log.selection_windows}};
    j["budget_tokens"] = log.budget_tokens;
    j["start"] = to_json(log.start);
    ojson stages = ojson::array();
    for (const auto& s : log.stages) {
        ojson sj;
        sj["index"] = s.index;
        sj["stage"] = stage_name(s.stage.kind);
        sj["params"] = s.stage.params;
        sj["reason"] = s.stage.reason;
        sj["input"] = s.input;
        sj["output"] = s.output;
        sj["accepted"] = s.accepted;
        sj["decisions"] = s.decisions;
        sj["seconds"] = s.seconds;
        sj["after"] = to_json(s.after);
        if (s.search) sj["search"] = to_json(*s.search);
        stages.push_back(sj);
    }
    j["stages"] = stages;
    ojson baselines = ojson::array();
    for (const auto& b : log.baselines) baselines.push_back({{"name", b.name}, {"description", b.description}, {"measurement", to_json(b.measurement)}});
    j["baselines"] = baselines;
    j["output"] = log.output;
    j["output_hash"] = log.output_hash;
    j["claims"] = log.claims;
    ojson comparisons = ojson::array();
    for (const auto& c : log.comparisons) comparisons.push_back(to_json(c));
    j["comparisons"] = comparisons;
    j["best_baseline"] = log.best_baseline ? to_json(*log.best_baseline) : ojson(nullptr);
    j["beats_best_baseline"] = log.beats_best_baseline;
    if (log.control)
        j["control"] = {{"checkpoint", log.control->checkpoint},
                        {"measurement", to_json(log.control->measurement)},
                        {"comparison", to_json(log.control->comparison)},
                        {"recovered", std::isfinite(log.control->recovered) ? ojson(log.control->recovered) : ojson(nullptr)},
                        {"tokens", log.control->tokens},
                        {"summary", log.control->summary}};
    else
        j["control"] = nullptr;
    j["seconds"] = log.seconds;
    return j;
}

ResurrectionLog resurrection_log_from_json(const nlohmann::json& j, const std::string& origin) {
    try {
        ResurrectionLog log;
        log.schema_version = j.at("schema_version").get<int>();
        if (log.schema_version != kResurrectionSchemaVersion)
            throw Error(origin + ": schema_version " + std::to_string(log.schema_version) + " (this bitfsck reads " +
                        std::to_string(kResurrectionSchemaVersion) + ")");
        log.complete = j.at("complete").get<bool>();
        log.recipe = recipe_from_json(j.at("recipe"), origin);
        const auto& d = j.at("data");
        log.tokens = d.at("tokens").get<std::string>();
        log.tokens_hash = d.at("tokens_hash").get<std::string>();
        log.val_tokens = d.at("val_tokens").get<std::string>();
        log.val_tokens_hash = d.at("val_tokens_hash").get<std::string>();
        log.token_dtype = d.at("token_dtype").get<std::string>();
        for (const auto& i : j.at("inputs")) log.input_hashes.emplace_back(i.at("file").get<std::string>(), i.at("content_hash").get<std::string>());
        if (j.contains("windows")) {
            log.claim_windows = j["windows"].value("claims", std::int64_t{0});
            log.selection_windows = j["windows"].value("selection", std::int64_t{0});
        }
        log.budget_tokens = j.value("budget_tokens", std::int64_t{0});
        log.start = measurement_from(j.at("start"));
        for (const auto& sj : j.at("stages")) {
            StageRecord s;
            s.index = sj.at("index").get<std::size_t>();
            s.stage.kind = parse_stage_kind(sj.at("stage").get<std::string>());
            s.stage.params = sj.at("params");
            s.stage.reason = sj.at("reason").get<std::string>();
            s.input = sj.at("input").get<std::string>();
            s.output = sj.at("output").get<std::string>();
            s.accepted = sj.at("accepted").get<bool>();
            s.decisions = sj.at("decisions").get<std::vector<std::string>>();
            s.seconds = sj.at("seconds").get<double>();
            s.after = measurement_from(sj.at("after"));
            if (sj.contains("search") && sj["search"].is_object()) s.search = search_from(sj["search"]);
            log.stages.push_back(std::move(s));
        }
        for (const auto& b : j.at("baselines"))
            log.baselines.push_back({b.at("name").get<std::string>(), b.at("description").get<std::string>(), measurement_from(b.at("measurement"))});
        log.output = j.at("output").get<std::string>();
        log.output_hash = j.at("output_hash").get<std::string>();
        log.claims = j.at("claims").get<std::vector<std::string>>();
        if (j.contains("comparisons"))
            for (const auto& c : j["comparisons"]) log.comparisons.push_back(comparison_from(c));
        if (j.contains("best_baseline") && j["best_baseline"].is_object()) log.best_baseline = comparison_from(j["best_baseline"]);
        log.beats_best_baseline = j.value("beats_best_baseline", true);
        if (j.contains("control") && j["control"].is_object()) {
            const auto& c = j["control"];
            ControlRecord r;
            r.checkpoint = c.at("checkpoint").get<std::string>();
            r.measurement = measurement_from(c.at("measurement"));
            r.comparison = comparison_from(c.at("comparison"));
            r.recovered = c.at("recovered").is_number() ? c["recovered"].get<double>() : std::nan("");
            r.tokens = c.at("tokens").get<std::int64_t>();
            r.summary = c.value("summary", std::string());
            log.control = r;
        }
        log.seconds = j.at("seconds").get<double>();
        return log;
    } catch (const nlohmann::json::exception& e) {
        throw Error(origin + ": not a resurrection log (" + e.what() + ")");
    }
}

}  // namespace bitfsck::repair
