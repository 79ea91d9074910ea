#include "bitfsck/analysis/thresholds.hpp"

#include <cmath>
#include <string_view>

#include "bitfsck/io/error.hpp"

namespace bitfsck::analysis {

namespace {

// One table drives both directions, so a new field cannot be written but not read.
struct Field {
    std::string_view key;
    double Thresholds::*real = nullptr;
    std::uint64_t Thresholds::*count = nullptr;
};

constexpr Field kFields[] = {
    {"collapsed_std", &Thresholds::collapsed_std, nullptr},
    {"collapsed_zero_frac", &Thresholds::collapsed_zero_frac, nullptr},
    {"degraded_zero_frac", &Thresholds::degraded_zero_frac, nullptr},
    {"collapsed_role_ratio", &Thresholds::collapsed_role_ratio, nullptr},
    {"degraded_role_ratio", &Thresholds::degraded_role_ratio, nullptr},
    {"dead_rows_degraded", &Thresholds::dead_rows_degraded, nullptr},
    {"dead_rows_collapsed", &Thresholds::dead_rows_collapsed, nullptr},
    {"min_elements", nullptr, &Thresholds::min_elements},
};

std::string known_keys() {
    std::string s;
    for (const Field& f : kFields) {
        if (!s.empty()) s += ", ";
        s += f.key;
    }
    return s;
}

}  // namespace

nlohmann::ordered_json thresholds_to_json(const Thresholds& t) {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    for (const Field& f : kFields) {
        if (f.real) j[std::string(f.key)] = t.*f.real;
        else j[std::string(f.key)] = t.*f.count;
    }
    return j;
}

Thresholds thresholds_from_json(const nlohmann::json& j, Thresholds base) {
    if (!j.is_object()) throw Error("thresholds must be a JSON object");
    for (const auto& [key, value] : j.items()) {
        const Field* field = nullptr;
        for (const Field& f : kFields)
            if (f.key == key) field = &f;
        if (!field) throw Error("unknown threshold '" + key + "' (known: " + known_keys() + ")");
        if (field->real) {
            if (!value.is_number() || !std::isfinite(value.get<double>()))
                throw Error("threshold '" + key + "' must be a finite number");
            base.*field->real = value.get<double>();
        } else {
            if (!value.is_number_unsigned() && !(value.is_number_integer() && value.get<std::int64_t>() >= 0))
                throw Error("threshold '" + key + "' must be a non-negative integer");
            base.*field->count = value.get<std::uint64_t>();
        }
    }
    return base;
}

}  // namespace bitfsck::analysis
