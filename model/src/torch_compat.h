#pragma once
// The only place LibTorch comes in, and where its version differences are settled. Only ATen and
// the CUDA query are included (not torch/torch.h and its whole nn frontend): this file's users
// build several seconds faster per translation unit.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>
#include <torch/version.h>

#if !defined(TORCH_VERSION_MAJOR)
#error "bitfsck model: LibTorch without torch/version.h version macros is not supported"
#endif

namespace bitfsck::model::compat {

// 1.13 has no public scaled_dot_product_attention (and the probes need the probabilities anyway)
// and no rms_norm op, so both are written from matmul/softmax/rsqrt in transformer.cpp on every
// version. What differs by version is kept here.
inline at::Tensor gelu_tanh(const at::Tensor& x) {
#if TORCH_VERSION_MAJOR > 1 || (TORCH_VERSION_MAJOR == 1 && TORCH_VERSION_MINOR >= 12)
    return at::gelu(x, "tanh");
#else
    // Before 1.12 gelu had no approximate= argument: the tanh form written out, as GPT-2's gelu_new.
    return 0.5 * x * (1.0 + at::tanh(0.7978845608028654 * (x + 0.044715 * at::pow(x, 3))));
#endif
}

// Whether this LibTorch was built with CUDA (model/CMakeLists.txt sets it from the torch_cuda
// target): at run time "no CUDA build" and "no GPU" look alike, and a user needs to know which.
#if defined(BITFSCK_TORCH_CUDA)
inline constexpr bool built_with_cuda = true;
#else
inline constexpr bool built_with_cuda = false;
#endif

inline std::string version_string() {
    return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
           std::to_string(TORCH_VERSION_PATCH);
}

}  // namespace bitfsck::model::compat
