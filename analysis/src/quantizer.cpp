#include "bitfsck/analysis/quantizer.hpp"

#include <algorithm>

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
        case Quantizer::BitNet: return std::max(absmean, 1e-5);
        case Quantizer::Distillix: return absmean + 1e-8;
    }
    return absmean;
}

}  // namespace bitfsck::analysis
