// Data-parallel gradient averaging on c10d. Gloo is in every LibTorch with distributed support
// (Debian's included; its headers come from libgloo-dev); NCCL is used for CUDA tensors where this
// LibTorch was built with it, otherwise the flat buffer travels through Gloo on the host.
#include "distributed.h"

#include <cstdlib>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace bitfsck::model {

struct GradientReducer::Impl {
    DistributedEnv env;
    at::Device device{at::kCPU};
    c10::intrusive_ptr<c10d::Store> store;
    c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#if defined(USE_C10D_NCCL)
    c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
    std::string backend = "gloo";
};

namespace {

std::shared_ptr<::gloo::transport::Device> gloo_device(const DistributedEnv& env) {
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
        return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
    // One machine: stay on loopback, whatever the host name resolves to.
    if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost")
        return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
    return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

GradientReducer::GradientReducer(const DistributedEnv& env, at::Device device) : impl_(std::make_unique<Impl>()) {
    impl_->env = env;
    impl_->device = device;
    const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
    try {
        c10d::TCPStoreOptions so;
        so.port = static_cast<std::uint16_t>(env.master_port);
        so.isServer = env.rank == 0;
        so.numWorkers = static_cast<std::size_t>(env.world_size);
        so.timeout = std::chrono::seconds(300);
        impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
#if defined(USE_C10D_NCCL)
        if (device.is_cuda()) {
            impl_->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, env.rank, env.world_size);
            impl_->backend = "nccl";
            return;
        }
#endif
        auto opts = c10d::ProcessGroupGloo::Options::create();
        opts->devices.push_back(gloo_device(env));
        impl_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env.rank, env.world_size, opts);
    } catch (const std::exception& e) {
        throw ModelError("rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) +
                         ": cannot join the process group at " + where + " (" + e.what() + ")");
    }
}

GradientReducer::~GradientReducer() = default;

const std::string& GradientReducer::backend() const { return impl_->backend; }

void GradientReducer::average(const std::vector<at::Tensor>& tensors) {
    if (tensors.empty()) return;
    std::vector<at::Tensor> flat_parts;
    flat_parts.reserve(tensors.size());
    for (const auto& t : tensors) flat_parts.push_back(t.reshape({-1}));
    at::Tensor flat = at::cat(flat_parts);
    std::vector<at::Tensor> buffer;
#if defined(USE_C10D_NCCL)
    if (impl_->nccl) {
        buffer = {flat};
        impl_->nccl->allreduce(buffer)->wait();
    } else
#endif
    {
        buffer = {flat.to(at::kCPU)};
        impl_->gloo->allreduce(buffer)->wait();
    }
    flat = buffer[0].to(flat.device()) / static_cast<double>(impl_->env.world_size);
    std::int64_t offset = 0;
    for (const auto& t : tensors) {
        const std::int64_t n = t.numel();
        t.copy_(flat.slice(0, offset, offset + n).view(t.sizes()));
        offset += n;
    }
}

}  // namespace bitfsck::model
