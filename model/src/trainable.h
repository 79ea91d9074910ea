#pragma once
// The model as fine-tuning sees it: the forward pass of transformer.cpp over fp32 latent weights
// that require grad, with BitLinear's quantizers applied in every forward through straight-through
// estimators. Internal to model/ (it exposes LibTorch types); finetune.hpp is the public face.
#include "torch_compat.h"

#include <memory>
#include <string>
#include <vector>

#include "bitfsck/model/model.hpp"

namespace bitfsck::model {

struct TrainableParameter {
    std::string name;  // state-dict key, as stored (prefix included)
    at::Tensor leaf;   // fp32, stored shape (GPT-2 Conv1D stays [in, out]; the forward transposes a view)
    bool unpacked = false;  // stored packed: the latent starts from the decoded ternary values
};

struct TrainableModel {
    std::shared_ptr<Model::Impl> impl;
    std::vector<TrainableParameter> parameters;  // each leaf once, in load order (a tied head is the embedding)

    // Logits [B, T, V] of ids [B, T] (int64), recorded for autograd unless a no-grad guard is active.
    at::Tensor logits(const at::Tensor& ids) const;
    const ModelConfig& config() const;
    at::Device device() const;
};

// Throws ModelError for a layout that cannot be trained (Hugging Face BitNet's packed uint8).
TrainableModel load_trainable(const io::Checkpoint& checkpoint, const LoadOptions& options);

}  // namespace bitfsck::model
