// Every long library call stops when its progress callback returns false: promptly (at its next
// check), with Cancelled, and without writing anything under its output's name.
#include <catch2/catch.hpp>

#include <atomic>

#include "bitfsck/analysis/diff.hpp"
#include "bitfsck/analysis/run.hpp"
#include "bitfsck/io/convert.hpp"
#include "bitfsck/repair/repair.hpp"
#include "bitfsck/repair/resurrect.hpp"
#include "support.hpp"

using namespace bitfsck;
namespace fs = std::filesystem;

namespace {

fs::path run_dir() { return test::samples_dir() / "run"; }

// Lets `allowed` reports through, then says stop; counts the reports it saw after saying so.
struct StopAfter {
    int allowed;
    std::shared_ptr<std::atomic<int>> calls = std::make_shared<std::atomic<int>>(0);
    ProgressCallback callback() const {
        return [calls = calls, allowed = allowed](const Progress&) { return ++*calls <= allowed; };
    }
    int seen() const { return calls->load(); }
};

}  // namespace

TEST_CASE("scan, diff and a run scan stop at the first false", "[cancel]") {
    const io::Checkpoint a = io::Checkpoint::open(run_dir() / "step_000050.pt"), b = io::Checkpoint::open(run_dir() / "step_000350.pt");
    {
        StopAfter stop{1};
        analysis::ScanOptions o;
        o.threads = 2;
        o.progress = stop.callback();
        CHECK_THROWS_AS(analysis::scan_checkpoint(a, o), Cancelled);
        CHECK(stop.seen() <= 3);  // at most one more per worker thread
    }
    {
        StopAfter stop{0};
        CHECK_THROWS_AS(analysis::diff_checkpoints(a, b, analysis::Quantizer::BitNet, 2, stop.callback()), Cancelled);
        CHECK(stop.seen() <= 2);
    }
    {
        StopAfter stop{2};
        analysis::RunScanOptions o;
        o.scan.progress = stop.callback();
        CHECK_THROWS_AS(analysis::scan_run({run_dir().string()}, o), Cancelled);
        CHECK(stop.seen() <= 4);
    }
}

TEST_CASE("a cancelled repair, pick, conversion or plan writes nothing", "[cancel]") {
    test::TempDir tmp;
    {
        StopAfter stop{1};
        repair::RepairOptions o;
        o.step.kind = repair::StepKind::Inflate;
        o.progress = stop.callback();
        CHECK_THROWS_AS(repair::repair_checkpoint(run_dir() / "step_000350.pt", tmp / "out.pt", o), Cancelled);
        CHECK_FALSE(fs::exists(tmp / "out.pt"));
        CHECK_FALSE(fs::exists(tmp / "out.pt.repair.json"));
    }
    {
        StopAfter stop{3};
        repair::PickOptions o;
        o.scan.progress = stop.callback();
        CHECK_THROWS_AS(repair::pick_checkpoint({run_dir().string()}, tmp / "pick.pt", o), Cancelled);
        CHECK_FALSE(fs::exists(tmp / "pick.pt"));
    }
    {
        StopAfter stop{5};
        io::ConvertOptions o;
        o.target = io::ConvertTarget::Safetensors;
        o.progress = stop.callback();
        const io::Checkpoint c = io::Checkpoint::open(run_dir() / "step_000350.pt");
        CHECK_THROWS_AS(io::convert_checkpoint(c, tmp / "c.safetensors", o), Cancelled);
        CHECK(stop.seen() == 6);
        CHECK(fs::is_empty(tmp.path()));
    }
    {
        StopAfter stop{2};
        repair::PlanOptions o;
        o.progress = stop.callback();
        CHECK_THROWS_AS(repair::plan_resurrection({run_dir().string()}, o), Cancelled);
    }
    CHECK(fs::is_empty(tmp.path()));
}
