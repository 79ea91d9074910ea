#pragma once
// Streaming xxh3-128 with the widest vector code the CPU has. Debian's libxxhash is built for
// baseline x86-64 (SSE2) and has no run-time dispatch; its AVX2 code path hashes twice as fast,
// which matters when the hash rides along a scan at memory speed. Same digest either way
// (xxh3 is defined independently of the vector width).
#include <cstddef>
#include <cstdint>

namespace bitfsck::analysis::detail {

class Xxh3Stream {
public:
    Xxh3Stream();
    ~Xxh3Stream();
    Xxh3Stream(const Xxh3Stream&) = delete;
    Xxh3Stream& operator=(const Xxh3Stream&) = delete;

    void update(const void* data, std::size_t size);
    // The 16 bytes of the digest in canonical (big-endian) order.
    void digest(unsigned char out[16]) const;

private:
    void* state_;
};

// In xxh3_avx2.cpp, compiled for AVX2; call only where the CPU has it.
void xxh3_update_avx2(void* state, const void* data, std::size_t size);

}  // namespace bitfsck::analysis::detail
