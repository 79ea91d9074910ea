// The C++ forward passes against PyTorch's, on the fixtures of sample_ckpts/make_models.py
// (logits and attention saved by the Python reference for a fixed input; fp32 CPU, max abs
// error <= 1e-4). No Python is needed at test time.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include "bitfsck/model/model.hpp"
#include "support.hpp"

using namespace bitfsck;
using namespace bitfsck::model;

namespace {

std::filesystem::path models_dir() { return test::samples_dir() / "models"; }

std::vector<float> read_f32(const std::filesystem::path& p) {
    std::string bytes = test::read_text(p);
    REQUIRE(bytes.size() % 4 == 0);
    std::vector<float> v(bytes.size() / 4);
    std::memcpy(v.data(), bytes.data(), bytes.size());
    return v;
}

struct Reference {
    std::vector<std::int64_t> ids;
    std::int64_t batch = 0, seq = 0;
    nlohmann::json doc;
    std::vector<float> array(const std::string& what) const {
        return read_f32(models_dir() / doc["arrays"][what]["file"].get<std::string>());
    }
};

Reference load_reference(const std::string& name) {
    Reference r;
    r.doc = test::read_json(models_dir() / (name + ".ref.json"));
    for (const auto& row : r.doc["input_ids"]) {
        for (const auto& v : row) r.ids.push_back(v.get<std::int64_t>());
        r.seq = static_cast<std::int64_t>(row.size());
        ++r.batch;
    }
    return r;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])));
    return m;
}

// Runs the forward pass, collecting attention into [layer, batch, head, T, T] like the reference.
std::pair<std::vector<float>, std::vector<float>> run(const Model& m, const Reference& r) {
    std::vector<float> attn;
    auto logits = m.forward(r.ids, r.batch, r.seq, true, [&](const LayerAttention& a) {
        attn.insert(attn.end(), a.probs, a.probs + a.batch * a.heads * a.queries * a.keys);
    });
    return {logits, attn};
}

}  // namespace

TEST_CASE("Llama-style student: logits and attention match PyTorch") {
    auto ck = io::Checkpoint::open(models_dir() / "llama_student.pt");
    auto ref = load_reference("llama_student");
    Model m = Model::load(ck);
    const auto& c = m.config();
    CHECK(c.layout == Layout::LlamaStudent);
    CHECK(c.num_layers == 2);
    CHECK(c.num_heads == 4);
    CHECK(c.num_kv_heads == 2);
    CHECK(c.head_dim == 16);
    CHECK(c.intermediate_size == 172);
    CHECK(c.attn_softcap == 5.0);   // from the config stored in the checkpoint, not the default 50
    CHECK(c.logit_softcap == 10.0);
    CHECK(c.tied_lm_head);
    auto [logits, attn] = run(m, ref);
    double e_logits = max_abs_diff(logits, ref.array("logits"));
    double e_attn = max_abs_diff(attn, ref.array("attention"));
    INFO("max abs error: logits " << e_logits << ", attention " << e_attn);
    CHECK(e_logits <= 1e-4);
    CHECK(e_attn <= 1e-4);
    // The fixture is not trivially small: a wrong model would be far off.
    double mx = 0;
    for (float v : logits) mx = std::max(mx, double(std::abs(v)));
    CHECK(mx > 5.0);
}

TEST_CASE("Llama-style student: unquantized and per-channel switches match PyTorch") {
    auto ck = io::Checkpoint::open(models_dir() / "llama_student.pt");
    auto ref = load_reference("llama_student");
    LoadOptions o;
    o.config.overrides = {{"quantize", false}};
    auto unq = run(Model::load(ck, o), ref).first;
    CHECK(max_abs_diff(unq, ref.array("logits_unquantized")) <= 1e-4);
    CHECK(max_abs_diff(unq, ref.array("logits")) > 1e-2);  // quantization really is switched off
    o.config.overrides = {{"weight_quant", "channel"}};
    auto chan = run(Model::load(ck, o), ref).first;
    CHECK(max_abs_diff(chan, ref.array("logits_per_channel")) <= 1e-4);
}

TEST_CASE("Hugging Face BitNet: packed weights, sub-norms, relu², config from a JSON file") {
    auto ck = io::Checkpoint::open(models_dir() / "hf_bitnet.pt");
    auto ref = load_reference("hf_bitnet");
    LoadOptions o;
    o.config.json_file = models_dir() / "hf_bitnet.config.json";
    Model m = Model::load(ck, o);
    CHECK(m.config().layout == Layout::HfBitNet);
    CHECK(m.config().prefix == "model.");
    CHECK_FALSE(m.config().tied_lm_head);
    CHECK(m.config().num_kv_heads == 2);
    CHECK(m.config().bos_token_id == 1);
    auto [logits, attn] = run(m, ref);
    INFO("max abs error: logits " << max_abs_diff(logits, ref.array("logits")));
    CHECK(max_abs_diff(logits, ref.array("logits")) <= 1e-4);
    CHECK(max_abs_diff(attn, ref.array("attention")) <= 1e-4);
}

TEST_CASE("Hugging Face BitNet without a config: the assumed head_dim 64 does not fit, and the error says what to give") {
    auto ck = io::Checkpoint::open(models_dir() / "hf_bitnet.pt");
    REQUIRE_THROWS_WITH(resolve_config(ck), Catch::Contains("k_proj.weight") && Catch::Contains("head_dim 64") && Catch::Contains("--heads"));
    ConfigSources s;
    s.overrides = {{"head_dim", 16}};
    auto cfg = resolve_config(ck, s);
    CHECK(cfg.num_heads == 4);
    CHECK(cfg.num_kv_heads == 2);
}

TEST_CASE("GPT-2 BitNet: Conv1D weights, learned positions, config from a pickled dataclass") {
    io::OpenOptions open;
    open.pickle.trusted_globals.insert("__main__.GPTConfig");
    auto ck = io::Checkpoint::open(models_dir() / "gpt2_bitnet.pt", open);
    auto ref = load_reference("gpt2_bitnet");
    Model m = Model::load(ck);
    CHECK(m.config().layout == Layout::Gpt2);
    CHECK(m.config().num_heads == 4);  // only the opaque config object says so
    CHECK(m.config().max_positions == 32);
    auto [logits, attn] = run(m, ref);
    INFO("max abs error: logits " << max_abs_diff(logits, ref.array("logits")));
    CHECK(max_abs_diff(logits, ref.array("logits")) <= 1e-4);
    CHECK(max_abs_diff(attn, ref.array("attention")) <= 1e-4);
    // Past the position table is a clear error.
    std::vector<std::int64_t> long_ids(33, 1);
    REQUIRE_THROWS_WITH(m.forward(long_ids, 1, 33, true), Catch::Contains("wpe.weight"));
}

TEST_CASE("KV-cache decoding gives the logits of the full forward pass") {
    for (std::string name : {"llama_student", "hf_bitnet", "gpt2_bitnet"}) {
        io::OpenOptions open;
        open.pickle.trusted_globals.insert("__main__.GPTConfig");
        auto ck = io::Checkpoint::open(models_dir() / (name + ".pt"), open);
        LoadOptions o;
        if (name == "hf_bitnet") o.config.json_file = models_dir() / "hf_bitnet.config.json";
        Model m = Model::load(ck, o);
        auto ref = load_reference(name);
        std::vector<std::int64_t> row(ref.ids.begin(), ref.ids.begin() + ref.seq);
        auto full = m.forward(row, 1, ref.seq, true);
        const std::int64_t V = m.config().vocab_size;
        Session s = m.start_session();
        // A prompt of 5 tokens, then one at a time.
        auto last = s.feed(std::span(row).subspan(0, 5));
        double err = 0;
        for (std::int64_t t = 4; t < ref.seq; ++t) {
            if (t > 4) last = s.feed(std::span(row).subspan(static_cast<std::size_t>(t), 1));
            for (std::int64_t v = 0; v < V; ++v) err = std::max(err, double(std::abs(last[v] - full[t * V + v])));
        }
        INFO(name << ": max abs error cache vs full " << err);
        CHECK(err <= 1e-4);
        CHECK(s.position() == ref.seq);
    }
}

TEST_CASE("a config that contradicts the tensors is an error naming the tensor") {
    auto ck = io::Checkpoint::open(models_dir() / "llama_student.pt");
    ConfigSources s;
    s.overrides = {{"num_kv_heads", 4}};
    REQUIRE_THROWS_WITH(resolve_config(ck, s), Catch::Contains("layers.0.self_attn.k_proj.weight") && Catch::Contains("num_kv_heads"));
    s.overrides = {{"hidden_size", 32}};
    REQUIRE_THROWS_WITH(resolve_config(ck, s), Catch::Contains("embed_tokens.weight"));
    s.overrides = {{"num_layers", 3}};
    REQUIRE_THROWS_WITH(resolve_config(ck, s), Catch::Contains("layers.2.self_attn.q_proj.weight"));
}

TEST_CASE("a checkpoint without a known layout is an error naming the file") {
    auto ck = io::Checkpoint::open(test::samples_dir() / "dtypes.pt");
    REQUIRE_THROWS_WITH(resolve_config(ck), Catch::Contains("dtypes.pt") && Catch::Contains("layout"));
}

TEST_CASE("token ids outside the vocabulary and bad devices are clear errors") {
    auto ck = io::Checkpoint::open(models_dir() / "llama_student.pt");
    Model m = Model::load(ck);
    std::vector<std::int64_t> ids{1, 300};
    REQUIRE_THROWS_WITH(m.forward(ids, 1, 2, true), Catch::Contains("300") && Catch::Contains("vocabulary"));
    LoadOptions o;
    o.device = "gpu";
    REQUIRE_THROWS_WITH(Model::load(ck, o), Catch::Contains("cpu, cuda or cuda:N"));
    CHECK(valid_device_name("cuda:1"));
    CHECK_FALSE(valid_device_name("cuda:"));
}

TEST_CASE("a CUDA device runs where LibTorch has CUDA and is a clear error elsewhere") {
    auto ck = io::Checkpoint::open(models_dir() / "llama_student.pt");
    auto ref = load_reference("llama_student");
    LoadOptions o;
    o.device = "cuda";
    std::optional<Model> m;
    try {
        m.emplace(Model::load(ck, o));
    } catch (const ModelError& e) {
        CHECK(std::string(e.what()).find("use --device cpu") != std::string::npos);
        return;
    }
    CHECK(m->device().rfind("cuda", 0) == 0);
    auto [logits, attn] = run(*m, ref);
    CHECK(max_abs_diff(logits, ref.array("logits")) <= 1e-3);
}
