#pragma once
// Tensors that live in memory (a model being trained, a state dict handed over from Python),
// judged by exactly the rules a file is: the same statistics (analyze_tensor), the same
// selection, the same verdicts (judge). What only a file has (its size on disk, its content
// hash, its security findings, its format) is left empty.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bitfsck/io/error.hpp"  // before scan.hpp, which uses bitfsck::Error
#include "bitfsck/analysis/report.hpp"
#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/io/tensor.hpp"

namespace bitfsck::analysis {

// The format a report of in-memory tensors names.
inline constexpr std::string_view kMemoryFormat = "memory";

struct NamedTensor {
    std::string name;      // the state-dict key
    io::TensorData data;   // usually TensorData(bytes, dtype, shape) over a caller-owned buffer
};

struct MemoryScanInfo {
    std::string label = "<memory>";       // what the report names as its file ("step 400", a model name)
    std::optional<std::int64_t> step;     // the training step, for timelines of live weights
};

// Statistics of every floating-point tensor (in the given order), grouped by layer and role, and
// judged as scan_checkpoint judges a file's state dict. The buffers must stay alive and unchanged
// for the call. Progress counts bytes; its false return stops the scan (Cancelled).
ScanReport scan_tensors(const std::vector<NamedTensor>& tensors, const ScanOptions& options = {}, const MemoryScanInfo& info = {});

}  // namespace bitfsck::analysis
