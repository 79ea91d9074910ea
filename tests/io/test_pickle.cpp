// The pickle VM against the fixtures of sample_ckpts/make_pickles.py: every expectation comes
// from sample_ckpts/pickles/expected.json, which the script computes from the Python objects.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "bitfsck/io/error.hpp"
#include "bitfsck/io/pickle.hpp"
#include "support.hpp"

using bitfsck::io::FormatError;
using bitfsck::io::PickleDocument;
using bitfsck::io::PickleOptions;
using bitfsck::io::Severity;
using bitfsck::io::Value;
using bitfsck::io::ValueKind;
using nlohmann::json;
namespace fs = std::filesystem;
namespace test = bitfsck::test;

namespace {

fs::path pickles_dir() { return test::samples_dir() / "pickles"; }

const json& expected() {
    static const json j = test::read_json(pickles_dir() / "expected.json");
    return j;
}

std::vector<json> samples_of(const std::string& kind) {
    std::vector<json> out;
    for (const auto& s : expected().at("samples"))
        if (s.at("kind") == kind) out.push_back(s);
    return out;
}

std::string bytes_of(const std::string& file) { return test::read_text(pickles_dir() / file); }

PickleDocument parse(const std::string& bytes, const PickleOptions& options) {
    return bitfsck::io::parse_pickle(
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()), options);
}

PickleOptions options_for(const std::string& file) {
    PickleOptions o;
    o.source_name = "pickles/" + file;
    return o;
}

std::string hex(const std::string& bytes) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

// The encoding make_pickles.py documents, applied to a decoded tree.
json encode(const Value* v, std::vector<const Value*>& ancestors) {
    const bool container = v->kind == ValueKind::Tuple || v->kind == ValueKind::List || v->kind == ValueKind::Dict ||
                           v->kind == ValueKind::Set || v->kind == ValueKind::Object;
    if (container) {
        for (std::size_t up = 1; up <= ancestors.size(); ++up)
            if (ancestors[ancestors.size() - up] == v) return json{{"cycle", up}};
    }
    ancestors.push_back(v);
    auto enc = [&](const Value* x) { return x ? encode(x, ancestors) : json(nullptr); };
    auto list = [&](const std::vector<Value*>& items) {
        json a = json::array();
        for (const Value* x : items) a.push_back(enc(x));
        return a;
    };
    auto pairs = [&](const std::vector<std::pair<Value*, Value*>>& entries) {
        json a = json::array();
        for (const auto& [k, x] : entries) a.push_back(json::array({enc(k), enc(x)}));
        return a;
    };
    json out;
    switch (v->kind) {
        case ValueKind::None: out = nullptr; break;
        case ValueKind::Bool: out = v->boolean; break;
        case ValueKind::Int: out = v->integer; break;
        case ValueKind::BigInt: out = {{"bigint", v->text}}; break;
        case ValueKind::Float:
            if (std::isnan(v->real)) out = {{"float", "nan"}};
            else if (std::isinf(v->real)) out = {{"float", v->real > 0 ? "inf" : "-inf"}};
            else out = {{"float", v->real}};
            break;
        case ValueKind::String: out = v->text; break;
        case ValueKind::Bytes: out = {{"bytes", hex(v->text)}}; break;
        case ValueKind::Tuple: out = {{"tuple", list(v->items)}}; break;
        case ValueKind::List: out = list(v->items); break;
        case ValueKind::Set: out = {{"set", list(v->items)}}; break;
        case ValueKind::Dict:
            out = {{"dict", pairs(v->entries)}};
            if (v->state) out["state"] = enc(v->state);
            break;
        case ValueKind::Global: out = {{"global", v->qualified_name()}}; break;
        case ValueKind::Object:
            out = {{"object", v->qualified_name()}, {"args", v->args ? list(v->args->items) : json::array()}};
            if (v->state) out["state"] = enc(v->state);
            if (!v->items.empty()) out["items"] = list(v->items);
            if (!v->entries.empty()) out["entries"] = pairs(v->entries);
            break;
        case ValueKind::Storage:
            out = {{"storage", {{"key", v->text}, {"location", v->location}, {"numel", v->integer}}}};
            break;
        case ValueKind::Tensor: {
            const Value* s = v->storage;
            out = {{"tensor",
                    {{"dtype", std::string(bitfsck::io::dtype_name(v->dtype))},
                     {"shape", v->shape},
                     {"stride", v->stride},
                     {"storage_offset", v->storage_offset},
                     {"requires_grad", v->requires_grad},
                     {"is_parameter", v->is_parameter},
                     {"storage", {{"key", s->text}, {"location", s->location}, {"numel", s->integer}}}}}};
            break;
        }
    }
    ancestors.pop_back();
    return out;
}

json encode(const Value* root) {
    std::vector<const Value*> ancestors;
    return encode(root, ancestors);
}

// Set order is Python's hash order in one and pickle order in the other: compare sets sorted.
json canonical(json j) {
    if (j.is_object() && j.contains("set") && j.size() == 1) {
        json items = json::array();
        for (auto& x : j["set"]) items.push_back(canonical(x));
        std::sort(items.begin(), items.end(), [](const json& a, const json& b) { return a.dump() < b.dump(); });
        return {{"set", items}};
    }
    if (j.is_array() || j.is_object())
        for (auto& x : j) x = canonical(x);
    return j;
}

using FindingKey = std::tuple<std::string, std::uint64_t, std::string, bool>;

std::vector<FindingKey> expected_findings(const json& sample) {
    std::vector<FindingKey> out;
    for (const auto& f : sample.at("findings"))
        out.emplace_back(f.at("global"), f.at("offset"), f.at("severity"), f.at("called"));
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<FindingKey> actual_findings(const PickleDocument& doc) {
    std::vector<FindingKey> out;
    for (const auto& f : doc.findings) {
        INFO(f.reason);
        CHECK(!f.reason.empty());
        CHECK(f.reason.find('\n') == std::string::npos);
        CHECK(f.reason.find(f.global) != std::string::npos);
        out.emplace_back(f.global, f.offset, f.severity == Severity::Critical ? "critical" : "warning", f.called);
    }
    std::sort(out.begin(), out.end());
    return out;
}

// A path of make_pickles.py's shared_paths: list/tuple index, or [dict entry, 0 key | 1 value].
const Value* follow(const Value* v, const json& path) {
    for (const auto& step : path) {
        REQUIRE(v != nullptr);
        if (step.is_number()) {
            REQUIRE(step.get<std::size_t>() < v->items.size());
            v = v->items[step.get<std::size_t>()];
        } else {
            const auto i = step[0].get<std::size_t>();
            REQUIRE(i < v->entries.size());
            v = step[1] == 0 ? v->entries[i].first : v->entries[i].second;
        }
    }
    return v;
}

std::string error_of(const std::string& bytes, const PickleOptions& options) {
    try {
        parse(bytes, options);
    } catch (const FormatError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("every value sample decodes to what make_pickles.py recorded", "[pickle]") {
    const auto samples = samples_of("value");
    REQUIRE(samples.size() >= 20);
    for (const auto& s : samples) {
        const std::string file = s.at("file");
        DYNAMIC_SECTION(file) {
            const std::string bytes = bytes_of(file);
            const PickleDocument doc = parse(bytes, options_for(file));
            REQUIRE(doc.root != nullptr);
            CHECK(canonical(encode(doc.root)) == canonical(s.at("value")));
            // Protocols 0 and 1 have no PROTO opcode.
            const int protocol = s.at("protocol");
            CHECK(doc.protocol == (protocol >= 2 ? protocol : 0));
            CHECK(doc.end_offset == bytes.size());
            CHECK(actual_findings(doc) == expected_findings(s));
            for (const auto& pair : s.at("shared")) {
                INFO("shared " << pair.dump());
                CHECK(follow(doc.root, pair[0]) == follow(doc.root, pair[1]));
            }
        }
    }
}

TEST_CASE("hostile pickles are reported and never run", "[pickle][security]") {
    const fs::path marker = expected().at("pwned_marker").get<std::string>();
    std::error_code ec;
    fs::remove(marker, ec);
    const auto samples = samples_of("hostile");
    REQUIRE(samples.size() >= 10);
    for (const auto& s : samples) {
        const std::string file = s.at("file");
        DYNAMIC_SECTION(file) {
            const PickleDocument doc = parse(bytes_of(file), options_for(file));
            REQUIRE(doc.root != nullptr);
            const auto want = expected_findings(s);
            REQUIRE(!want.empty());
            CHECK(actual_findings(doc) == want);
        }
    }
    CHECK_FALSE(fs::exists(marker));
}

TEST_CASE("malformed pickles throw FormatError naming the source and the problem", "[pickle]") {
    const auto samples = samples_of("malformed");
    REQUIRE(samples.size() >= 10);
    for (const auto& s : samples) {
        const std::string file = s.at("file");
        DYNAMIC_SECTION(file) {
            const auto options = options_for(file);
            const std::string message = error_of(bytes_of(file), options);
            INFO(message);
            REQUIRE(!message.empty());
            CHECK(message.find(options.source_name) != std::string::npos);
            CHECK(message.find(s.at("error").get<std::string>()) != std::string::npos);
            CHECK(message.find('\n') == std::string::npos);
        }
    }
}

TEST_CASE("the VM is iterative: with the depth limit lifted, 100000 levels decode", "[pickle][limits]") {
    for (const char* file : {"deep_append_p2.pkl", "deep_mark_p1.pkl"}) {
        DYNAMIC_SECTION(file) {
            auto options = options_for(file);
            options.limits.max_depth = 1'000'000;
            const PickleDocument doc = parse(bytes_of(file), options);
            std::size_t depth = 0;
            for (const Value* v = doc.root; v && v->kind == ValueKind::List; v = v->items.empty() ? nullptr : v->items[0])
                ++depth;
            CHECK(depth == 100000);
        }
    }
}

TEST_CASE("PickleLimits are enforced", "[pickle][limits]") {
    const std::string file = "nested_p2.pkl";
    const std::string bytes = bytes_of(file);
    const auto unlimited = parse(bytes, options_for(file));

    SECTION("values") {
        auto o = options_for(file);
        o.limits.max_values = unlimited.size() - 1;
        CHECK_THROWS_WITH(parse(bytes, o), Catch::Contains("values") && Catch::Contains(o.source_name));
        o.limits.max_values = unlimited.size();
        CHECK_NOTHROW(parse(bytes, o));
    }
    SECTION("stack") {
        auto o = options_for(file);
        o.limits.max_stack = 3;
        CHECK_THROWS_WITH(parse(bytes, o), Catch::Contains("stack") && Catch::Contains("3"));
    }
    SECTION("depth") {
        auto o = options_for(file);
        o.limits.max_depth = 2;
        CHECK_THROWS_WITH(parse(bytes, o), Catch::Contains("nesting deeper than 2"));
    }
    SECTION("bytes") {
        auto o = options_for(file);
        o.limits.max_bytes = 64;
        CHECK_THROWS_WITH(parse(bytes, o), Catch::Contains("bytes") && Catch::Contains("64"));
    }
}

TEST_CASE("trusted globals keep their objects but are not reported", "[pickle][security]") {
    for (const auto& s : samples_of("value")) {
        if (s.at("findings").empty()) continue;
        const std::string file = s.at("file");
        DYNAMIC_SECTION(file) {
            auto o = options_for(file);
            for (const auto& f : s.at("findings")) o.trusted_globals.insert(f.at("global").get<std::string>());
            const PickleDocument doc = parse(bytes_of(file), o);
            CHECK(doc.findings.empty());
            CHECK(canonical(encode(doc.root)) == canonical(s.at("value")));
        }
    }
}

TEST_CASE("a pickle ends at its STOP opcode; what follows is not read", "[pickle]") {
    const std::string file = "nested_p4.pkl";
    const std::string bytes = bytes_of(file);
    const auto doc = parse(bytes + std::string("\xff garbage", 9), options_for(file));
    CHECK(doc.end_offset == bytes.size());
}

TEST_CASE("truncating any value sample at any point throws FormatError, never crashes", "[pickle]") {
    for (const char* file : {"nested_p0.pkl", "nested_p1.pkl", "shared_p2.pkl", "torch_zip_p4.pkl", "numpy_scalars_p2.pkl"}) {
        DYNAMIC_SECTION(file) {
            const std::string bytes = bytes_of(file);
            const auto options = options_for(file);
            const std::size_t step = std::max<std::size_t>(1, bytes.size() / 200);
            for (std::size_t cut = 0; cut + 1 < bytes.size(); cut += step) {
                INFO("cut at " << cut);
                CHECK_THROWS_AS(parse(bytes.substr(0, cut), options), FormatError);
            }
        }
    }
}

TEST_CASE("the allow-list", "[pickle][security]") {
    // Each hostile sample's globals are off the list, but for the misuses of allowed ones (a class
    // as a defaultdict factory, a type called); what torch.save writes is on it.
    for (const auto& s : samples_of("hostile"))
        for (const auto& f : s.at("findings")) {
            const std::string g = f.at("global");
            const auto dot = g.rfind('.');
            INFO(g);
            CHECK(bitfsck::io::is_allowed_global(g.substr(0, dot), g.substr(dot + 1)) == s.value("misuse", false));
        }
    for (const char* file : {"torch_zip_p2.pkl", "torch_legacy_p2.pkl", "numpy_scalars_p4.pkl"}) {
        const auto doc = parse(bytes_of(file), options_for(file));
        CHECK(doc.findings.empty());
    }
}

TEST_CASE("random corruption of samples gives a document or a FormatError, nothing else", "[pickle][fuzz]") {
    std::mt19937 rng(20240601);
    for (const char* file : {"nested_p0.pkl", "nested_p2.pkl", "nested_p5.pkl", "torch_zip_p4.pkl",
                             "torch_legacy_p2.pkl", "numpy_scalars_p2.pkl", "subclasses_p0.pkl", "shared_p1.pkl"}) {
        DYNAMIC_SECTION(file) {
            const std::string original = bytes_of(file);
            const auto options = options_for(file);
            for (int round = 0; round < 300; ++round) {
                std::string bytes = original;
                const int flips = 1 + static_cast<int>(rng() % 4);
                for (int i = 0; i < flips; ++i) bytes[rng() % bytes.size()] = static_cast<char>(rng() & 0xFF);
                INFO("round " << round);
                try {
                    const auto doc = parse(bytes, options);
                    CHECK(doc.root != nullptr);
                } catch (const FormatError& e) {
                    CHECK(std::string(e.what()).find(options.source_name) != std::string::npos);
                }
            }
        }
    }
}

TEST_CASE("standard-library data types are data: defaultdict, Counter, set, datetime, pathlib", "[pickle][security]") {
    // Both ways: these samples have no findings (checked with every value sample above), while
    // their near misses (a function as a factory, a set subclass, a datetime method, Path.unlink)
    // are hostile samples with findings.
    std::size_t seen = 0;
    for (const auto& s : samples_of("value")) {
        if (!s.contains("texts")) continue;
        ++seen;
        const std::string file = s.at("file");
        DYNAMIC_SECTION(file) {
            const PickleDocument doc = parse(bytes_of(file), options_for(file));
            REQUIRE(doc.root != nullptr);
            CHECK(doc.findings.empty());
            for (const auto& [key, text] : s.at("texts").items()) {
                INFO(key);
                const Value* v = doc.root->get(key);
                REQUIRE(v != nullptr);
                CHECK(v->kind == ValueKind::Object);
                CHECK(v->text == text.get<std::string>());  // Python's str() of the value
            }
            for (const auto& [key, kind] : s.at("kinds").items()) {
                INFO(key);
                const Value* v = doc.root->get(key);
                REQUIRE(v != nullptr);
                CHECK(v->kind == ValueKind::Dict);
                CHECK(v->qualified_name() == "collections." + kind.get<std::string>());
            }
            for (const auto& [key, factory] : s.at("factories").items()) {
                INFO(key);
                const Value* v = doc.root->get(key);
                REQUIRE(v != nullptr);
                REQUIRE(v->args != nullptr);
                if (factory.is_null()) {
                    // CPython pickles defaultdict(None) with no arguments at all.
                    CHECK((v->args->items.empty() || v->args->items[0]->kind == ValueKind::None));
                } else {
                    REQUIRE(v->args->items.size() == 1);
                    CHECK(v->args->items[0]->qualified_name() == factory.get<std::string>());
                }
            }
        }
    }
    CHECK(seen > 0);
    for (const char* g : {"collections.defaultdict", "collections.Counter", "builtins.set", "builtins.frozenset",
                          "datetime.datetime", "datetime.date", "datetime.time", "datetime.timedelta", "datetime.timezone",
                          "pathlib.PosixPath", "pathlib.PureWindowsPath", "pathlib._local.PosixPath"}) {
        const std::string q = g;
        INFO(q);
        CHECK(bitfsck::io::is_allowed_global(q.substr(0, q.rfind('.')), q.substr(q.rfind('.') + 1)));
    }
    for (const char* g : {"collections.UserDict", "collections.namedtuple", "datetime.datetime.now", "pathlib.Path.unlink",
                          "builtins.type", "builtins.setattr"}) {
        const std::string q = g;
        INFO(q);
        // module.name as pickle writes a nested name: the module, then the dotted qualified name.
        CHECK_FALSE(bitfsck::io::is_allowed_global(q.substr(0, q.find('.')), q.substr(q.find('.') + 1)));
    }
}

TEST_CASE("bytes after a STOP: a further pickle's globals are findings, padding and data are described", "[pickle][security]") {
    const std::string first = bytes_of("torch_zip_p2.pkl");
    const auto o = options_for("torch_zip_p2.pkl");
    auto check = [&](const std::string& tail) {
        const std::string all = first + tail;
        const std::span<const std::byte> data(reinterpret_cast<const std::byte*>(all.data()), all.size());
        PickleDocument doc = bitfsck::io::parse_pickle(data, o);
        const std::string note = bitfsck::io::check_bytes_after_stop(doc, data, doc.end_offset, o, "data.pkl after its STOP");
        return std::make_pair(std::move(doc), note);
    };
    SECTION("nothing after the STOP: nothing to say") {
        auto [doc, note] = check("");
        CHECK(note.empty());
        CHECK(doc.findings.empty());
    }
    SECTION("zero padding") {
        auto [doc, note] = check(std::string(16, '\0'));
        CHECK_THAT(note, Catch::Contains("16 byte(s)") && Catch::Contains("zero padding"));
        CHECK(doc.findings.empty());
    }
    SECTION("a further pickle that calls os.system") {
        const std::string payload = bytes_of("posix_system_p2.pkl");
        auto [doc, note] = check(payload);
        REQUIRE(doc.findings.size() == 1);
        const auto& f = doc.findings[0];
        CHECK(f.global == "posix.system");
        CHECK(f.severity == Severity::Critical);
        CHECK(f.called);
        // Offsets count from the first pickle's start, like every other finding of the document.
        CHECK(f.offset > first.size());
        CHECK(f.offset < first.size() + payload.size());
        CHECK_THAT(f.reason, Catch::Contains("further pickle") && Catch::Contains(std::to_string(first.size())));
        CHECK_THAT(note, Catch::Contains("1 further pickle(s)") && Catch::Contains("posix.system"));
    }
    SECTION("a global before a malformed tail is still a finding") {
        const std::string payload = bytes_of("posix_system_p2.pkl");
        auto [doc, note] = check(payload.substr(0, payload.size() - 2));  // cut before REDUCE and STOP
        REQUIRE(doc.findings.size() == 1);
        CHECK(doc.findings[0].global == "posix.system");
        CHECK_THAT(note, Catch::Contains("not a pickle"));
    }
    SECTION("bytes that are no pickle at all") {
        auto [doc, note] = check("\xff\xfe junk");
        CHECK(doc.findings.empty());
        CHECK_THAT(note, Catch::Contains("not a pickle") && Catch::Contains("ff fe"));
    }
}
