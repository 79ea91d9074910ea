// kill -9 at random moments and in the middle of a save: the output's final name holds nothing
// or a complete file equal to an uninterrupted run's, the input is untouched, and running the
// same command again succeeds whatever the killed run left behind.
#include <catch2/catch.hpp>

#include <filesystem>
#include <random>

#include "kill_support.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using namespace bitfsck::test;

namespace {

struct Case {
    std::string name;
    std::vector<std::string> args;  // after the executable; OUT stands for the output's path
    std::string output;             // the output's file name in the case's folder
    bool bytes_equal = true;        // the output is a pure function of the input (else: compared as documents)
};

std::vector<std::string> with_output(const Case& c, const fs::path& folder) {
    std::vector<std::string> argv{cli_path().string()};
    for (const auto& a : c.args) argv.push_back(a == "OUT" ? (folder / c.output).string() : a == "DIR" ? folder.string() : a);
    return argv;
}

// The same document apart from the bytes HDF5 leaves free: opened by h5py, same groups and datasets.
std::string h5_listing(const fs::path& file) {
    const auto r = run_command(python() + " -c \"import h5py,sys; f=h5py.File(sys.argv[1],'r'); n=[]; f.visit(n.append); print(sorted(n))\" " +
                               quote(file));
    return r.exit_code == 0 ? r.out : "unreadable: " + r.err;
}

std::string document(const Case& c, const fs::path& file) {
    if (c.output.size() > 3 && c.output.substr(c.output.size() - 3) == ".h5") return h5_listing(file);
    auto j = nlohmann::json::parse(read_text(file));
    return j.dump();
}

}  // namespace

TEST_CASE("kill -9 of scan --h5/--sidecar, convert and repair leaves nothing or a complete output, and a rerun succeeds", "[cli][kill]") {
    const fs::path input = samples_dir() / "run" / "step_000350.pt";
    const std::string input_bytes = read_text(input);
    const std::vector<Case> cases = {
        {"scan --h5", {"scan", input.string(), "--h5", "OUT"}, "report.h5", false},
        {"scan --sidecar", {"scan", input.string(), "--sidecar", "--out-dir", "DIR"}, "step_000350.pt.health.json", false},
        {"convert", {"convert", input.string(), "-o", "OUT"}, "converted.safetensors", true},
        {"repair svd", {"repair", "svd", input.string(), "--rank", "2", "--roles", "mlp", "-o", "OUT"}, "svd.pt", true},
    };
    for (const Case& c : cases) {
        SECTION(c.name) {
            TempDir ref;
            const KillOutcome straight = spawn_and_kill(with_output(c, ref.path()), [] { return false; });
            REQUIRE_FALSE(straight.killed);
            REQUIRE(fs::exists(ref / c.output));
            const std::string expected = c.bytes_equal ? read_text(ref / c.output) : document(c, ref / c.output);
            const auto took = std::chrono::duration_cast<std::chrono::microseconds>(straight.ran);

            std::mt19937 seeds(20261203);
            int killed = 0, killed_saving = 0;
            for (int attempt = 0; attempt < 7; ++attempt) {
                TempDir dir;
                const bool mid_save = attempt >= 5;  // the last two: the moment a temporary output exists
                const auto delay = std::chrono::microseconds(std::uniform_int_distribution<long long>(0, took.count())(seeds));
                const KillOutcome k = mid_save ? spawn_and_kill(with_output(c, dir.path()), while_saving(dir.path()), std::chrono::minutes(30),
                                                                std::chrono::microseconds(0))
                                               : spawn_and_kill(with_output(c, dir.path()), after(delay));
                INFO(c.name << " attempt " << attempt << (mid_save ? " (mid-save)" : " after " + std::to_string(delay.count()) + " us"));
                killed += k.killed;
                killed_saving += k.killed && mid_save;
                CHECK(read_text(input) == input_bytes);
                const fs::path out = dir / c.output;
                if (fs::exists(out)) CHECK((c.bytes_equal ? read_text(out) : document(c, out)) == expected);
                // Running the command again finishes it, over whatever temporaries the kill left.
                const KillOutcome again = spawn_and_kill(with_output(c, dir.path()), [] { return false; });
                CHECK(again.exit_code == straight.exit_code);
                REQUIRE(fs::exists(out));
                CHECK((c.bytes_equal ? read_text(out) : document(c, out)) == expected);
            }
            // The random moments must have caught the command at work, and a save under way at least once.
            CHECK(killed >= 3);
            CHECK(killed_saving >= 1);
        }
    }
}
