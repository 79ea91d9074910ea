#pragma once
// A search stage: candidate recipes (a start and a fine-tune each) chosen by successive halving,
// scored on validation windows that no claim uses.
#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "bitfsck/repair/resurrect.hpp"
#include "resurrect_runner.hpp"

namespace bitfsck::repair::detail {

// The validation file cut in two at a window boundary: the first `claim_windows` windows (of
// seq_len + 1 tokens, every seq_len tokens, as perplexity and finetune read them) for every
// measurement and claim, and the tokens after them for scoring a search's candidates.
struct ValidationSplit {
    std::int64_t windows = 0;            // in the whole file
    std::int64_t claim_windows = 0;      // the first ones
    std::int64_t selection_windows = 0;  // in the selection tokens, after the claims' last token
    std::int64_t selection_first_token = 0;
};
// selection_fraction 0: no selection windows, the claims take eval_windows (0: all). Throws
// bitfsck::Error naming the file when it is too short for a search.
ValidationSplit split_validation(const std::filesystem::path& val, const std::string& token_dtype, std::int64_t seq_len,
                                 double selection_fraction, std::int64_t eval_windows);

// The selection fraction of the recipe's search stage, 0 without one.
double selection_fraction(const Recipe& recipe);

struct SearchOutcome {
    std::filesystem::path output;  // the winner, fine-tuned for the whole budget
    SearchRecord record;
};

// Runs the candidates of `params` (see RecipeStage) in dir/candidate_NN/: every candidate trains
// rungs[0] steps, the best 1/eta go on to rungs[1] steps (continuing where they stopped: the
// candidates' schedule is constant after warm-up, so a continued run is the run of that length),
// and so on; at the last rung the best one wins. Scores are the fine-tune's own validation loss on
// the selection tokens (written to dir/selection_tokens.npy). An interrupted search continues.
SearchOutcome run_search(const Runner& run, const nlohmann::json& params, const std::filesystem::path& dir, const ValidationSplit& split);

}  // namespace bitfsck::repair::detail
