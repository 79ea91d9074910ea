#pragma once
// The distinct finite values of a tensor, up to a cap: enough to see that a tensor holds only
// {-s, 0, +s}, and cheap to give up on once a tensor is plainly continuous.
#include <bit>
#include <cstdint>
#include <vector>

namespace bitfsck::analysis::detail {

class DistinctSet {
public:
    explicit DistinctSet(std::uint64_t cap) : cap_(cap), slots_(16, kEmpty) {}

    bool capped() const { return capped_; }
    // For a set merged from parts: one part alone had more values than the cap.
    void mark_capped() { capped_ = true; }
    std::uint64_t size() const { return values_.size(); }
    const std::vector<double>& values() const { return values_; }  // in first-seen order

    void insert(double v) {
        if (capped_) return;
        if (v == 0) v = 0.0;  // -0.0 and +0.0 are one value, as for torch.unique
        std::uint64_t bits = std::bit_cast<std::uint64_t>(v);
        std::size_t mask = slots_.size() - 1;
        for (std::size_t i = slot(bits);; i = (i + 1) & mask) {
            if (slots_[i] == bits) return;
            if (slots_[i] == kEmpty) {
                if (values_.size() >= cap_) {
                    capped_ = true;
                    return;
                }
                slots_[i] = bits;
                values_.push_back(v);
                if (values_.size() * 2 > slots_.size()) grow();
                return;
            }
        }
    }

private:
    // A NaN payload: only finite values are ever inserted, so it cannot collide.
    static constexpr std::uint64_t kEmpty = 0x7ff8dead0000beefULL;

    // Fibonacci hashing keeps the product's top bits: values converted from float32 or
    // bfloat16 have all-zero low mantissa bits, which the low bits of a product would keep.
    std::size_t slot(std::uint64_t bits) const {
        return static_cast<std::size_t>((bits * 0x9E3779B97F4A7C15ULL) >> shift_);
    }

    void grow() {
        std::vector<std::uint64_t> bigger(slots_.size() * 2, kEmpty);
        std::size_t mask = bigger.size() - 1;
        --shift_;
        for (double v : values_) {
            std::uint64_t bits = std::bit_cast<std::uint64_t>(v);
            std::size_t i = slot(bits);
            while (bigger[i] != kEmpty) i = (i + 1) & mask;
            bigger[i] = bits;
        }
        slots_.swap(bigger);
    }

    std::uint64_t cap_;
    bool capped_ = false;
    std::vector<std::uint64_t> slots_;
    int shift_ = 64 - 4;  // slots_.size() == 1 << (64 - shift_)
    std::vector<double> values_;
};

}  // namespace bitfsck::analysis::detail
