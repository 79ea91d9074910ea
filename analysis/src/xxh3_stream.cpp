#include "xxh3_stream.hpp"

#include <cstring>
#include <new>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace bitfsck::analysis::detail {

namespace {

bool have_avx2() {
#if defined(__x86_64__) && defined(BITFSCK_XXH3_AVX2)
    static const bool yes = __builtin_cpu_supports("avx2");
    return yes;
#else
    return false;
#endif
}

}  // namespace

Xxh3Stream::Xxh3Stream() : state_(XXH3_createState()) {
    if (!state_ || XXH3_128bits_reset(static_cast<XXH3_state_t*>(state_)) != XXH_OK) throw std::bad_alloc();
}

Xxh3Stream::~Xxh3Stream() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }

void Xxh3Stream::update(const void* data, std::size_t size) {
#if defined(__x86_64__) && defined(BITFSCK_XXH3_AVX2)
    if (have_avx2()) return xxh3_update_avx2(state_, data, size);
#endif
    XXH3_128bits_update(static_cast<XXH3_state_t*>(state_), data, size);
}

void Xxh3Stream::digest(unsigned char out[16]) const {
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(static_cast<const XXH3_state_t*>(state_)));
    std::memcpy(out, canonical.digest, 16);
}

}  // namespace bitfsck::analysis::detail
