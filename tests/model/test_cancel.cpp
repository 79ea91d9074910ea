// Every long model call takes the one ProgressCallback (io/progress.hpp): it reports in its own
// unit, and a false return stops it at its next check. The read-only passes (induction,
// perplexity, generate) throw Cancelled; a fine-tune stops at a step boundary and keeps a
// resumable save instead, since an hour of training must not be thrown away.
#include <catch2/catch.hpp>

#include "bitfsck/model/finetune.hpp"
#include "bitfsck/model/generate.hpp"
#include "bitfsck/model/induction.hpp"
#include "bitfsck/model/perplexity.hpp"
#include "support.hpp"

using namespace bitfsck;
using namespace bitfsck::model;
namespace fs = std::filesystem;

namespace {
fs::path run_dir() { return test::samples_dir() / "run"; }

// Counts the calls and asks to stop at the `stop_at`-th; records the units and totals it saw.
struct StopAfter {
    int stop_at = 1;
    int calls = 0;
    std::vector<Progress> seen;
    ProgressCallback callback() {
        return [this](const Progress& p) {
            seen.push_back(p);
            return ++calls < stop_at;
        };
    }
};
}  // namespace

TEST_CASE("induction reports windows and stops with Cancelled when asked") {
    const auto ck = io::Checkpoint::open(test::samples_dir() / "models" / "induction_trained.pt");
    InductionOptions o;
    o.batch = 2;  // rows per forward pass; the random probe has `batch` rows in all
    o.tokens_file = run_dir() / "val.bin";
    o.batches = 8;
    o.seq_len = 32;
    StopAfter all{1000};
    o.progress = all.callback();
    run_induction(ck, o);
    REQUIRE_FALSE(all.seen.empty());
    CHECK(all.seen.back().unit == ProgressUnit::Windows);
    CHECK(all.seen.back().done == 8);
    CHECK(all.seen.back().total == 8);

    StopAfter stop{2};
    o.progress = stop.callback();
    CHECK_THROWS_AS(run_induction(ck, o), Cancelled);
    CHECK(stop.calls == 2);  // no forward pass after the refusal
}

TEST_CASE("perplexity reports windows and stops with Cancelled when asked") {
    const auto ck = io::Checkpoint::open(run_dir() / "step_000350.pt");
    PerplexityOptions o;
    o.tokens_file = run_dir() / "val.bin";
    o.seq_len = 32;
    o.batch = 4;
    o.max_windows = 16;
    StopAfter all{1000};
    o.progress = all.callback();
    const auto full = run_perplexity(ck, o);
    CHECK(full.windows == 16);
    CHECK(all.seen.back().unit == ProgressUnit::Windows);
    CHECK(all.seen.back().done == 16);

    StopAfter stop{3};
    o.progress = stop.callback();
    CHECK_THROWS_AS(run_perplexity(ck, o), Cancelled);
    CHECK(stop.calls == 3);
    CHECK(stop.seen.back().done < 16);
}

TEST_CASE("generate reports tokens and stops with Cancelled when asked") {
    const auto ck = io::Checkpoint::open(run_dir() / "step_000050.pt");
    GenerateOptions o;
    o.prompt = "1 2 3";
    o.max_new_tokens = 12;
    o.stop_at_eos = false;
    StopAfter stop{5};
    o.progress = stop.callback();
    CHECK_THROWS_AS(run_generate(ck, o), Cancelled);
    CHECK(stop.calls == 5);
    CHECK(stop.seen.back().unit == ProgressUnit::Tokens);
    CHECK(stop.seen.back().total == 12);
}

TEST_CASE("a fine-tune asked to stop saves where it stopped and says so") {
    test::TempDir tmp;
    FinetuneOptions o;
    o.input = run_dir() / "step_000050.pt";
    o.output = tmp / "out.pt";
    o.tokens = run_dir() / "train.bin";
    o.val_tokens = run_dir() / "val.bin";
    o.val_windows = 4;
    o.seq_len = 32, o.batch = 2, o.steps = 20;
    StopAfter stop{4};  // the call before the first step, then steps 1, 2, 3
    o.progress = stop.callback();
    const FinetuneResult r = run_finetune(o);
    CHECK(r.stopped_early);
    CHECK(r.steps_done == 3);
    CHECK(stop.calls == 4);
    CHECK(stop.seen.back().unit == ProgressUnit::Steps);
    CHECK(stop.seen.back().total == 20);
    CHECK(stop.seen.back().label.rfind("loss ", 0) == 0);
    // A complete, resumable save of step 3.
    CHECK(test::read_json(tmp / "out.pt.state.json")["step"] == 3);
    CHECK(io::Checkpoint::open(tmp / "out.pt").state_dict_tensors().size() > 0);

    // Asked before the first step: nothing trained, nothing written under the output's name.
    StopAfter at_once{1};
    o.output = tmp / "never.pt";
    o.progress = at_once.callback();
    const FinetuneResult none = run_finetune(o);
    CHECK(none.steps_done == 0);
    CHECK_FALSE(fs::exists(tmp / "never.pt"));
}
