// The libFuzzer driver shared by every target; each target's executable adds only
// bitfsck_fuzz_target_name, the entry point it runs (see kTargets in fuzz_entries.hpp).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "fuzz_entries.hpp"

extern const char* const bitfsck_fuzz_target_name;

namespace {
const bitfsck::fuzz::Target& target() {
    static const bitfsck::fuzz::Target* t = [] {
        for (const auto& candidate : bitfsck::fuzz::kTargets)
            if (candidate.name == bitfsck_fuzz_target_name) return &candidate;
        std::fprintf(stderr, "no fuzz entry point named '%s'\n", bitfsck_fuzz_target_name);
        std::abort();
    }();
    return *t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    bitfsck::fuzz::run_one(target(), {reinterpret_cast<const std::byte*>(data), size});
    return 0;
}
