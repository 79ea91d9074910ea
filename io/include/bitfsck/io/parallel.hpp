#pragma once
// The one worker pool of bitfsck's libraries: scan, diff, repair and run scans spread their items
// over it, so that every long call uses cores, stops on the first error and is cancelled the same way.
#include <cstddef>
#include <functional>

namespace bitfsck {

// 0 -> every core (at least 1).
unsigned worker_count(unsigned requested);

// Runs item(i) for every i in [0, n) on min(threads, n) threads (0: every core), each taking the
// next index from one counter, in order. The first exception (Cancelled included) stops the
// others before their next item and is rethrown on the calling thread once all have returned.
void parallel_for(std::size_t n, unsigned threads, const std::function<void(std::size_t)>& item);

}  // namespace bitfsck
