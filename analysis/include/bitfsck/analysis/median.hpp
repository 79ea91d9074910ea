#pragma once
// The median of a set of figures (the role-outlier rule, the repair steps' noise and scale
// estimates): the mean of the two middle values for an even count, 0 for none.
#include <algorithm>
#include <vector>

namespace bitfsck::analysis {

inline double median(std::vector<double> v) {
    if (v.empty()) return 0;
    const auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
    std::nth_element(v.begin(), mid, v.end());
    if (v.size() % 2 == 1) return *mid;
    return 0.5 * (*std::max_element(v.begin(), mid) + *mid);
}

}  // namespace bitfsck::analysis
