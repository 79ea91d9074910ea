#pragma once
// Gradient averaging across data-parallel processes on PyTorch's own c10d (Gloo on CPU, NCCL where
// LibTorch was built with it): one all-reduce of one flat buffer per step, so every rank applies
// bit-identical updates. Internal to model/.
#include "torch_compat.h"

#include <memory>
#include <vector>

#include "bitfsck/model/finetune.hpp"

namespace bitfsck::model {

class GradientReducer {
public:
    // Rendezvous through a TCPStore at MASTER_ADDR:MASTER_PORT (rank 0 serves it). Throws
    // ModelError when the peers cannot be reached.
    GradientReducer(const DistributedEnv& env, at::Device device);
    ~GradientReducer();
    // Replaces each tensor by its mean over the ranks. `tensors` must have the same shapes and
    // order on every rank.
    void average(const std::vector<at::Tensor>& tensors);
    const std::string& backend() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace bitfsck::model
