#pragma once
// A loaded model behind a header without LibTorch: the CLI, the probes and most tests include
// this, and only model/src/transformer.cpp compiles against torch.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "bitfsck/model/config.hpp"

namespace bitfsck::model {

struct LoadOptions {
    ConfigSources config;
    std::string device = "cpu";  // "cpu", "cuda", "cuda:N"
    int threads = 0;             // intra-op CPU threads; 0: LibTorch's default
};

// One layer's attention probabilities, on the host: probs[((b·heads + h)·queries + t)·keys + k]
// (queries = keys = seq for a full forward pass).
struct LayerAttention {
    std::int64_t layer = 0;
    std::int64_t batch = 0, heads = 0, queries = 0, keys = 0;
    const float* probs = nullptr;
};
using AttentionSink = std::function<void(const LayerAttention&)>;

struct LossSum {
    double nll_sum = 0;       // summed next-token cross entropy (nats)
    std::int64_t count = 0;   // targets
    // Model::next_token_loss: each row's (window's) own sum, in row order, so that two models can be
    // compared window by window on the same data (paired intervals, repair/resurrect).
    std::vector<double> row_nll;
};

class Session;

class Model {
public:
    // Builds the model on the device: resolves the config, reads every tensor once and quantizes
    // the BitLinear weights once. Throws ModelError / io errors naming the file and tensor.
    static Model load(const io::Checkpoint& checkpoint, const LoadOptions& options = {});

    Model(Model&&) noexcept;
    Model& operator=(Model&&) noexcept;
    ~Model();

    const ModelConfig& config() const;
    std::string device() const;

    // ids: row-major [batch, seq]. Calls `on_attention` once per layer (in order) with that layer's
    // probabilities when given. Returns the logits [batch, seq, vocab] on the host when
    // want_logits, else nothing (and skips the lm_head).
    std::vector<float> forward(std::span<const std::int64_t> ids, std::int64_t batch, std::int64_t seq, bool want_logits,
                               const AttentionSink& on_attention = {}) const;

    // Next-token loss of windows: ids row-major [batch, seq + 1]; inputs are the first seq tokens.
    LossSum next_token_loss(std::span<const std::int64_t> ids, std::int64_t batch, std::int64_t seq_plus_one) const;

    // A decoding session with a KV cache (batch 1).
    Session start_session() const;

    struct Impl;

private:
    explicit Model(std::shared_ptr<Impl> impl);
    std::shared_ptr<Impl> impl_;
};

class Session {
public:
    Session(Session&&) noexcept;
    Session& operator=(Session&&) noexcept;
    ~Session();
    // Appends ids at the current position and returns the logits of the last one (vocab floats).
    std::vector<float> feed(std::span<const std::int64_t> ids);
    std::int64_t position() const;

    struct State;

private:
    friend class Model;
    explicit Session(std::unique_ptr<State> s);
    std::unique_ptr<State> state_;
};

// The torch device string accepted by --device, checked for syntax only ("cpu", "cuda", "cuda:N").
bool valid_device_name(const std::string& name);
// The device the model would run on, checked before any work: a malformed name, CUDA with a
// LibTorch built without it or on a machine without a GPU, or an index past the visible GPUs is a
// ModelUsageError (exit 1) naming the flag, so a job fails in its first second, not after loading.
void require_device(const std::string& name);

}  // namespace bitfsck::model
