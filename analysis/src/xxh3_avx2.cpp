// xxh3's streaming update built for AVX2 (this file alone is compiled with -mavx2, see
// analysis/CMakeLists.txt). It includes nothing but xxhash.h, whose functions are all static
// here (XXH_INLINE_ALL), so no AVX2 code can leak into functions shared with other files.
#include <cstddef>

#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX2
#include <xxhash.h>

namespace bitfsck::analysis::detail {

void xxh3_update_avx2(void* state, const void* data, std::size_t size) {
    XXH3_128bits_update(static_cast<XXH3_state_t*>(state), data, size);
}

}  // namespace bitfsck::analysis::detail
