// Sharded Hugging Face checkpoints written by huggingface_hub's save_torch_state_dict (what
// transformers' save_pretrained calls) read as one model; config.json's quantization_config
// decides what a BitNet weight_scale means.
#include <algorithm>
#include <cmath>

#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/checkpoint_files.hpp"
#include "bitfsck/io/error.hpp"
#include "releases.hpp"

using namespace bitfsck;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

double mean_abs(const io::Checkpoint& c, const io::TensorEntry& t) {
    std::vector<double> v(static_cast<std::size_t>(t.numel()));
    c.data(t).read(0, t.numel(), v.data());
    double s = 0;
    for (double x : v) s += std::fabs(x);
    return s / static_cast<double>(v.size());
}

bool any_contains(const std::vector<std::string>& lines, const std::string& text) {
    return std::any_of(lines.begin(), lines.end(), [&](const std::string& n) { return n.find(text) != std::string::npos; });
}

std::string open_error(const fs::path& p) {
    try {
        io::Checkpoint::open(p);
    } catch (const io::FormatError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("a sharded safetensors release opens as one model, packed pairs resolved across shards", "[shards]") {
    const fs::path folder = test::releases("sharded") / "bitnet_autobitlinear";
    const io::Checkpoint c = io::Checkpoint::open(folder);
    CHECK(c.sharded());
    REQUIRE(c.index_path());
    CHECK(c.index_path()->filename() == "model.safetensors.index.json");
    CHECK(c.shards().size() == 15);
    CHECK(c.format() == io::Format::Safetensors);
    // The packed q_proj of layer 0 and its weight_scale were written to different shards.
    const io::TensorEntry* q = c.find_tensor("model.layers.0.self_attn.q_proj.weight");
    REQUIRE(q);
    CHECK(q->encoding == io::TensorEncoding::HFPacked);
    CHECK(q->shape == std::vector<std::int64_t>{256, 256});
    CHECK(c.shards()[q->shard].path.filename() == "model-00002-of-00015.safetensors");
    CHECK(c.find_tensor("model.layers.0.self_attn.q_proj.weight_scale") == nullptr);  // folded into the weight
    // Opening the index names the same model.
    const io::Checkpoint by_index = io::Checkpoint::open(folder / "model.safetensors.index.json");
    CHECK(by_index.tensors().size() == c.tensors().size());
    CHECK(io::expand_checkpoint_inputs({folder.string()}) == std::vector<fs::path>{folder});
}

TEST_CASE("config.json decides whether weight_scale divides or multiplies, the magnitude is only a fallback", "[shards]") {
    const fs::path dir = test::releases("sharded");
    for (const char* name : {"bitnet_autobitlinear", "bitnet_bitlinear"}) {
        INFO(name);
        const auto expected = test::read_json(dir / (std::string(name) + ".expected.json"))["tensors"];
        const io::Checkpoint c = io::Checkpoint::open(dir / name);
        REQUIRE(c.config());
        REQUIRE(c.config()->bitnet);
        CHECK(any_contains(c.notes(), "from " + (dir / name / "config.json").string()));
        for (const auto& [tensor, want] : expected.items()) {
            INFO(tensor);
            const io::TensorEntry* t = c.find_tensor(tensor);
            REQUIRE(t);
            CHECK(mean_abs(c, *t) == Approx(want["absmean"].get<double>()).epsilon(1e-6));
        }
        // Without config.json the scales (near 1.5) are guessed from their magnitude: wrong here,
        // by the factor 1/s² the guess inverts, and the report warns that it guessed.
        test::TempDir tmp;
        const fs::path bare = test::copy_of(dir / name, tmp);
        fs::remove(bare / "config.json");
        const io::Checkpoint guessed = io::Checkpoint::open(bare);
        CHECK_FALSE(guessed.config());
        CHECK(any_contains(guessed.warnings(), "guessed from magnitudes near 1"));
        const io::TensorEntry* q = guessed.find_tensor("model.layers.0.self_attn.q_proj.weight");
        const double truth = expected["model.layers.0.self_attn.q_proj.weight"]["absmean"].get<double>();
        CHECK(std::fabs(mean_abs(guessed, *q) / truth - 1.0) > 0.3);
    }
}

TEST_CASE("a config.json that contradicts strongly what the scales say is followed, with a warning", "[shards]") {
    test::TempDir tmp;
    const fs::path folder = test::copy_of(test::releases("sharded") / "bitnet_bitlinear_trained", tmp);
    // The scales hold 1/0.02 = 50: BitLinear's reciprocal. A config claiming AutoBitLinear is wrong.
    std::string config = test::read_text(folder / "config.json");
    config.replace(config.find("\"bitlinear\""), 11, "\"autobitlinear\"");
    test::write_bytes(folder / "config.json", config);
    const io::Checkpoint c = io::Checkpoint::open(folder);
    CHECK(any_contains(c.warnings(), "look like 1/absmean (confidence high): check that config.json belongs to these weights"));
    const io::TensorEntry* q = c.find_tensor("model.layers.0.self_attn.q_proj.weight");
    CHECK_FALSE(q->packed.reciprocal_scale);  // what config.json says, which is authoritative
}

TEST_CASE("pickle shards (pytorch_model-0000N-of-0000M.bin) are one model with the sample run's tensors", "[shards]") {
    const fs::path dir = test::releases("sharded");
    const io::Checkpoint whole = io::Checkpoint::open(test::samples_dir() / "run/step_000350.pt");
    for (const char* name : {"run350_bin", "run350_safetensors"}) {
        INFO(name);
        const io::Checkpoint c = io::Checkpoint::open(dir / name);
        CHECK(c.shards().size() == 5);
        CHECK(c.findings().empty());
        const auto sd = c.state_dict_tensors();
        REQUIRE(sd.size() == whole.state_dict_tensors().size());
        for (const io::TensorEntry* t : whole.state_dict_tensors()) {
            INFO(t->name);
            const io::TensorEntry* s = c.find_tensor(t->name);
            REQUIRE(s);
            CHECK(s->shape == t->shape);
            std::vector<float> a(static_cast<std::size_t>(t->numel())), b(a.size());
            whole.data(*t).read(0, t->numel(), a.data());
            c.data(*s).read(0, s->numel(), b.data());
            CHECK(a == b);
        }
    }
}

TEST_CASE("a broken shard set is refused with the files named", "[shards]") {
    const fs::path source = test::releases("sharded") / "bitnet_autobitlinear";
    SECTION("a missing shard") {
        test::TempDir tmp;
        const fs::path f = test::copy_of(source, tmp);
        fs::remove(f / "model-00003-of-00015.safetensors");
        CHECK_THAT(open_error(f), Contains("model.safetensors.index.json") && Contains("lists shard model-00003-of-00015.safetensors, which is missing"));
        fs::remove(f / "model.safetensors.index.json");  // without the index, the names still tell
        CHECK_THAT(open_error(f), Contains("shard model-00003-of-00015.safetensors of 15 is missing"));
    }
    SECTION("a tensor the index lists but no shard holds") {
        test::TempDir tmp;
        const fs::path f = test::copy_of(source, tmp);
        std::string index = test::read_text(f / "model.safetensors.index.json");
        index.replace(index.find("\"weight_map\": {") + 15, 0, "\n    \"model.layers.7.mlp.up_proj.weight\": \"model-00004-of-00015.safetensors\",");
        test::write_bytes(f / "model.safetensors.index.json", index);
        CHECK_THAT(open_error(f), Contains("lists tensor 'model.layers.7.mlp.up_proj.weight' in model-00004-of-00015.safetensors, which does not hold it"));
    }
    SECTION("a tensor stored in two shards") {
        test::TempDir tmp;
        const fs::path f = test::copy_of(source, tmp);
        fs::copy_file(f / "model-00004-of-00015.safetensors", f / "model-00005-of-00015.safetensors", fs::copy_options::overwrite_existing);
        CHECK_THAT(open_error(f), Contains("is stored twice, in model-00004-of-00015.safetensors and in model-00005-of-00015.safetensors"));
    }
    SECTION("a shard of another model") {
        test::TempDir tmp;
        const fs::path f = test::copy_of(source, tmp);
        fs::copy_file(test::releases("sharded") / "run350_safetensors/model-00001-of-00005.safetensors", f / "model-00003-of-00015.safetensors",
                      fs::copy_options::overwrite_existing);
        CHECK_THAT(open_error(f), Contains("model-00003-of-00015.safetensors"));
        fs::remove(f / "model.safetensors.index.json");
        fs::copy_file(test::releases("sharded") / "run350_safetensors/model-00002-of-00005.safetensors", f / "model-00002-of-00005.safetensors");
        CHECK_THAT(open_error(f), Contains("two sets of shards"));
    }
}

TEST_CASE("a run of checkpoint-N/ folders is a run of models, stepped by trainer_state.json", "[shards]") {
    const fs::path run = test::releases("sharded") / "hf_run";
    const auto inputs = io::expand_checkpoint_inputs({run.string()});
    REQUIRE(inputs.size() == 7);
    CHECK(inputs.front().filename() == "checkpoint-100");  // name order; the timeline sorts by step
    for (const auto& in : inputs) {
        const io::Checkpoint c = io::Checkpoint::open(in);
        CHECK(c.sharded());
        CHECK(c.step() == std::stoll(in.filename().string().substr(11)));
    }
}
