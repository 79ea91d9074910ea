#pragma once
// Writing PyTorch checkpoints in torch.save's zip format: a fresh state dict, or a rewrite of an
// existing checkpoint where some tensors get new values and everything else is carried over.
// Output goes to a temporary file renamed into place when complete; tensor data is streamed,
// never gathered into one buffer.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/dtype.hpp"
#include "bitfsck/io/pickle_writer.hpp"

namespace bitfsck::io {

// One tensor to write: contiguous row-major elements of `dtype`, owned (`data`) or borrowed
// (`view`, used when `data` is empty; it must outlive the write).
struct OutputTensor {
    std::string name;
    DType dtype = DType::F32;
    std::vector<std::int64_t> shape;
    std::vector<std::byte> data;
    std::span<const std::byte> view;
    bool parameter = false;  // written as nn.Parameter (requires_grad for floating dtypes)
    // Non-empty: the name of an earlier tensor of the same dtype and shape whose storage this one
    // shares (tied embeddings); `data` and `view` must then be empty.
    std::string tied_to;

    std::span<const std::byte> bytes() const { return data.empty() ? view : std::span<const std::byte>(data); }
};

// A size or offset at or past this needs ZIP64 fields.
inline constexpr std::uint64_t kZip64Threshold = 0xFFFFFFFFull;

struct PtWriteOptions {
    // Empty: the file's root is the state dict (an OrderedDict, as model.state_dict() saves).
    // Otherwise the root is a dict {state_dict_key: state dict, extra...}.
    std::string state_dict_key;
    std::vector<std::pair<std::string, PyValue>> extra;
    std::vector<std::filesystem::path> inputs;  // files the output must not replace
    // Sizes and offsets at or past this get ZIP64 fields; lowered only to test the ZIP64 path.
    std::uint64_t zip64_threshold = kZip64Threshold;
};

// Writes `tensors` as torch.save would: <archive>/data.pkl (protocol 2), <archive>/byteorder,
// <archive>/data/<key> (stored, each 64-byte aligned), <archive>/version; the archive name is
// the output's file name up to its first '.'. Throws bitfsck::Error (FileError for I/O).
void write_state_dict_pt(const std::filesystem::path& path, const std::vector<OutputTensor>& tensors,
                         const PtWriteOptions& options = {});

// New values for an existing tensor: same dtype and shape as in the source, contiguous row-major.
struct ReplacementTensor {
    DType dtype = DType::F32;
    std::vector<std::int64_t> shape;
    std::vector<std::byte> data;
    std::span<const std::byte> view;  // used when data is empty

    std::span<const std::byte> bytes() const { return data.empty() ? view : std::span<const std::byte>(data); }
};

struct RewriteOptions {
    // Leave out the top-level entries whose key contains "optim" (optimizer state), and the
    // storage records only they used.
    bool drop_optimizer_state = false;
    std::uint64_t zip64_threshold = kZip64Threshold;
};

struct RewriteReport {
    std::vector<std::string> dropped_keys;        // top-level keys left out
    std::vector<std::string> rewritten_storages;  // storage keys whose record got new bytes
    bool repickled = false;                       // data.pkl was re-emitted rather than copied
    std::size_t records = 0;                      // records in the output
};

// Rewrites `source` (torch zip or legacy format) to `path` in the zip format with the tensors
// named in `replacements` (state-dict names, or tree paths for other tensors) holding new values.
// A zip source's data.pkl and every untouched record are copied byte for byte; a replaced
// tensor's storage is copied whole and the new values written at the tensor's own positions, so
// tensors sharing the storage (views, tied weights) see exactly the elements they share with it.
// Legacy sources and drop_optimizer_state re-emit the pickle (see repickle()).
RewriteReport rewrite_checkpoint_pt(const Checkpoint& source, const std::filesystem::path& path,
                                    const std::map<std::string, ReplacementTensor>& replacements,
                                    const RewriteOptions& options = {});

}  // namespace bitfsck::io
