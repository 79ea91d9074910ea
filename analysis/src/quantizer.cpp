#include "bitfsck/analysis/quantizer.hpp"

#include <algorithm>
#include <cmath>

#include "bitfsck/io/packed.hpp"

namespace bitfsck::analysis {

std::string_view quantizer_name(Quantizer q) {
    switch (q) {
        case Quantizer::BitNet: return "bitnet";
        case Quantizer::Distillix: return "distillix";
    }
    return "bitnet";
}

std::optional<Quantizer> quantizer_from_name(std::string_view name) {
    if (name == "bitnet") return Quantizer::BitNet;
    if (name == "distillix") return Quantizer::Distillix;
    return std::nullopt;
}

double effective_scale(Quantizer q, double absmean) {
    switch (q) {
        case Quantizer::BitNet: return io::bitnet_gamma(absmean);
        case Quantizer::Distillix: return absmean + 1e-8;
    }
    return absmean;
}

double healthy_gaussian_zero_fraction() {
    // |x| < E|x| / 2 = sqrt(2/pi) / 2 for x ~ N(0, 1).
    return std::erf(std::sqrt(2.0 / M_PI) / 2 / std::sqrt(2.0));
}

}  // namespace bitfsck::analysis
