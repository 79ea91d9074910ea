// The .pt writers read back through bitfsck's own reader: every value and every layout rule torch
// relies on (64-byte aligned stored records, valid CRC-32s, ZIP64 fields), the re-emitted pickles
// equal to their sources, and rewrites that change exactly the replaced elements.
#include <catch2/catch.hpp>

#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <unordered_set>

#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/pickle_writer.hpp"
#include "bitfsck/io/pt_writer.hpp"
#include "bitfsck/io/zip_archive.hpp"
#include "output_tensors.hpp"
#include "support.hpp"

using namespace bitfsck;
namespace fs = std::filesystem;

namespace {

// An independent CRC-32 (IEEE, reflected), so the check does not trust the writer's zlib call.
std::uint32_t crc32_ref(std::span<const std::byte> data) {
    static const auto table = [] {
        std::array<std::uint32_t, 256> t{};
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    std::uint32_t c = 0xFFFFFFFFu;
    for (std::byte b : data) c = table[(c ^ static_cast<std::uint8_t>(b)) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

// A tensor's elements in logical row-major order, as raw bytes, following offset and strides.
std::vector<std::byte> logical_bytes(const io::Checkpoint& c, const io::TensorEntry& t) {
    const std::size_t es = io::dtype_size(t.dtype);
    auto storage = c.file().bytes(t.storage_file_offset, t.storage_nbytes);
    std::vector<std::byte> out;
    const std::int64_t n = t.numel();
    out.reserve(static_cast<std::size_t>(n) * es);
    std::vector<std::int64_t> index(t.shape.size(), 0);
    std::int64_t pos = t.storage_offset;
    for (std::int64_t i = 0; i < n; ++i) {
        auto at = storage.subspan(static_cast<std::size_t>(pos) * es, es);
        out.insert(out.end(), at.begin(), at.end());
        for (std::size_t d = index.size(); d-- > 0;) {
            pos += t.stride[d];
            if (++index[d] < t.shape[d]) break;
            pos -= t.stride[d] * t.shape[d];
            index[d] = 0;
        }
    }
    return out;
}

const io::TensorEntry& tensor(const io::Checkpoint& c, const std::string& name) {
    const io::TensorEntry* t = c.find_tensor(name);
    INFO("tensor " << name);
    REQUIRE(t != nullptr);
    return *t;
}

std::vector<std::int64_t> contiguous(const std::vector<std::int64_t>& shape) {
    std::vector<std::int64_t> s(shape.size(), 1);
    for (std::size_t i = shape.size(); i-- > 1;) s[i - 1] = s[i] * std::max<std::int64_t>(shape[i], 1);
    return s;
}

// Structural equality of two unpickled trees (kinds, scalars, names, tensors, order), cycle-safe.
bool same_tree(const io::Value* a, const io::Value* b, std::string path, std::set<std::pair<const io::Value*, const io::Value*>>& seen,
               std::string& why, int depth = 0) {
    if (!a || !b) {
        if (a != b) why = path + ": one side is missing";
        return a == b;
    }
    if (depth > 500 || !seen.insert({a, b}).second) return true;
    auto differ = [&](const std::string& what) {
        why = path + ": " + what;
        return false;
    };
    if (a->kind != b->kind) return differ(std::string(a->kind_name()) + " vs " + std::string(b->kind_name()));
    if (a->boolean != b->boolean || a->integer != b->integer || a->text != b->text) return differ("scalar or text differs");
    if (std::bit_cast<std::uint64_t>(a->real) != std::bit_cast<std::uint64_t>(b->real)) return differ("float differs");
    if (a->module != b->module || a->name != b->name) return differ(a->qualified_name() + " vs " + b->qualified_name());
    if (a->dtype != b->dtype || a->location != b->location || a->storage_offset != b->storage_offset || a->shape != b->shape ||
        a->stride != b->stride || a->requires_grad != b->requires_grad || a->is_parameter != b->is_parameter)
        return differ("tensor or storage fields differ");
    if (a->items.size() != b->items.size() || a->entries.size() != b->entries.size()) return differ("sizes differ");
    for (std::size_t i = 0; i < a->items.size(); ++i)
        if (!same_tree(a->items[i], b->items[i], path + "/" + std::to_string(i), seen, why, depth + 1)) return false;
    for (std::size_t i = 0; i < a->entries.size(); ++i) {
        if (!same_tree(a->entries[i].first, b->entries[i].first, path + "/key" + std::to_string(i), seen, why, depth + 1)) return false;
        if (!same_tree(a->entries[i].second, b->entries[i].second, path + "/" + std::to_string(i), seen, why, depth + 1)) return false;
    }
    return same_tree(a->args, b->args, path + "/args", seen, why, depth + 1) &&
           same_tree(a->state, b->state, path + "/state", seen, why, depth + 1) &&
           same_tree(a->storage, b->storage, path + "/storage", seen, why, depth + 1);
}

bool same_tree(const io::Value* a, const io::Value* b, std::string& why) {
    std::set<std::pair<const io::Value*, const io::Value*>> seen;
    return same_tree(a, b, "", seen, why);
}

std::vector<std::byte> record_bytes(const io::ZipArchive& zip, const std::string& name) {
    const io::ZipEntry* e = zip.find(name);
    INFO("record " << name);
    REQUIRE(e != nullptr);
    return zip.read(*e);
}

std::string as_string(const std::vector<std::byte>& b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

// Every record stored, its data 64-byte aligned, its CRC-32 right.
void check_layout(const fs::path& p) {
    io::ZipArchive zip(std::make_shared<io::MappedFile>(p));
    for (const auto& e : zip.entries()) {
        INFO("record " << e.name);
        CHECK(e.method == 0);
        CHECK(e.data_offset % 64 == 0);
        CHECK(crc32_ref(zip.stored_view(e)) == e.crc32);
    }
}

std::vector<io::OutputTensor> every_dtype() {
    std::vector<io::OutputTensor> ts;
    ts.push_back(test::output_tensor("f64", io::DType::F64, {5}, test::to_bytes(std::vector<double>{0.0, -1.5, 1e300, std::nan(""), -INFINITY})));
    for (auto& t : test::small_tensors_of_every_dtype()) ts.push_back(std::move(t));
    std::vector<float> large(300 * 70);
    for (std::size_t i = 0; i < large.size(); ++i) large[i] = static_cast<float>(i) * 0.125f - 100.f;
    ts.push_back(test::output_tensor("large", io::DType::F32, {300, 70}, test::to_bytes(large)));
    auto embed = test::output_tensor("embed.weight", io::DType::F32, {4, 2}, test::to_bytes(std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8}));
    embed.parameter = true;
    ts.push_back(embed);
    io::OutputTensor head;
    head.name = "lm_head.weight";
    head.dtype = io::DType::F32;
    head.shape = {4, 2};
    head.parameter = true;
    head.tied_to = "embed.weight";
    ts.push_back(head);
    return ts;
}

void check_round_trip(const fs::path& p, const std::vector<io::OutputTensor>& ts) {
    auto c = io::Checkpoint::open(p);
    CHECK(c.format() == io::Format::TorchZip);
    CHECK(c.pickle_protocol() == 2);
    REQUIRE(c.state_dict_path().has_value());
    auto sd = c.state_dict_tensors();
    REQUIRE(sd.size() == ts.size());
    for (std::size_t i = 0; i < ts.size(); ++i) {
        const auto& want = ts[i];
        const auto& got = *sd[i];
        INFO("tensor " << want.name);
        CHECK(got.name == want.name);
        CHECK(got.dtype == want.dtype);
        CHECK(got.shape == want.shape);
        CHECK(got.stride == contiguous(want.shape));
        CHECK(got.storage_offset == 0);
        CHECK(got.is_parameter == want.parameter);
        CHECK(got.requires_grad == want.parameter);  // parameters of floating dtypes require grad
        auto bytes = want.tied_to.empty() ? want.bytes() : ts[i - 1].bytes();
        CHECK(logical_bytes(c, got) == std::vector<std::byte>(bytes.begin(), bytes.end()));
        if (want.tied_to.empty()) CHECK_FALSE(got.shared_with.has_value());
        else CHECK(got.shared_with == std::optional<std::string>(want.tied_to));
    }
}

}  // namespace

TEST_CASE("write_state_dict_pt writes every dtype as torch.save lays it out", "[pt_writer]") {
    test::TempDir dir;
    const auto p = dir / "model.v1.pt";
    const auto ts = every_dtype();
    io::write_state_dict_pt(p, ts);
    check_round_trip(p, ts);
    check_layout(p);

    io::ZipArchive zip(std::make_shared<io::MappedFile>(p));
    CHECK(zip.top_folder() == "model");  // torch: the file name up to its first '.'
    std::vector<std::string> names;
    for (const auto& e : zip.entries()) names.push_back(e.name);
    std::vector<std::string> want{"model/data.pkl", "model/byteorder"};
    for (int i = 0; i < 14; ++i) want.push_back("model/data/" + std::to_string(i));  // 15 tensors, one tied
    want.push_back("model/version");
    CHECK(names == want);
    CHECK(as_string(record_bytes(zip, "model/version")) == "3\n");
    CHECK(as_string(record_bytes(zip, "model/byteorder")) == "little");
    auto pkl = record_bytes(zip, "model/data.pkl");
    REQUIRE(pkl.size() > 2);
    CHECK(static_cast<unsigned>(pkl[0]) == 0x80);
    CHECK(static_cast<unsigned>(pkl[1]) == 2);
    CHECK(test::read_text(p).find("PK\x06\x06") == std::string::npos);  // no ZIP64 needed
    // Only the final file remains: the temporary was renamed.
    CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator{}) == 1);
}

TEST_CASE("ZIP64 fields are written when sizes or offsets reach the limit", "[pt_writer]") {
    test::TempDir dir;
    const auto p = dir / "big.pt";
    const auto ts = every_dtype();
    io::PtWriteOptions options;
    options.zip64_threshold = 0;  // every size and offset "too large": the ZIP64 path for real
    io::write_state_dict_pt(p, ts, options);
    check_round_trip(p, ts);
    check_layout(p);
    const std::string raw = test::read_text(p);
    CHECK(raw.find(std::string("PK\x06\x06", 4)) != std::string::npos);  // ZIP64 end of central directory
    CHECK(raw.find(std::string("PK\x06\x07", 4)) != std::string::npos);  // and its locator
}

TEST_CASE("extra top-level entries are pickled beside the state dict", "[pt_writer]") {
    test::TempDir dir;
    const auto p = dir / "wrapped.pt";
    io::PtWriteOptions options;
    options.state_dict_key = "model";
    using V = io::PyValue;
    options.extra = {
        {"step", V::from_int(1234)},
        {"lr", V::from_float(3e-4)},
        {"big", V::from_int(std::int64_t(1) << 40)},
        {"neg", V::from_int(-5)},
        {"name", V::str("tiny ü")},
        {"blob", V::bytes(std::string("\x00\xff\x80z", 4))},
        {"flags", V::list({V::from_bool(true), V::from_bool(false), V::none()})},
        {"betas", V::tuple({V::from_float(0.9), V::from_float(0.95), V::from_int(1), V::from_int(2)})},
        {"config", V::ordered_dict({{V::str("hidden"), V::from_int(32)}})},
    };
    io::write_state_dict_pt(p, {test::output_tensor("w", io::DType::F32, {2}, test::to_bytes(std::vector<float>{1, 2}))}, options);
    auto c = io::Checkpoint::open(p);
    CHECK(c.state_dict_path() == std::optional<std::string>("model"));
    CHECK(c.step() == std::optional<std::int64_t>(1234));
    const io::Value* root = c.root();
    REQUIRE(root->kind == io::ValueKind::Dict);
    REQUIRE(root->entries.size() == 10);
    CHECK(root->get("lr")->real == 3e-4);
    CHECK(root->get("big")->integer == (std::int64_t(1) << 40));
    CHECK(root->get("neg")->integer == -5);
    CHECK(root->get("name")->text == "tiny ü");
    CHECK(root->get("blob")->kind == io::ValueKind::Bytes);
    CHECK(root->get("blob")->text == std::string("\x00\xff\x80z", 4));
    REQUIRE(root->get("flags")->items.size() == 3);
    CHECK(root->get("flags")->items[0]->boolean);
    CHECK(root->get("flags")->items[2]->kind == io::ValueKind::None);
    REQUIRE(root->get("betas")->kind == io::ValueKind::Tuple);
    CHECK(root->get("betas")->items.size() == 4);
    CHECK(root->get("config")->get("hidden")->integer == 32);
    CHECK(c.findings().empty());  // only globals torch itself writes
}

TEST_CASE("write_state_dict_pt refuses bad input and never replaces an input", "[pt_writer]") {
    test::TempDir dir;
    const auto p = dir / "out.pt";
    auto f = test::output_tensor("a", io::DType::F32, {2}, test::to_bytes(std::vector<float>{1, 2}));
    CHECK_THROWS_AS(io::write_state_dict_pt(p, {f, f}), Error);  // duplicate name
    CHECK_THROWS_AS(io::write_state_dict_pt(p, {test::output_tensor("a", io::DType::F32, {3}, test::to_bytes(std::vector<float>{1, 2}))}), Error);
    CHECK_THROWS_AS(io::write_state_dict_pt(p, {test::output_tensor("a", io::DType::U16, {1}, test::to_bytes(std::vector<std::uint16_t>{1}))}), Error);
    CHECK_THROWS_AS(io::write_state_dict_pt(p, {test::output_tensor("b", io::DType::Bool, {1}, test::to_bytes(std::vector<std::uint8_t>{2}))}), Error);
    io::OutputTensor tied;
    tied.name = "t";
    tied.shape = {3};
    tied.tied_to = "a";
    CHECK_THROWS_AS(io::write_state_dict_pt(p, {f, tied}), Error);  // shape differs
    CHECK_FALSE(fs::exists(p));

    io::write_state_dict_pt(p, {f});
    const std::string before = test::read_text(p);
    io::PtWriteOptions options;
    options.inputs = {p};
    CHECK_THROWS_AS(io::write_state_dict_pt(p, {test::output_tensor("a", io::DType::F32, {1}, test::to_bytes(std::vector<float>{9}))}, options), io::OutputError);
    CHECK(test::read_text(p) == before);
    CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator{}) == 1);  // no temporary left
}

TEST_CASE("re-emitted pickles unpickle to the same tree as their sources", "[pt_writer][repickle]") {
    int compared = 0;
    for (const char* name : {"plain_state_dict.pt", "training_checkpoint.pt", "dtypes.pt", "views.pt", "protocol4.pt",
                             "wrapped_model.pt", "module_prefix.pt", "ternary_export.pt"}) {
        INFO(name);
        io::ZipArchive zip(std::make_shared<io::MappedFile>(test::samples_dir() / name));
        auto pkl = zip.read(*zip.find_in_top_folder("data.pkl"));
        auto source = io::parse_pickle(pkl);
        auto again = io::repickle(pkl, {});
        auto parsed = io::parse_pickle(std::as_bytes(std::span<const char>(again.pickle.data(), again.pickle.size())));
        std::string why;
        CHECK(same_tree(source.root, parsed.root, why));
        INFO(why);
        CHECK(why.empty());
        CHECK(parsed.findings.size() == source.findings.size());
        CHECK(parsed.protocol == std::max(2, source.protocol));
        ++compared;
    }
    // The pickle corpus (protocols 0-5, odd opcodes): whatever bitfsck's reader accepts re-emits
    // to the same tree, with the same imports reported.
    for (const auto& e : fs::directory_iterator(test::samples_dir() / "pickles")) {
        if (e.path().extension() != ".pkl") continue;
        INFO(e.path().filename().string());
        const std::string raw = test::read_text(e.path());
        auto bytes = std::as_bytes(std::span<const char>(raw.data(), raw.size()));
        io::PickleDocument source;
        try {
            source = io::parse_pickle(bytes);
        } catch (const io::FormatError&) {
            continue;  // malformed on purpose
        }
        io::RepickleResult again;
        try {
            again = io::repickle(bytes, {});
        } catch (const io::FormatError& err) {
            // Only what cannot be carried over at all may be refused.
            CHECK((std::string(err.what()).find("extension registry") != std::string::npos ||
                   std::string(err.what()).find("out-of-band") != std::string::npos));
            continue;
        }
        auto parsed = io::parse_pickle(std::as_bytes(std::span<const char>(again.pickle.data(), again.pickle.size())));
        std::string why;
        CHECK(same_tree(source.root, parsed.root, why));
        INFO(why);
        std::multiset<std::string> a, b;
        for (const auto& f : source.findings) a.insert(f.global);
        for (const auto& f : parsed.findings) b.insert(f.global);
        CHECK(a == b);
        ++compared;
    }
    CHECK(compared > 20);
}

TEST_CASE("rewriting a training checkpoint changes only the replaced tensor", "[pt_writer][rewrite]") {
    test::TempDir dir;
    const auto src_path = test::samples_dir() / "training_checkpoint.pt";
    auto src = io::Checkpoint::open(src_path);
    const std::string name = "layers.0.mlp.up_proj.weight";
    const auto& orig = tensor(src, name);
    io::ReplacementTensor r;
    r.dtype = orig.dtype;
    r.shape = orig.shape;
    std::vector<float> values(static_cast<std::size_t>(orig.numel()));
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = (i % 3 == 0) ? -0.5f : (i % 3 == 1 ? 0.f : 0.5f);
    r.data = test::to_bytes(values);
    const auto out_path = dir / "rewritten.pt";
    auto report = io::rewrite_checkpoint_pt(src, out_path, {{name, r}});
    CHECK_FALSE(report.repickled);
    CHECK(report.rewritten_storages == std::vector<std::string>{orig.storage_key});
    check_layout(out_path);

    auto out = io::Checkpoint::open(out_path);
    REQUIRE(out.tensors().size() == src.tensors().size());
    for (const auto& t : src.tensors()) {
        INFO(t.path);
        const auto* o = out.find_tensor(t.in_state_dict ? t.name : t.path);
        REQUIRE(o != nullptr);
        CHECK(o->dtype == t.dtype);
        CHECK(o->shape == t.shape);
        CHECK(o->stride == t.stride);
        if (t.path == orig.path) CHECK(logical_bytes(out, *o) == r.data);
        else CHECK(logical_bytes(out, *o) == logical_bytes(src, t));
    }
    CHECK(logical_bytes(src, orig) != r.data);
    // The pickle and every record but the replaced one are byte for byte the source's.
    io::ZipArchive a(src.shared_file()), b(out.shared_file());
    REQUIRE(a.entries().size() == b.entries().size());
    for (std::size_t i = 0; i < a.entries().size(); ++i) {
        INFO(a.entries()[i].name);
        CHECK(a.entries()[i].name == b.entries()[i].name);
        if (a.entries()[i].name != orig.record) CHECK(a.read(a.entries()[i]) == b.read(b.entries()[i]));
    }

    // Wrong dtype, shape, size or name are refused before anything is written.
    auto bad = r;
    bad.shape = {1};
    CHECK_THROWS_AS(io::rewrite_checkpoint_pt(src, dir / "x.pt", {{name, bad}}), Error);
    bad = r;
    bad.data.pop_back();
    CHECK_THROWS_AS(io::rewrite_checkpoint_pt(src, dir / "x.pt", {{name, bad}}), Error);
    CHECK_THROWS_AS(io::rewrite_checkpoint_pt(src, dir / "x.pt", {{"no.such.tensor", r}}), Error);
    CHECK_THROWS_AS(io::rewrite_checkpoint_pt(src, src_path, {{name, r}}), io::OutputError);
    CHECK_FALSE(fs::exists(dir / "x.pt"));
}

TEST_CASE("dropping the optimizer state keeps everything else", "[pt_writer][rewrite]") {
    test::TempDir dir;
    auto src = io::Checkpoint::open(test::samples_dir() / "training_checkpoint.pt");
    io::RewriteOptions options;
    options.drop_optimizer_state = true;
    const auto out_path = dir / "slim.pt";
    auto report = io::rewrite_checkpoint_pt(src, out_path, {}, options);
    CHECK(report.repickled);
    CHECK(report.dropped_keys == std::vector<std::string>{"optimizer_state_dict"});
    check_layout(out_path);
    auto out = io::Checkpoint::open(out_path);
    const io::Value* a = src.root();
    const io::Value* b = out.root();
    REQUIRE(b->kind == io::ValueKind::Dict);
    CHECK(b->get("optimizer_state_dict") == nullptr);
    REQUIRE(b->entries.size() + 1 == a->entries.size());
    std::size_t j = 0;
    for (const auto& [key, value] : a->entries) {
        if (key->text == "optimizer_state_dict") continue;
        INFO(key->text);
        CHECK(b->entries[j].first->text == key->text);
        std::string why;
        CHECK(same_tree(value, b->entries[j].second, why));
        INFO(why);
        ++j;
    }
    // Every remaining tensor has its bytes, and the optimizer's storages are gone from the zip.
    std::set<std::string> keys;
    for (const auto& t : out.tensors()) {
        keys.insert(t.storage_key);
        const auto* s = src.find_tensor(t.in_state_dict ? t.name : t.path);
        REQUIRE(s != nullptr);
        CHECK(logical_bytes(out, t) == logical_bytes(src, *s));
    }
    io::ZipArchive zip(out.shared_file());
    std::size_t data_records = 0;
    for (const auto& e : zip.entries()) data_records += e.name.find("/data/") != std::string::npos;
    CHECK(data_records == keys.size());
    CHECK(out.tensors().size() < src.tensors().size());
}

TEST_CASE("replacing views and tied tensors writes only their elements of the shared storage", "[pt_writer][rewrite]") {
    test::TempDir dir;
    auto src = io::Checkpoint::open(test::samples_dir() / "views.pt");
    auto floats = [](const io::Checkpoint& c, const io::TensorEntry& t) {
        auto b = logical_bytes(c, t);
        std::vector<float> f(b.size() / 4);
        std::memcpy(f.data(), b.data(), b.size());
        return f;
    };
    auto replacement = [&](const std::string& name, std::vector<float> values) {
        const auto& t = tensor(src, name);
        io::ReplacementTensor r;
        r.dtype = t.dtype;
        r.shape = t.shape;
        r.data = test::to_bytes(values);
        return r;
    };
    const auto base = floats(src, tensor(src, "base"));
    const auto matrix = floats(src, tensor(src, "matrix"));

    std::vector<float> tr(20);
    for (int i = 0; i < 20; ++i) tr[static_cast<std::size_t>(i)] = 100.f + static_cast<float>(i);
    const auto out_path = dir / "views_new.pt";
    io::rewrite_checkpoint_pt(src, out_path,
                              {{"slice", replacement("slice", {-1, -2, -3, -4})},
                               {"transposed", replacement("transposed", tr)},
                               {"embed.weight", replacement("embed.weight", std::vector<float>(24, 0.25f))}});
    auto out = io::Checkpoint::open(out_path);
    auto new_base = floats(out, tensor(out, "base"));
    for (std::size_t i = 0; i < 10; ++i) {
        INFO(i);
        if (i >= 3 && i < 7) CHECK(new_base[i] == -static_cast<float>(i - 2));
        else CHECK(new_base[i] == base[i]);
    }
    CHECK(floats(out, tensor(out, "scalar")) == std::vector<float>{base[9]});
    // transposed is matrix.t(): matrix[r][c] = transposed[c][r] = 100 + c*4 + r.
    auto new_matrix = floats(out, tensor(out, "matrix"));
    for (std::size_t r = 0; r < 4; ++r)
        for (std::size_t c = 0; c < 5; ++c) CHECK(new_matrix[r * 5 + c] == 100.f + static_cast<float>(c * 4 + r));
    CHECK(floats(out, tensor(out, "transposed")) == tr);
    CHECK(floats(out, tensor(out, "lm_head.weight")) == std::vector<float>(24, 0.25f));  // tied: the same storage
    CHECK(floats(out, tensor(out, "expanded")) == floats(src, tensor(src, "expanded")));
    CHECK(matrix != new_matrix);

    // Replacements that disagree about a shared element are refused; agreeing ones are fine.
    CHECK_THROWS_AS(io::rewrite_checkpoint_pt(src, dir / "x.pt",
                                              {{"base", replacement("base", std::vector<float>(10, 1.f))},
                                               {"slice", replacement("slice", {2, 2, 2, 2})}}),
                    Error);
    std::vector<float> rows(12);
    for (std::size_t i = 0; i < 12; ++i) rows[i] = static_cast<float>(i);  // rows differ, but stride 0 makes them one row
    CHECK_THROWS_AS(io::rewrite_checkpoint_pt(src, dir / "x.pt", {{"expanded", replacement("expanded", rows)}}), Error);
    CHECK_FALSE(fs::exists(dir / "x.pt"));
    io::rewrite_checkpoint_pt(src, dir / "ok.pt",
                              {{"base", replacement("base", std::vector<float>(10, 1.f))},
                               {"slice", replacement("slice", {1, 1, 1, 1})}});
    auto ok = io::Checkpoint::open(dir / "ok.pt");
    CHECK(floats(ok, tensor(ok, "base")) == std::vector<float>(10, 1.f));
}

TEST_CASE("a legacy-format checkpoint is rewritten in the zip format", "[pt_writer][rewrite]") {
    test::TempDir dir;
    auto src = io::Checkpoint::open(test::samples_dir() / "legacy.pt");
    REQUIRE(src.format() == io::Format::TorchLegacy);
    const auto& inv = tensor(src, "rotary.inv_freq");  // a view at offset 4 of inv_freq_full
    io::ReplacementTensor r;
    r.dtype = inv.dtype;
    r.shape = inv.shape;
    r.data = test::to_bytes(std::vector<float>(8, 7.f));
    const auto out_path = dir / "legacy_as_zip.pt";
    auto report = io::rewrite_checkpoint_pt(src, out_path, {{"rotary.inv_freq", r}});
    CHECK(report.repickled);
    check_layout(out_path);
    auto out = io::Checkpoint::open(out_path);
    CHECK(out.format() == io::Format::TorchZip);
    auto sd_src = src.state_dict_tensors(), sd_out = out.state_dict_tensors();
    REQUIRE(sd_src.size() == sd_out.size());
    for (std::size_t i = 0; i < sd_src.size(); ++i) {
        INFO(sd_src[i]->name);
        CHECK(sd_out[i]->name == sd_src[i]->name);
        CHECK(sd_out[i]->shared_with == sd_src[i]->shared_with);
        CHECK(sd_out[i]->storage_offset == sd_src[i]->storage_offset);
        auto got = logical_bytes(out, *sd_out[i]);
        if (sd_src[i]->name == "rotary.inv_freq") CHECK(got == r.data);
        else if (sd_src[i]->name == "rotary.inv_freq_full") {
            auto want = logical_bytes(src, *sd_src[i]);
            std::memcpy(want.data() + 16, r.data.data(), r.data.size());  // elements 4..11 are the view's
            CHECK(got == want);
        } else {
            CHECK(got == logical_bytes(src, *sd_src[i]));
        }
    }
}
