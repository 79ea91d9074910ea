// Needs python3 with torch at test time: PyTorch builds a student of another shape (3 layers,
// 6 heads over 3 kv heads, head_dim 8, odd soft-caps and RoPE base, a "module." key prefix) and
// saves its logits under a "module." prefix; the C++ forward must match within 1e-4.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

#include "bitfsck/model/model.hpp"
#include "support.hpp"

using namespace bitfsck;

TEST_CASE("a student of another shape, written by PyTorch now, matches within 1e-4") {
    test::TempDir tmp;
    const std::string script = R"PY(
import json, sys, torch
sys.path.insert(0, sys.argv[1])
import make_models as mm
ref = mm.ref
torch.manual_seed(11)
cfg = ref.ModelConfig(vocab_size=100, hidden_size=48, num_layers=3, num_heads=6, num_kv_heads=3, head_dim=8,
                      intermediate_size=80, rope_theta=500.0, attn_softcap=3.0, logit_softcap=7.0, init_std=0.2)
model = ref.StudentLLM(cfg).eval()
mm.jitter_norms(model, torch.Generator().manual_seed(1))
ids = torch.randint(0, 100, (3, 17), generator=torch.Generator().manual_seed(2))
with torch.no_grad():
    logits, _ = mm.student_forward(model, ids)
sd = {"module." + k: v for k, v in model.state_dict().items()}
torch.save({"state_dict": sd, "hparams": cfg.to_dict()}, sys.argv[2] + "/m.pt")
logits.numpy().astype("<f4").tofile(sys.argv[2] + "/logits.f32")
json.dump(ids.tolist(), open(sys.argv[2] + "/ids.json", "w"))
)PY";
    test::write_bytes(tmp / "make.py", script);
    auto r = test::run_command(test::python() + " " + test::quote(tmp / "make.py") + " " + test::quote(test::samples_dir()) + " " +
                               test::quote(tmp.path()));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);

    auto ck = io::Checkpoint::open(tmp / "m.pt");
    auto m = model::Model::load(ck);
    CHECK(m.config().num_layers == 3);
    CHECK(m.config().num_heads == 6);
    CHECK(m.config().num_kv_heads == 3);
    CHECK(m.config().attn_softcap == 3.0);
    CHECK(m.config().rope_theta == 500.0);
    std::vector<std::int64_t> ids;
    for (const auto& row : test::read_json(tmp / "ids.json"))
        for (const auto& v : row) ids.push_back(v.get<std::int64_t>());
    auto logits = m.forward(ids, 3, 17, true);
    std::string bytes = test::read_text(tmp / "logits.f32");
    REQUIRE(bytes.size() == logits.size() * 4);
    std::vector<float> want(logits.size());
    std::memcpy(want.data(), bytes.data(), bytes.size());
    double err = 0;
    for (std::size_t i = 0; i < want.size(); ++i) err = std::max(err, double(std::abs(want[i] - logits[i])));
    INFO("max abs logit error " << err);
    CHECK(err <= 1e-4);
}
