#pragma once
// One tensor's statistics computed chunk by chunk, so that a large tensor is spread over the
// worker pool and never resident as a whole: pass 1 (moments, extremes, zeros, distinct
// values) over every chunk, then finish1(), then pass 2 (centred squares, ternary codes,
// histograms, dead rows and columns, lattice distance) over every chunk, then finish2().
// Chunks of one pass may run on any threads in any order; the pages of a chunk are released
// as soon as a pass is done with it.
//
// The figures are bit for bit those of one sequential walk over the tensor: the floating-point
// sums are kept per block of kBlock elements and folded in block order at the end of each pass
// (the order a sequential walk adds them), and everything else is integer counts, extremes,
// sets or per-row flags, which do not depend on the order.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bitfsck/analysis/tensor_stats.hpp"
#include "bitfsck/io/tensor.hpp"

namespace bitfsck::analysis::detail {

// Big enough that per-block overhead vanishes, small enough to stay in L2 across the several
// sweeps pass 2 makes over a block.
constexpr std::int64_t kBlock = 32768;
// A chunk: the unit of work handed to one thread and of pages released (1 Mi elements, 4 MB of
// float32). Two threads hold at most a few chunks' pages, whatever the checkpoint's size.
constexpr std::int64_t kChunkBlocks = 32;
constexpr std::int64_t kChunk = kBlock * kChunkBlocks;

// Tensors of at least this many elements bin both histograms through one table (JointBinTable,
// built per tensor); smaller ones bin each value directly, as building the table would cost more.
// The counts are the same either way: tests lower it to compare the two.
inline std::int64_t joint_table_min_elements = std::int64_t{1} << 16;

class JointBinTable;

class TensorScan {
public:
    TensorScan(std::string name, io::TensorData data, const AnalysisOptions& options);
    ~TensorScan();
    TensorScan(const TensorScan&) = delete;
    TensorScan& operator=(const TensorScan&) = delete;

    const io::TensorData& data() const { return data_; }
    std::size_t chunks() const { return chunks_; }
    std::int64_t chunk_first(std::size_t c) const { return static_cast<std::int64_t>(c) * kChunk; }
    std::int64_t chunk_count(std::size_t c) const;

    // Thread-safe for distinct chunks. `before_block(first, count)` runs before each block of
    // elements is read (the scan feeds its content hash there, while the block is in cache).
    void pass1(std::size_t chunk, const std::function<void(std::int64_t, std::int64_t)>& before_block = {});
    void finish1();                 // once, after every pass1
    void pass2(std::size_t chunk);  // thread-safe for distinct chunks, after finish1
    TensorStats finish2();          // once, after every pass2; releases the tensor's pages

    struct State;  // defined in tensor_stats.cpp

private:
    void release_behind(std::int64_t first, std::int64_t end) const;

    std::string name_;
    io::TensorData data_;
    AnalysisOptions options_;
    std::size_t chunks_ = 0;
    std::unique_ptr<State> s_;
};

}  // namespace bitfsck::analysis::detail
