#pragma once
#include <optional>
#include <string_view>

namespace bitfsck::analysis {

// The two absmean quantizer conventions found in BitNet b1.58 code. Both compute
// Wq = clamp(round(W / g), -1, 1) with round half to even; they differ in g:
//   BitNet:    g = max(mean|W|, 1e-5)  (microsoft/BitNet, Hugging Face, onebitllms)
//   Distillix: g = mean|W| + 1e-8      (recomputed every forward)
// The quantizer is scale-invariant except for that floor, so a layer whose weights all
// shrank keeps healthy-looking codes under Distillix while its output (scaled by g) vanishes,
// and snaps to all zeros under BitNet. Verdicts therefore also look at g itself.
enum class Quantizer { BitNet, Distillix };

std::string_view quantizer_name(Quantizer q);  // "bitnet", "distillix"
std::optional<Quantizer> quantizer_from_name(std::string_view name);
double effective_scale(Quantizer q, double absmean);
// The ternary zero fraction of a healthy Gaussian layer under the absmean quantizer:
// P(|x| < E|x| / 2) = erf(1 / (2 sqrt(pi))) ~ 31.0%. Repair's default target and fine-tuning's.
double healthy_gaussian_zero_fraction();

// torch.round semantics (half to even), then clamp to [-1, 1].
inline int ternary_code(double w, double scale) {
    double x = w / scale;
    double r = __builtin_nearbyint(x);  // default FE_TONEAREST: ties to even
    return r > 0 ? 1 : (r < 0 ? -1 : 0);
}

}  // namespace bitfsck::analysis
