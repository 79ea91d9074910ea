#pragma once
// Progress of long work and the way to stop it: one signature for every long library call (scan,
// diff, timeline, repair, convert, induction, perplexity, generate, finetune, plan, resurrect).
// As in llama.cpp, the callback's false return asks the work to stop: it stops at its next check,
// throws Cancelled, and leaves nothing under its output's name.
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

#include "bitfsck/io/error.hpp"

namespace bitfsck {

// What done/total count, so that a front prints "12/60 steps", not "12 B/60 B".
enum class ProgressUnit : std::uint8_t { Bytes, Steps, Tensors, Checkpoints, Stages, Windows, Tokens };
std::string_view progress_unit_name(ProgressUnit u);  // "bytes", "steps", ...

struct Progress {
    std::uint64_t done = 0;
    std::uint64_t total = 0;  // 0: not known yet
    ProgressUnit unit = ProgressUnit::Bytes;
    std::string label;        // what is being worked on: a tensor, "stage 2/3 finetune", a file
};

// Called from any thread of the work, never two at once for one call; return false to stop.
// Must be cheap: it can be called for every chunk.
using ProgressCallback = std::function<bool(const Progress&)>;

// The state one call shares between its threads: the count so far, and whether the callback has
// asked to stop (then every thread's next check throws Cancelled).
class ProgressTracker {
public:
    ProgressTracker(ProgressCallback callback, ProgressUnit unit, std::uint64_t total = 0);

    // done += n, then tells the callback; throws Cancelled when it (now or before) asked to stop.
    void advance(std::uint64_t n, std::string_view label = {});
    // done = d (for work that counts by itself, like training steps).
    void set(std::uint64_t done, std::string_view label = {});
    void set_total(std::uint64_t total);
    // Throws Cancelled when the callback has asked to stop; asks it first when `ask` is true.
    void check(bool ask = false);
    bool stopped() const { return stopped_.load(std::memory_order_relaxed); }
    std::uint64_t done() const { return done_.load(std::memory_order_relaxed); }

    // A callback for nested work that maps its progress into [from, to) of this tracker's total
    // (a resurrection stage's fine-tune steps as part of the stages), with this tracker's unit.
    ProgressCallback span(std::uint64_t from, std::uint64_t to);

private:
    void report(std::uint64_t done, std::string_view label);

    ProgressCallback callback_;
    ProgressUnit unit_;
    std::atomic<std::uint64_t> done_{0}, total_{0};
    std::atomic<bool> stopped_{false};
    std::mutex mutex_;  // one callback at a time
};

// A callback that stops when `flag` becomes true and forwards progress to `inner` (if any): what
// an app's Cancel button or a CLI's Ctrl-C handler hands to the libraries.
ProgressCallback stop_when(const std::atomic<bool>& flag, ProgressCallback inner = {});

}  // namespace bitfsck
