// One CLI convention (README "Command-line conventions"), held for every subcommand by walking
// their help: an example, -o/--output for the output, -j/--threads for threads, --layers/--roles/
// --match together wherever tensors are chosen, --json where there is a result to print.
#include <catch2/catch.hpp>

#include <filesystem>
#include <regex>
#include <sstream>

#include "support.hpp"

using namespace bitfsck;
namespace fs = std::filesystem;

namespace {

std::string bitfsck_cmd(const std::string& args) { return test::quote(test::cli_path()) + " " + args; }

// The names under "SUBCOMMANDS:" in a help text.
std::vector<std::string> subcommands_in(const std::string& help) {
    std::vector<std::string> names;
    std::istringstream in(help);
    bool inside = false;
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("Subcommands:", 0) == 0 || line.rfind("SUBCOMMANDS:", 0) == 0) {
            inside = true;
            continue;
        }
        if (!inside) continue;
        std::smatch m;
        if (std::regex_match(line, m, std::regex("^  ([a-z][a-z0-9-]*)\\s.*"))) names.push_back(m[1]);
        else if (!line.empty() && line[0] != ' ') inside = false;
    }
    return names;
}

bool has(const std::string& help, const std::string& text) { return help.find(text) != std::string::npos; }

// Every subcommand path ("scan", "repair svd"), walked from the top-level help.
std::vector<std::string> every_command() {
    std::vector<std::string> out;
    for (const auto& name : subcommands_in(test::run_command(bitfsck_cmd("--help")).out)) {
        const auto sub = subcommands_in(test::run_command(bitfsck_cmd(name + " --help")).out);
        if (sub.empty()) out.push_back(name);
        for (const auto& s : sub) out.push_back(name + " " + s);
    }
    return out;
}

bool model_commands_built() { return fs::exists(test::cli_path().parent_path() / "bitfsck-model"); }

}  // namespace

TEST_CASE("every subcommand follows the CLI convention", "[conventions]") {
    const auto commands = every_command();
    REQUIRE(commands.size() >= 15);
    for (const auto& cmd : commands) {
        if (!model_commands_built() && (cmd == "induction" || cmd == "generate" || cmd == "perplexity" || cmd == "finetune")) continue;
        INFO(cmd);
        auto r = test::run_command(bitfsck_cmd(cmd + " --help"));
        REQUIRE(r.exit_code == 0);
        const std::string& help = r.out;
        CHECK((has(help, "Example:") || has(help, "Examples:")));
        // One spelling for each shared flag.
        if (has(help, "--output") || has(help, " -o")) CHECK(has(help, "-o,--output"));
        if (has(help, "threads")) CHECK(has(help, "-j,--threads"));
        if (has(help, "--layers") || has(help, "--roles") || has(help, "--match"))
            CHECK((has(help, "--layers") && has(help, "--roles") && has(help, "--match")));
        // Commands with a result to print can print it as JSON.
        if (cmd != "repair replay") CHECK(has(help, "--json"));
        // --quiet is global: every command takes it.
        auto q = test::run_command(bitfsck_cmd(cmd + " --quiet --help"));
        CHECK(q.exit_code == 0);
    }
}

TEST_CASE("every JSON document opens with schema_version and tool {name, version}", "[conventions]") {
    test::TempDir tmp;
    const std::string sample = (test::samples_dir() / "run/step_000050.pt").string();
    const std::string run = (test::samples_dir() / "run").string();
    const std::vector<std::pair<std::string, bool>> commands = {
        {"inspect --json " + sample, true},
        {"scan --json " + sample, true},
        {"timeline --json " + run, false},
        {"diff --json " + sample + " " + (test::samples_dir() / "run/step_000100.pt").string(), false},
        {"convert --json " + sample + " -o " + (tmp / "c.safetensors").string(), false},
        {"repair svd --json " + sample + " --rank 4 --roles mlp -o " + (tmp / "svd.pt").string(), false},
        {"plan --json " + run, false},
    };
    for (const auto& [args, array] : commands) {
        INFO(args);
        auto r = test::run_command(bitfsck_cmd(args));
        INFO(r.err);
        REQUIRE(!r.out.empty());
        nlohmann::ordered_json j = nlohmann::ordered_json::parse(r.out);
        if (array) j = j.at(0);
        REQUIRE(j.is_object());
        auto it = j.begin();
        CHECK(it.key() == "schema_version");
        ++it;
        CHECK(it.key() == "tool");
        CHECK(j["tool"]["name"] == "bitfsck");
        CHECK(j["tool"]["version"].is_string());
        // Security findings are "security" wherever they appear.
        CHECK_FALSE(j.contains("security_findings"));
    }
}
