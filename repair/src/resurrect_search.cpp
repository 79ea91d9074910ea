// Successive halving over candidate recipes, and the validation split that keeps its scores off
// the windows the claims are made on.
#include "resurrect_search.hpp"

#include <algorithm>
#include <fstream>
#include <numeric>

#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/text.hpp"
#include "bitfsck/model/tokens.hpp"

namespace bitfsck::repair::detail {

namespace {

// Token ids as the model tools read them (raw u16/u32 or .npy, checked the same way).
std::vector<std::int64_t> read_token_ids(const fs::path& path, const std::string& dtype) {
    return model::read_token_file(path, model::parse_token_dtype(dtype));
}

// A 1-D int64 .npy (version 1.0, header padded to 64 bytes): the model tools detect it by its magic,
// whatever --token-dtype says about the raw training tokens.
std::string npy_int64(const std::int64_t* ids, std::size_t n) {
    std::string header = "{'descr': '<i8', 'fortran_order': False, 'shape': (" + std::to_string(n) + ",), }";
    while ((10 + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    std::string out = "\x93NUMPY";
    out += '\x01';
    out += '\x00';
    out += static_cast<char>(header.size() & 0xff);
    out += static_cast<char>((header.size() >> 8) & 0xff);
    out += header;
    out.append(reinterpret_cast<const char*>(ids), n * sizeof(std::int64_t));
    return out;
}

std::int64_t windows_in(std::int64_t tokens, std::int64_t seq_len) { return tokens > seq_len ? (tokens - 1) / seq_len : 0; }

std::optional<nlohmann::json> read_json_file(const fs::path& p) {
    std::ifstream in(p);
    if (!in) return std::nullopt;
    auto j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    return j;
}

// The selection loss the fine-tune evaluated at `step` (each rung ends with a save, which evaluates).
std::optional<double> loss_at(const fs::path& metrics, std::int64_t step) {
    std::ifstream in(metrics);
    std::optional<double> loss;
    for (std::string line; std::getline(in, line);) {
        const auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.contains("step") || j["step"] != step || !j.contains("val_loss") || !j["val_loss"].is_number()) continue;
        loss = j["val_loss"].get<double>();
    }
    return loss;
}

}  // namespace

ValidationSplit split_validation(const fs::path& val, const std::string& token_dtype, std::int64_t seq_len, double fraction,
                                 std::int64_t eval_windows) {
    ValidationSplit s;
    const auto n = static_cast<std::int64_t>(read_token_ids(val, token_dtype).size());
    s.windows = windows_in(n, seq_len);
    if (fraction <= 0) {
        s.claim_windows = eval_windows > 0 ? std::min(eval_windows, s.windows) : s.windows;
        return s;
    }
    const auto held = static_cast<std::int64_t>(static_cast<double>(s.windows) * fraction);
    const std::int64_t claims = s.windows - held;
    s.claim_windows = eval_windows > 0 ? std::min(eval_windows, claims) : claims;
    // One token after the claims' last target: no token is in both.
    s.selection_first_token = claims * seq_len + 1;
    s.selection_windows = windows_in(n - s.selection_first_token, seq_len);
    if (claims < 2 || s.selection_windows < 1)
        throw Error(val.string() + ": " + std::to_string(s.windows) + " validation windows of " + std::to_string(seq_len) +
                    " tokens are too few for a search (it needs some to score candidates and at least two for the claims)");
    return s;
}

double selection_fraction(const Recipe& recipe) {
    for (const auto& s : recipe.stages)
        if (s.kind == StageKind::Search) return s.params.value("selection_fraction", 0.25);
    return 0;
}

SearchOutcome run_search(const Runner& run, const nlohmann::json& p, const fs::path& dir, const ValidationSplit& split) {
    const Recipe& recipe = run.recipe;
    fs::create_directories(dir);
    const auto rungs = p.at("rungs").get<std::vector<std::int64_t>>();
    const int eta = std::max(2, p.value("eta", 3));
    if (rungs.empty() || !std::is_sorted(rungs.begin(), rungs.end()) || rungs.front() < 1)
        throw Error("search: 'rungs' must be increasing step counts, the last the budget");
    const auto& cand_json = p.at("candidates");
    if (cand_json.empty()) throw Error("search: no candidates");

    // The selection windows, as their own token file.
    const fs::path selection = dir / "selection_tokens.npy";
    {
        const auto ids = read_token_ids(run.opt.val_tokens, run.opt.token_dtype);
        const auto first = static_cast<std::size_t>(split.selection_first_token);
        if (first >= ids.size()) throw Error("search: no validation tokens left for the selection windows");
        io::write_file_atomically(selection, npy_int64(ids.data() + first, ids.size() - first));
    }
    // The graft every "graft" candidate starts from, made once.
    fs::path graft;
    if (p.contains("graft")) {
        const auto& g = p["graft"];
        TensorSelection sel;
        if (g.contains("roles")) sel.roles = g["roles"].get<std::vector<std::string>>();
        if (g.contains("layers") && !g["layers"].get<std::string>().empty()) sel.layers = parse_layer_ranges(g["layers"].get<std::string>());
        const fs::path base = g.at("base").get<std::string>();
        graft = dir / "graft" / ("out" + base.extension().string());
        fs::create_directories(graft.parent_path());
        if (!fs::exists(graft)) graft_checkpoint(base, g.at("donor").get<std::string>(), sel, graft);
    }

    SearchOutcome outcome;
    SearchRecord& rec = outcome.record;
    rec.rung_steps = rungs;
    rec.selection_windows = split.selection_windows;
    struct Candidate {
        std::size_t index;
        fs::path start, folder;
        nlohmann::json finetune;
        Runner::FinetuneJob first;  // the first rung's job (its options document)
        std::int64_t reached = 0;
    };
    std::vector<Candidate> cands;
    for (std::size_t i = 0; i < cand_json.size(); ++i) {
        const auto& c = cand_json[i];
        CandidateResult r;
        r.name = c.value("name", "candidate " + std::to_string(i + 1));
        r.start = c.at("start").get<std::string>();
        if (r.start == "graft" && graft.empty()) throw Error("search: candidate '" + r.name + "' starts from the graft, but the search has none");
        Candidate k;
        k.index = i;
        k.start = r.start == "graft" ? graft : fs::path(r.start);
        k.folder = dir / ((i + 1 < 10 ? "candidate_0" : "candidate_") + std::to_string(i + 1));
        k.finetune = c.at("finetune");
        k.finetune["steps"] = rungs.front();
        rec.candidates.push_back(r);
        cands.push_back(std::move(k));
    }

    std::vector<std::size_t> alive(cands.size());
    std::iota(alive.begin(), alive.end(), 0);
    for (std::size_t k = 0; k < rungs.size(); ++k) {
        const std::int64_t steps = rungs[k];
        std::vector<Runner::FinetuneJob> jobs;
        for (std::size_t i : alive) {
            Candidate& c = cands[i];
            const std::string label = "search rung " + std::to_string(k + 1) + "/" + std::to_string(rungs.size()) + " " + c.folder.filename().string();
            c.first = run.finetune_job(c.start, c.finetune, c.folder, label, selection);
            const auto state = read_json_file(c.first.out.string() + ".state.json");
            const std::int64_t saved = state && state->contains("step") ? (*state)["step"].get<std::int64_t>() : 0;
            if (saved >= steps && loss_at(c.first.metrics, steps)) continue;  // done before (an interrupted search, resumed)
            Runner::FinetuneJob j = c.first;
            j.steps = steps;
            // Past the first rung (or an interrupted one), the same fine-tune continues to this rung's steps.
            if (k > 0 || (state && saved > 0))
                j.job = {{"finetune", "--resume", "-o", c.first.out.string(), "--resume-steps", std::to_string(steps), "--json"}, c.folder, "finetune"};
            jobs.push_back(j);
        }
        if (!jobs.empty()) run.finetune_all(jobs);
        std::vector<std::pair<double, std::size_t>> scored;
        for (std::size_t i : alive) {
            const auto loss = loss_at(cands[i].first.metrics, steps);
            if (!loss) throw Error("search: " + cands[i].first.metrics.string() + " has no validation loss at step " + std::to_string(steps));
            rec.candidates[i].rungs.emplace_back(steps, *loss);
            cands[i].reached = steps;
            scored.emplace_back(*loss, i);
        }
        std::sort(scored.begin(), scored.end());  // ties: the earlier candidate, so the search is deterministic
        const bool last = k + 1 == rungs.size();
        const std::size_t keep = last ? 1 : std::max<std::size_t>(1, (scored.size() + eta - 1) / eta);
        const double best = scored.front().first;
        alive.clear();
        for (std::size_t r = 0; r < scored.size(); ++r) {
            const auto [loss, i] = scored[r];
            if (r < keep) {
                alive.push_back(i);
                continue;
            }
            rec.candidates[i].note = "stopped after " + std::to_string(steps) + " steps: selection loss " + fmt("%.4f", loss) + ", " +
                                     fmt("%.4f", loss - best) + " nats behind the best, " + rec.candidates[scored.front().second].name;
        }
        if (last) break;
        // One left before the last rung: it still trains the whole budget, as the baselines do.
        if (alive.size() == 1) k = rungs.size() - 2;
    }
    const std::size_t w = alive.front();
    CandidateResult& winner = rec.candidates[w];
    winner.winner = true;
    const double win_loss = winner.rungs.back().second;
    // The runner-up: of the others that went furthest, the best at the last rung they reached.
    std::string runner_up;
    double gap = 0;
    std::size_t furthest = 0;
    for (std::size_t i = 0; i < rec.candidates.size(); ++i)
        if (i != w) furthest = std::max(furthest, rec.candidates[i].rungs.size());
    for (std::size_t i = 0; i < rec.candidates.size() && furthest > 0; ++i) {
        const auto& c = rec.candidates[i];
        if (i == w || c.rungs.size() != furthest) continue;
        const double d = c.rungs.back().second - winner.rungs[furthest - 1].second;
        if (runner_up.empty() || d < gap) runner_up = c.name, gap = d;
    }
    for (const auto& c : cands) rec.tokens += c.reached * recipe.batch * recipe.seq_len;
    rec.winner = winner.name;
    winner.note = "won: selection loss " + fmt("%.4f", win_loss) + " after " + std::to_string(winner.rungs.back().first) + " steps" +
                  (runner_up.empty() ? std::string() : ", " + fmt("%.4f", gap) + " nats ahead of " + runner_up);
    rec.why = "search: " + std::to_string(rec.candidates.size()) + " candidates by successive halving (η = " + std::to_string(eta) + ", rungs of " +
              [&] {
                  std::string s;
                  for (auto x : rungs) s += (s.empty() ? "" : ", ") + std::to_string(x);
                  return s;
              }() +
              " steps) on " + std::to_string(split.selection_windows) + " selection windows; " + winner.name + " " + winner.note + "; " +
              std::to_string(rec.tokens) + " tokens of fine-tuning in all";
    outcome.output = cands[w].first.out;
    return outcome;
}

}  // namespace bitfsck::repair::detail

namespace bitfsck::repair {

std::optional<double> selection_loss_at(const CandidateResult& c, std::int64_t steps) {
    for (const auto& [at, loss] : c.rungs)
        if (at == steps) return loss;
    return std::nullopt;
}

}  // namespace bitfsck::repair
