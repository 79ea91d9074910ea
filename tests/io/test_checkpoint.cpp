// Every sample checkpoint written by torch reads back with exactly the values torch computed
// (sample_ckpts/<name>.expected.json, written by sample_ckpts/make_samples.py).
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>

#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/error.hpp"
#include "support.hpp"

using namespace bitfsck;
using json = nlohmann::ordered_json;
namespace fs = std::filesystem;

namespace {

std::vector<fs::path> sample_files() {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(test::samples_dir()))
        if (e.path().string().ends_with(".expected.json")) {
            auto name = e.path().filename().string();
            out.push_back(e.path().parent_path() / name.substr(0, name.size() - std::string(".expected.json").size()));
        }
    std::sort(out.begin(), out.end());
    return out;
}

double expected_number(const json& v) {
    if (v.is_string()) {
        auto s = v.get<std::string>();
        if (s == "nan") return std::nan("");
        if (s == "inf") return INFINITY;
        if (s == "-inf") return -INFINITY;
    }
    return v.get<double>();
}

bool same_value(double got, double want) {
    if (std::isnan(want)) return std::isnan(got);
    return got == want;
}

void check_tensor(const io::Checkpoint& c, const io::TensorEntry& t, const json& want) {
    INFO("tensor " << t.name);
    CHECK(std::string(io::dtype_name(t.dtype)) == want["dtype"].get<std::string>());
    CHECK(t.shape == want["shape"].get<std::vector<std::int64_t>>());
    CHECK(t.stride == want["stride"].get<std::vector<std::int64_t>>());
    CHECK(t.storage_offset == want["storage_offset"].get<std::int64_t>());
    CHECK(t.numel() == want["numel"].get<std::int64_t>());
    if (want["shared_with"].is_null()) CHECK_FALSE(t.shared_with.has_value());
    else {
        REQUIRE(t.shared_with.has_value());
        CHECK(*t.shared_with == want["shared_with"].get<std::string>());
    }
    // Values: first and last elements exactly, and the sum over finite values.
    auto data = c.data(t);
    std::vector<double> all(static_cast<std::size_t>(t.numel()));
    data.read(0, t.numel(), all.data());
    auto first = want["first"], last = want["last"];
    for (std::size_t i = 0; i < first.size(); ++i) CHECK(same_value(all[i], expected_number(first[i])));
    for (std::size_t i = 0; i < last.size(); ++i)
        CHECK(same_value(all[all.size() - last.size() + i], expected_number(last[i])));
    if (want.contains("sum") && want["sum"].is_number()) {
        long double sum = 0;
        for (double v : all)
            if (std::isfinite(v)) sum += v;
        double expected = want["sum"].get<double>();
        CHECK(static_cast<double>(sum) == Approx(expected).epsilon(1e-9).margin(1e-12));
    }
}

}  // namespace

TEST_CASE("every torch-written sample reads back with torch's values", "[checkpoint]") {
    auto files = sample_files();
    REQUIRE(files.size() >= 10);
    for (const auto& path : files) {
        DYNAMIC_SECTION(path.filename().string()) {
            json want = test::read_ordered_json(path.string() + ".expected.json");
            io::Checkpoint c = io::Checkpoint::open(path);
            CHECK(std::string(io::format_name(c.format())) == want["format"].get<std::string>());
            if (want["pickle_protocol"].is_number()) CHECK(c.pickle_protocol() == want["pickle_protocol"].get<int>());
            REQUIRE(c.state_dict_path().has_value());
            CHECK(*c.state_dict_path() == want["state_dict_path"].get<std::string>());
            if (want["step"].is_null()) CHECK_FALSE(c.step().has_value());
            else CHECK(c.step() == want["step"].get<std::int64_t>());
            if (c.root()) {
                REQUIRE(c.root()->kind == io::ValueKind::Dict);
                std::vector<std::string> keys;
                for (const auto& [k, v] : c.root()->entries) keys.push_back(k->text);
                CHECK(keys == want["top_level_keys"].get<std::vector<std::string>>());
            }
            // The state dict: same names, same order, same values.
            auto sd = c.state_dict_tensors();
            std::vector<std::string> names;
            for (auto* t : sd) names.push_back(t->name);
            std::vector<std::string> want_names;
            for (auto it = want["tensors"].begin(); it != want["tensors"].end(); ++it) want_names.push_back(it.key());
            CHECK(names == want_names);
            for (auto* t : sd)
                if (want["tensors"].contains(t->name)) check_tensor(c, *t, want["tensors"][t->name]);
            // Tensors elsewhere in the tree (optimizer state), by dotted path.
            if (want.contains("other_tensors")) {
                for (auto it = want["other_tensors"].begin(); it != want["other_tensors"].end(); ++it) {
                    const io::TensorEntry* t = c.find_tensor(it.key());
                    INFO("other tensor " << it.key());
                    REQUIRE(t != nullptr);
                    check_tensor(c, *t, it.value());
                }
            }
            // Only what torch itself writes: no findings, except the dataclass from the script.
            for (const auto& f : c.findings()) CHECK(f.global == "__main__.TrainConfig");
        }
    }
}

TEST_CASE("hostile checkpoints are reported, never run", "[checkpoint][security]") {
    fs::remove("/tmp/bitfsck_pwned");
    json hostile = test::read_ordered_json(test::samples_dir() / "hostile" / "expected.json");
    for (auto it = hostile["files"].begin(); it != hostile["files"].end(); ++it) {
        fs::path path = test::samples_dir() / "hostile" / it.key();
        const json& want = it.value();
        DYNAMIC_SECTION(it.key()) {
            if (want["kind"] == "security") {
                io::Checkpoint c = io::Checkpoint::open(path);
                std::vector<std::string> critical;
                for (const auto& f : c.findings()) {
                    CHECK_FALSE(f.reason.empty());
                    if (f.severity == io::Severity::Critical) critical.push_back(f.global);
                }
                // Python 2 pickles say __builtin__ where Python 3 says builtins; either spelling counts.
                for (const auto& g : want["dangerous_globals"]) {
                    std::string name = g.get<std::string>();
                    if (name.rfind("__builtin__.", 0) == 0) name = "builtins." + name.substr(12);
                    bool found = std::find(critical.begin(), critical.end(), g.get<std::string>()) != critical.end() ||
                                 std::find(critical.begin(), critical.end(), name) != critical.end();
                    CHECK(found);
                }
            } else if (want["corruption"] == "deflated_data_pkl") {
                // Either acceptable: inflate and read like the source, or refuse clearly.
                try {
                    io::Checkpoint c = io::Checkpoint::open(path);
                    io::Checkpoint source = io::Checkpoint::open(test::samples_dir() / "plain_state_dict.pt");
                    CHECK(c.tensors().size() == source.tensors().size());
                } catch (const io::FormatError& e) {
                    CHECK(std::string(e.what()).find(it.key()) != std::string::npos);
                }
            } else {
                try {
                    io::Checkpoint c = io::Checkpoint::open(path);
                    FAIL("opened a corrupt file without complaint");
                } catch (const Error& e) {
                    std::string msg = e.what();
                    CHECK(msg.find(it.key()) != std::string::npos);
                    CHECK(msg.find('\n') == std::string::npos);
                }
            }
        }
    }
    CHECK_FALSE(fs::exists("/tmp/bitfsck_pwned"));
}

TEST_CASE("a directory, a missing file and a non-checkpoint give one-line errors", "[checkpoint]") {
    test::TempDir tmp;
    CHECK_THROWS_AS(io::Checkpoint::open(tmp.path()), Error);
    CHECK_THROWS_AS(io::Checkpoint::open(tmp / "missing.pt"), Error);
    test::write_bytes(tmp / "notes.pt", "just some text, not a checkpoint\n");
    try {
        io::Checkpoint::open(tmp / "notes.pt");
        FAIL("opened a text file");
    } catch (const io::FormatError& e) {
        CHECK(std::string(e.what()).find("notes.pt") != std::string::npos);
    }
}

TEST_CASE("a corrupted file says what it meant to be and what is wrong, not another format's name", "[checkpoint]") {
    test::TempDir tmp;
    auto corrupt = [&](const fs::path& from, const std::string& name, std::size_t at, const std::string& bytes) {
        std::string data = test::read_text(from);
        data.replace(at, bytes.size(), bytes);
        test::write_bytes(tmp / name, data);
        try {
            io::Checkpoint::open(tmp / name);
        } catch (const io::FormatError& e) {
            CHECK(e.kind() == ErrorKind::Unreadable);
            CHECK(e.file() == (tmp / name).string());
            return std::string(e.what());
        }
        FAIL("opened a corrupted file");
        return std::string();
    };
    const std::string st = corrupt(test::samples_dir() / "plain.safetensors", "x.safetensors", 0, std::string("\xff\xff\xff\x7f\0\0\0\0", 8));
    CHECK(st.find("a corrupted safetensors header: its length field says") != std::string::npos);
    const std::string gguf = corrupt(test::samples_dir() / "packed/tq2_0.gguf", "x.gguf", 0, "GGUX");
    CHECK(gguf.find("not a GGUF file: it starts with 47 47 55 58") != std::string::npos);
    const std::string pt = corrupt(test::samples_dir() / "plain_state_dict.pt", "x.pt", 0, "XX");
    CHECK(pt.find("not a PyTorch checkpoint: it starts with 58 58") != std::string::npos);
}
