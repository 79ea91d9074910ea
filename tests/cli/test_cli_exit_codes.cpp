// The README's exit-code table, command by command: a missing input is 2, an output that cannot
// be written is 2 with one line and nothing under its name (an unwritable folder, the output being
// an input, a full disk), usage errors are 1 — never an abort.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>

#include "support.hpp"

using namespace bitfsck;
namespace fs = std::filesystem;

namespace {

std::string bitfsck_cmd(const std::string& args) { return test::quote(test::cli_path()) + " " + args; }
fs::path sample() { return test::samples_dir() / "run/step_000050.pt"; }
fs::path collapsed() { return test::samples_dir() / "run/step_000350.pt"; }

// One line on stderr, naming `subject`, and no "terminate called" or sanitizer noise.
void check_one_line_error(const test::CommandResult& r, const std::string& subject) {
    INFO(r.err);
    CHECK(r.err.find(subject) != std::string::npos);
    CHECK(r.err.find("terminate") == std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
}

// Nothing under `name` and no temporary sibling left in its folder.
void check_nothing_written(const fs::path& name) {
    CHECK_FALSE(fs::exists(name));
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(name.parent_path(), ec))
        CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);
}

// The command run with a file-size limit of `kb` KB (and SIGXFSZ ignored, so writes fail with
// EFBIG as on a full disk instead of killing the process).
test::CommandResult run_with_full_disk(const std::string& args, int kb) {
    test::TempDir wrapper;
    test::write_bytes(wrapper / "limit.sh", "trap '' XFSZ\nulimit -f " + std::to_string(kb) + "\nexec \"$@\"\n");
    return test::run_command("bash " + test::quote(wrapper / "limit.sh") + " " + bitfsck_cmd(args));
}

}  // namespace

TEST_CASE("a missing input exits 2 with one line naming it, in every command", "[exit_codes]") {
    test::TempDir tmp;
    const std::string missing = (tmp / "nothing-here.pt").string();
    for (const std::string& args : {"inspect " + missing, "scan " + missing, "timeline " + missing,
                                    "diff " + missing + " " + sample().string(), "convert " + missing + " -o " + (tmp / "x.pt").string(),
                                    "repair svd " + missing + " -o " + (tmp / "x.pt").string() + " --rank 2",
                                    "repair pick " + missing + " -o " + (tmp / "x.pt").string(), "plan " + missing}) {
        INFO(args);
        auto r = test::run_command(bitfsck_cmd(args));
        CHECK(r.exit_code == 2);
        check_one_line_error(r, "nothing-here.pt");
    }
}

TEST_CASE("an output that cannot be written exits 2 with one line, and nothing is left under its name", "[exit_codes]") {
    test::TempDir tmp;
    test::write_bytes(tmp / "a-file", "x");
    const fs::path input = tmp / "in.pt";
    fs::copy_file(sample(), input);
    const std::string before = test::read_text(input);
    struct Case {
        std::string args;
        fs::path output;  // "" when the output is the input itself
        std::string subject;
    };
    const std::vector<Case> cases = {
        {"scan " + input.string() + " --h5 " + (tmp / "no-such-folder/r.h5").string(), tmp / "no-such-folder/r.h5", "r.h5"},
        {"scan " + input.string() + " --h5 " + input.string(), "", "in.pt"},
        {"scan " + input.string() + " --h5 " + tmp.path().string(), "", tmp.path().string()},
        {"scan " + input.string() + " --sidecar --out-dir " + (tmp / "a-file").string(), "", "a-file"},
        {"timeline " + test::samples_dir().string() + "/run --h5 " + (tmp / "no-such-folder/t.h5").string(), tmp / "no-such-folder/t.h5", "t.h5"},
        {"convert " + input.string() + " -o " + (tmp / "no-such-folder/x.safetensors").string(), tmp / "no-such-folder/x.safetensors",
         "x.safetensors"},
        {"convert " + input.string() + " -o " + input.string(), "", "in.pt"},
        {"repair svd " + input.string() + " --rank 2 --roles mlp -o " + (tmp / "a-file/x.pt").string(), tmp / "a-file/x.pt", "x.pt"},
        {"repair svd " + input.string() + " --rank 2 --roles mlp -o " + input.string(), "", "in.pt"},
    };
    for (const auto& c : cases) {
        INFO(c.args);
        auto r = test::run_command(bitfsck_cmd(c.args));
        CHECK(r.exit_code == 2);
        check_one_line_error(r, c.subject);
        if (!c.output.empty() && fs::exists(c.output.parent_path())) check_nothing_written(c.output);
        CHECK(test::read_text(input) == before);
    }
}

TEST_CASE("a full disk is an output error: exit 2, one line, no partial file, no temporary left", "[exit_codes]") {
    test::TempDir tmp;
    const fs::path input = collapsed();
    struct Case {
        std::string args;
        fs::path output;
    };
    const std::vector<Case> cases = {
        {"scan " + input.string() + " --h5 " + (tmp / "r.h5").string(), tmp / "r.h5"},
        {"scan " + input.string() + " --sidecar --out-dir " + tmp.path().string(), tmp / "step_000350.pt.health.json"},
        {"convert " + input.string() + " -o " + (tmp / "x.safetensors").string(), tmp / "x.safetensors"},
        {"repair svd " + input.string() + " --rank 2 --roles mlp -o " + (tmp / "svd.pt").string(), tmp / "svd.pt"},
    };
    for (const auto& c : cases) {
        INFO(c.args);
        auto r = run_with_full_disk(c.args, 4);
        CHECK(r.exit_code == 2);
        check_one_line_error(r, c.output.filename().string());
        check_nothing_written(c.output);
    }
}

// A tmpfs mounted over `dir` for the test's lifetime (read-only, or a few KB to fill): a real file
// system that refuses the write, as a full disk or a read-only share does. Needs mount rights
// (root in CI's container); without them the tests that use it say so and pass nothing off.
class TmpfsMount {
public:
    TmpfsMount(const fs::path& dir, const std::string& options) : dir_(dir) {
        fs::create_directories(dir_);
        mounted_ = std::system(("mount -t tmpfs -o " + options + " tmpfs " + test::quote(dir_) + " 2>/dev/null").c_str()) == 0;
    }
    ~TmpfsMount() {
        if (mounted_) (void)std::system(("umount " + test::quote(dir_)).c_str());
    }
    bool mounted() const { return mounted_; }

private:
    fs::path dir_;
    bool mounted_ = false;
};

TEST_CASE("a read-only folder and a file system that fills up are output errors: exit 2, one line, nothing left", "[exit_codes]") {
    test::TempDir tmp;
    const fs::path input = collapsed();
    const std::string before = test::read_text(input);
    for (const std::string options : {"ro,size=1m", "size=12k"}) {
        const fs::path dir = tmp / (options[0] == 'r' ? "read-only" : "small");
        TmpfsMount mount(dir, options);
        if (!mount.mounted()) {
            WARN("cannot mount a tmpfs here (no mount rights): " << options << " not tested");
            continue;
        }
        struct Case {
            std::string args;
            fs::path output;
        };
        const std::vector<Case> cases = {
            {"scan " + input.string() + " --h5 " + (dir / "r.h5").string(), dir / "r.h5"},
            {"scan " + input.string() + " --sidecar --out-dir " + dir.string(), dir / "step_000350.pt.health.json"},
            {"timeline " + test::samples_dir().string() + "/run --h5 " + (dir / "t.h5").string(), dir / "t.h5"},
            {"convert " + input.string() + " -o " + (dir / "x.safetensors").string(), dir / "x.safetensors"},
            {"repair svd " + input.string() + " --rank 2 --roles mlp -o " + (dir / "svd.pt").string(), dir / "svd.pt"},
            {"repair pick " + test::samples_dir().string() + "/run -o " + (dir / "pick.pt").string(), dir / "pick.pt"},
        };
        for (const auto& c : cases) {
            INFO(options << ": " << c.args);
            auto r = test::run_command(bitfsck_cmd(c.args));
            CHECK(r.exit_code == 2);
            check_one_line_error(r, c.output.filename().string());
            check_nothing_written(c.output);
        }
        CHECK(fs::is_empty(dir));
        CHECK(test::read_text(input) == before);
    }
}

TEST_CASE("usage: a mistyped command is named, a diff that compares nothing is no success", "[exit_codes]") {
    auto r = test::run_command(bitfsck_cmd("scna " + sample().string()));
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("'scna' is not a bitfsck command; did you mean 'scan'?") != std::string::npos);
    r = test::run_command(bitfsck_cmd("diff " + sample().string() + " " + (test::samples_dir() / "dtypes.pt").string()));
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("no tensor in common") != std::string::npos);
    r = test::run_command(bitfsck_cmd("repair svd " + sample().string() + " -o /tmp/never.pt --rank 0"));
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("must be above 0") != std::string::npos);
    CHECK(r.err.find("e+308") == std::string::npos);
}

TEST_CASE("repair says when its output is still collapsed, with the scan's exit code", "[exit_codes]") {
    test::TempDir tmp;
    auto r = test::run_command(bitfsck_cmd("repair svd " + collapsed().string() + " --rank 1 -o " + (tmp / "svd.pt").string()));
    INFO(r.out << r.err);
    CHECK(r.exit_code == 5);
    CHECK(r.out.find("the output is still collapsed") != std::string::npos);
    CHECK(fs::exists(tmp / "svd.pt"));
}

TEST_CASE("quiet mode leaves results and errors, and nothing else, on the terminal", "[exit_codes]") {
    auto r = test::run_command(bitfsck_cmd("scan --quiet " + (test::samples_dir() / "packed/tq2_0.gguf").string()));
    CHECK(r.exit_code == 0);
    CHECK(r.err.empty());
    CHECK(r.out.find("verdict:") != std::string::npos);
    r = test::run_command(bitfsck_cmd("--quiet scan " + sample().string()));
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("verdict: healthy") != std::string::npos);
}
