#include "bitfsck/analysis/selection.hpp"

#include <fnmatch.h>

#include <charconv>

#include "bitfsck/analysis/layers.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "bitfsck/io/error.hpp"

namespace bitfsck::analysis {
namespace {


const std::vector<Role>& all_roles() {
    static const std::vector<Role> roles = {Role::AttnQ, Role::AttnK, Role::AttnV, Role::AttnO, Role::AttnQKV,
                                            Role::MlpGate, Role::MlpUp, Role::MlpDown, Role::Embedding,
                                            Role::Position, Role::Norm, Role::Head, Role::Other};
    return roles;
}

bool role_matches(const std::string& wanted, Role role) {
    if (wanted == "mlp") return role_is_mlp(role);
    if (wanted == "attn") return role_is_attention(role);
    return role_name(role) == wanted;
}

int parse_int(std::string_view s, std::string_view whole) {
    int v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v < 0)
        throw Error("bad layer list '" + std::string(whole) + "': expected numbers and ranges like 0,2-5");
    return v;
}

}  // namespace

std::vector<std::pair<int, int>> parse_layer_ranges(std::string_view text) {
    std::vector<std::pair<int, int>> out;
    while (!text.empty()) {
        const auto comma = text.find(',');
        const std::string_view part = text.substr(0, comma);
        const auto dash = part.find('-');
        if (dash == std::string_view::npos) {
            const int v = parse_int(part, text);
            out.emplace_back(v, v);
        } else {
            const int a = parse_int(part.substr(0, dash), text), b = parse_int(part.substr(dash + 1), text);
            if (b < a) throw Error("bad layer range '" + std::string(part) + "': the end is before the start");
            out.emplace_back(a, b);
        }
        if (comma == std::string_view::npos) break;
        text.remove_prefix(comma + 1);
    }
    if (out.empty()) throw Error("empty layer list");
    return out;
}

void check_role_names(const std::vector<std::string>& roles) {
    for (const auto& r : roles) {
        if (r == "mlp" || r == "attn") continue;
        bool known = false;
        for (Role role : all_roles()) known = known || role_name(role) == r;
        if (!known) {
            std::string names = "mlp, attn";
            for (Role role : all_roles()) names += ", " + std::string(role_name(role));
            throw Error("unknown role '" + r + "' (known: " + names + ")");
        }
    }
}

bool glob_match(std::string_view pattern, std::string_view name) {
    return fnmatch(std::string(pattern).c_str(), std::string(name).c_str(), 0) == 0;
}

std::optional<std::string> explicit_selection_matches(const TensorSelection& selection, std::string_view name) {
    if (selection.is_default()) return std::nullopt;
    const TensorPlace place = place_of(name);
    if (!selection.roles.empty()) {
        bool any = false;
        for (const auto& r : selection.roles) any = any || role_matches(r, place.role);
        if (!any) return std::nullopt;
    } else if (selection.match.empty() && !role_is_ternary_matrix(place.role)) {
        return std::nullopt;
    }
    if (!selection.layers.empty()) {
        if (!place.layer) return std::nullopt;
        bool any = false;
        for (auto [a, b] : selection.layers) any = any || (*place.layer >= a && *place.layer <= b);
        if (!any) return std::nullopt;
    }
    if (selection.match.empty()) return "selected as " + layer_role_label(place.layer, place.role);
    for (const auto& g : selection.match)
        if (glob_match(g, name)) return "matches '" + g + "'";
    return std::nullopt;
}

}  // namespace bitfsck::analysis
