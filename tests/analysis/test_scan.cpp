#include <catch2/catch.hpp>

#include <xxhash.h>

#include <atomic>
#include <cmath>
#include <mutex>
#include <regex>
#include <set>

#include "bitfsck/analysis/scan.hpp"
#include "support.hpp"

using namespace bitfsck;
using namespace bitfsck::analysis;
namespace fs = std::filesystem;

namespace {

std::vector<fs::path> sample_files() {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(test::samples_dir())) {
        fs::path p = e.path();
        if (e.is_regular_file() && p.extension() != ".json" && p.extension() != ".py" &&
            fs::exists(p.string() + ".expected.json"))
            files.push_back(p);
    }
    std::sort(files.begin(), files.end());
    return files;
}

bool is_floating(const std::string& dtype) {
    return dtype == "float64" || dtype == "float32" || dtype == "float16" || dtype == "bfloat16" ||
           dtype.rfind("float8", 0) == 0;
}

// torch computed these in float64 too; only summation order differs.
void check_close(const std::string& what, double actual, const nlohmann::json& expected) {
    if (expected.is_null()) return;
    double e = expected.get<double>();
    INFO(what << ": " << actual << " vs torch " << e);
    CHECK(std::fabs(actual - e) <= std::max(1e-6 * std::fabs(e), 1e-12));
}

const TensorStats* find(const ScanReport& r, const std::string& name) {
    for (const auto& t : r.tensors)
        if (t.name == name) return &t;
    return nullptr;
}

ScanReport scan(const fs::path& p, unsigned threads = 2) {
    io::Checkpoint ckpt = io::Checkpoint::open(p);
    ScanOptions o;
    o.threads = threads;
    return scan_checkpoint(ckpt, o);
}

}  // namespace

TEST_CASE("tensor statistics match torch on every sample checkpoint", "[scan]") {
    auto files = sample_files();
    REQUIRE(files.size() >= 5);
    for (const fs::path& path : files) {
        SECTION(path.filename().string()) {
            nlohmann::json expected = test::read_json(path.string() + ".expected.json");
            ScanReport r = scan(path);
            CHECK(r.file_size == fs::file_size(path));
            CHECK(r.format == expected["format"].get<std::string>());
            std::size_t floating = 0;
            for (const auto& [name, rec] : expected["tensors"].items()) {
                if (!is_floating(rec["dtype"].get<std::string>())) {
                    CHECK_FALSE(find(r, name));  // integer and bool tensors are not analysed
                    continue;
                }
                ++floating;
                INFO(path.filename().string() << " " << name);
                const TensorStats* t = find(r, name);
                REQUIRE(t);
                CHECK(t->dtype == rec["dtype"].get<std::string>());
                CHECK(t->count == rec["numel"].get<std::uint64_t>());
                CHECK(t->nan_count == rec["nan_count"].get<std::uint64_t>());
                CHECK(t->inf_count == rec["inf_count"].get<std::uint64_t>());
                if (rec["mean"].is_null()) continue;  // no finite values
                check_close("mean", t->mean, rec["mean"]);
                check_close("std", t->std, rec["std"]);
                check_close("min", t->min, rec["min"]);
                check_close("max", t->max, rec["max"]);
                check_close("absmean", t->absmean, rec["absmean"]);
                check_close("zero_frac", t->zero_frac, rec["zero_frac"]);
                const auto& bn = rec["ternary"]["bitnet"];
                const auto& dx = rec["ternary"]["distillix"];
                check_close("bitnet.scale", t->ternary.scale, bn["scale"]);
                check_close("bitnet.neg", t->ternary.neg, bn["neg"]);
                check_close("bitnet.zero", t->ternary.zero, bn["zero"]);
                check_close("bitnet.pos", t->ternary.pos, bn["pos"]);
                check_close("distillix.scale", t->ternary_other.scale, dx["scale"]);
                check_close("distillix.neg", t->ternary_other.neg, dx["neg"]);
                check_close("distillix.zero", t->ternary_other.zero, dx["zero"]);
                check_close("distillix.pos", t->ternary_other.pos, dx["pos"]);
                if (rec.contains("dead_rows")) {
                    CHECK(t->dead.dead_rows == rec["dead_rows"].get<std::int64_t>());
                    CHECK(t->dead.dead_cols == rec["dead_cols"].get<std::int64_t>());
                }
            }
            CHECK(r.tensors.size() == floating);
        }
    }
}

TEST_CASE("an offline ternary export: lattices found, the zeroed MLP and the NaNs flagged", "[scan]") {
    fs::path path = test::samples_dir() / "ternary_export.pt";
    nlohmann::json truth = test::read_json(path.string() + ".expected.json")["ternary_truth"];
    ScanReport r = scan(path);
    REQUIRE(truth.size() >= 4);
    for (const auto& [name, info] : truth.items()) {
        INFO(name);
        const TensorStats* t = find(r, name);
        REQUIRE(t);
        std::string kind = info["kind"].get<std::string>();
        if (kind == "ternary_per_tensor" || kind == "ternary_per_tensor_with_nan") {
            CHECK(t->lattice.is_ternary);
            CHECK_FALSE(t->lattice.per_channel);
            CHECK(t->lattice.scale == Approx(info["scale"].get<double>()).epsilon(1e-6));
            CHECK(t->lattice.rms_rel == 0);
            if (kind == "ternary_per_tensor_with_nan") CHECK(t->nan_count == info["nan_count"].get<std::uint64_t>());
        } else if (kind == "ternary_per_channel") {
            double mean = 0;
            for (double s : info["scales"]) mean += s;
            mean /= static_cast<double>(info["scales"].size());
            CHECK(t->lattice.is_ternary);
            CHECK(t->lattice.per_channel);
            CHECK(t->lattice.scale == Approx(mean).epsilon(1e-6));
            CHECK(t->lattice.rms_rel == 0);
        } else if (kind == "latent") {
            CHECK_FALSE(t->lattice.is_ternary);
            CHECK(t->lattice.rms_rel > 0.1);
        } else if (kind == "all_zero") {
            CHECK(t->dead.all_zero);
        }
    }
    CHECK(r.verdict == Verdict::Collapsed);
    REQUIRE_FALSE(r.findings.empty());
    CHECK(r.findings[0].severity == Verdict::Collapsed);
    std::set<std::pair<std::string, std::string>> fired;
    for (const auto& f : r.findings) fired.insert({f.rule, f.subject});
    CHECK(fired.count({"all_zero", "layers.0.mlp.down_proj.weight"}));
    CHECK(fired.count({"non_finite", "layers.1.self_attn.v_proj.weight"}));
}

TEST_CASE("a plain random-init checkpoint is healthy", "[scan]") {
    ScanReport r = scan(test::samples_dir() / "plain_state_dict.pt");
    CHECK(r.verdict == Verdict::Healthy);
    CHECK(r.findings.empty());
    CHECK(r.layers.size() == 14);  // 2 layers x 7 projections
    CHECK(r.security.empty());
    CHECK(r.state_dict_path == std::string());
}

TEST_CASE("results keep file order whatever the thread count", "[scan]") {
    fs::path path = test::samples_dir() / "training_checkpoint.pt";
    ScanReport one = scan(path, 1), four = scan(path, 4);
    REQUIRE(one.tensors.size() == four.tensors.size());
    io::Checkpoint ckpt = io::Checkpoint::open(path);
    std::vector<std::string> order;
    for (const auto* e : ckpt.state_dict_tensors())
        if (io::dtype_is_floating(e->dtype)) order.push_back(e->name);
    REQUIRE(order.size() == one.tensors.size());
    for (std::size_t i = 0; i < order.size(); ++i) {
        CHECK(one.tensors[i].name == order[i]);
        CHECK(four.tensors[i].name == order[i]);
        CHECK(one.tensors[i].std == four.tensors[i].std);
    }
    CHECK(one.content_hash == four.content_hash);
    CHECK(one.step == ckpt.step());
}

TEST_CASE("progress counts bytes up to the total; cancelling throws", "[scan]") {
    io::Checkpoint ckpt = io::Checkpoint::open(test::samples_dir() / "plain_state_dict.pt");
    std::mutex m;
    std::uint64_t last_done = 0, total = 0, calls = 0;
    ScanOptions o;
    o.threads = 2;
    o.progress = [&](const Progress& p) {
        std::lock_guard<std::mutex> lock(m);
        last_done = std::max(last_done, p.done);
        total = p.total;
        ++calls;
        CHECK(p.unit == ProgressUnit::Bytes);
        return true;
    };
    ScanReport r = scan_checkpoint(ckpt, o);
    CHECK(calls == r.tensors.size());
    CHECK(last_done == total);
    std::uint64_t bytes = 0;
    for (const auto* e : ckpt.state_dict_tensors())
        if (io::dtype_is_floating(e->dtype)) bytes += e->nbytes();
    CHECK(total == bytes);

    std::atomic<bool> cancel{true};
    o.progress = stop_when(cancel);
    CHECK_THROWS_AS(scan_checkpoint(ckpt, o), Cancelled);
}

TEST_CASE("content hash is XXH3-128 of the whole file", "[scan]") {
    fs::path path = test::samples_dir() / "training_checkpoint.pt";
    io::MappedFile file(path);
    std::string h = content_hash(file);
    CHECK(std::regex_match(h, std::regex("xxh3-128:[0-9a-f]{32}")));
    std::string bytes = test::read_text(path);
    XXH128_hash_t ref = XXH3_128bits(bytes.data(), bytes.size());
    char hex[33];
    std::snprintf(hex, sizeof hex, "%016llx%016llx", static_cast<unsigned long long>(ref.high64),
                  static_cast<unsigned long long>(ref.low64));
    CHECK(h == std::string("xxh3-128:") + hex);
    io::Checkpoint ckpt = io::Checkpoint::open(path);
    CHECK(scan_checkpoint(ckpt).content_hash == h);
    ScanOptions no_hash;
    no_hash.content_hash = false;
    CHECK(scan_checkpoint(ckpt, no_hash).content_hash.empty());
}

TEST_CASE("security findings are copied into the report", "[scan]") {
    ScanReport r = scan(test::samples_dir() / "hostile" / "pickle_os_system.pt");
    REQUIRE_FALSE(r.security.empty());
    bool found = false;
    for (const auto& s : r.security) {
        CHECK((s.severity == "critical" || s.severity == "warning"));
        if (s.global == "posix.system") {
            found = true;
            CHECK(s.severity == "critical");
            CHECK(s.called);
        }
    }
    CHECK(found);
}
