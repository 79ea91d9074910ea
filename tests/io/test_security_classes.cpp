// The security classes of sample_ckpts/hostile/security_classes.json (written by torch.save through
// make_pickles.py's hostile pickle modules): bytes after a pickle's STOP, a payload in the legacy
// format's side pickles, storages whose declared element count disagrees with their record.
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/error.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
namespace io = bitfsck::io;
namespace test = bitfsck::test;

namespace {

fs::path hostile_dir() { return test::samples_dir() / "hostile"; }

const nlohmann::json& classes() {
    static const nlohmann::json j = test::read_json(hostile_dir() / "security_classes.json");
    return j;
}

std::string all_notes(const io::Checkpoint& c) {
    std::string out;
    for (const auto& n : c.notes()) out += n + "\n";
    return out;
}

}  // namespace

TEST_CASE("each security-class checkpoint is reported as security_classes.json says", "[security]") {
    const fs::path marker = "/tmp/bitfsck_pwned";
    std::error_code ec;
    fs::remove(marker, ec);
    REQUIRE(classes().at("files").size() >= 8);
    for (const auto& [file, want] : classes().at("files").items()) {
        DYNAMIC_SECTION(file) {
            const fs::path path = hostile_dir() / file;
            if (want.contains("error_contains")) {
                // A refusal names the file and the storage, on one line.
                try {
                    io::Checkpoint::open(path);
                    FAIL("opened without an error");
                } catch (const io::FormatError& e) {
                    const std::string message = e.what();
                    INFO(message);
                    CHECK_THAT(message, Catch::Contains(want.at("error_contains").get<std::string>()));
                    CHECK_THAT(message, Catch::Contains(path.string()) && Catch::Contains("storage '"));
                    CHECK(message.find('\n') == std::string::npos);
                }
                continue;
            }
            const io::Checkpoint c = io::Checkpoint::open(path);
            CHECK(io::format_name(c.format()) == want.at("format").get<std::string>());
            const auto& findings = want.at("findings");
            REQUIRE(c.findings().size() == findings.size());
            for (std::size_t i = 0; i < findings.size(); ++i) {
                const auto& f = c.findings()[i];
                INFO(f.reason);
                CHECK(f.global == findings[i].at("global").get<std::string>());
                CHECK(f.severity == (findings[i].at("severity") == "critical" ? io::Severity::Critical : io::Severity::Warning));
                CHECK(f.called == findings[i].at("called").get<bool>());
                CHECK_THAT(f.reason, Catch::Contains(findings[i].at("reason_contains").get<std::string>()));
                CHECK(f.reason.find('\n') == std::string::npos);
            }
            const std::string notes = all_notes(c);
            INFO(notes);
            for (const auto& n : want.at("notes_contain")) CHECK_THAT(notes, Catch::Contains(n.get<std::string>()));
            std::string warnings;
            for (const auto& w : c.warnings()) warnings += w + "\n";
            INFO(warnings);
            if (!want.contains("warnings_contain")) CHECK(c.warnings().empty());
            else
                for (const auto& w : want.at("warnings_contain")) CHECK_THAT(warnings, Catch::Contains(w.get<std::string>()));
            // The state dict is still read: the findings do not hide the weights.
            CHECK_FALSE(c.state_dict_tensors().empty());
        }
    }
    CHECK_FALSE(fs::exists(marker));
}

TEST_CASE("a storage whose record holds more than it declares is read within the declared elements", "[security]") {
    const io::Checkpoint c = io::Checkpoint::open(hostile_dir() / "numel_declared_smaller.pt");
    const io::TensorEntry* v = c.find_tensor("v");
    REQUIRE(v != nullptr);
    CHECK(v->storage_nbytes == 16);  // 4 declared float32 elements, of the 32 bytes the record holds
    std::vector<double> values(4);
    c.data(*v).read(0, 4, values.data());
    CHECK(values == std::vector<double>{0, 1, 2, 3});
}

TEST_CASE("the healthy fixtures declare exactly what their records hold", "[security]") {
    // torch.save writes each record with exactly the declared elements: no note, nothing refused.
    for (const char* file : {"plain_state_dict.pt", "training_checkpoint.pt", "views.pt", "legacy.pt", "dtypes.pt"}) {
        DYNAMIC_SECTION(file) {
            const io::Checkpoint c = io::Checkpoint::open(test::samples_dir() / file);
            CHECK(c.warnings().empty());
            for (const auto& n : c.notes()) CHECK(n.find("after") == std::string::npos);
        }
    }
}
