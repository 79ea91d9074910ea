#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bitfsck/io/hf_config.hpp"
#include "bitfsck/io/mapped_file.hpp"
#include "bitfsck/io/pickle.hpp"
#include "bitfsck/io/tensor.hpp"

namespace bitfsck::io {

enum class Format : std::uint8_t {
    TorchZip,      // torch.save since 1.6 (a zip of data.pkl + data/<key> records)
    TorchLegacy,   // _use_new_zipfile_serialization=False: magic, pickles, raw storages
    Safetensors,
    Gguf,          // llama.cpp / ggml GGUF v2 and v3
    Bit2,          // bitfsck's own packed container (docs/bit2-format.md)
};
std::string_view format_name(Format f);

struct OpenOptions {
    PickleOptions pickle;
    // bitnet.cpp I2_S tensors (GGUF type 36): the file does not record which of the three
    // layouts its quantizer wrote; every report that reads one states the assumption.
    I2sLayout i2s_layout = I2sLayout::ActParallel;
};

// One file of a checkpoint. A single-file checkpoint has one; a sharded one (Hugging Face
// `model-0000N-of-0000M.safetensors` or `pytorch_model-….bin` with their index) one per shard,
// in the order of their names.
struct CheckpointShard {
    std::filesystem::path path;
    std::shared_ptr<const MappedFile> file;
    Format format = Format::TorchZip;
    std::size_t stored_tensors = 0;  // tensors stored in this file, before packed groups are folded
};

// An opened checkpoint: the mapped file(s), the object tree, every tensor found in it, where the
// state dict is and what would be unsafe to load. Tensor data is read lazily through data().
class Checkpoint {
public:
    // Opens a checkpoint file (the format detected from the content, never from the extension),
    // a sharded checkpoint's index (`*.index.json`), or a folder that holds one model (an index,
    // one set of `-0000N-of-0000M` shards, or a single weights file). Every shard is one model:
    // tensors are looked up across shards, packed pairs (a weight and its weight_scale) resolved
    // across them. Throws FormatError with a one-line message naming the file for anything
    // unreadable, and for a missing shard, a tensor the index lists but its shard lacks, one
    // stored twice, or shards of different models.
    static Checkpoint open(const std::filesystem::path& path, const OpenOptions& options = {});

    Checkpoint(Checkpoint&&) = default;
    Checkpoint& operator=(Checkpoint&&) = default;

    // What was opened: the file, the index, or the folder.
    const std::filesystem::path& path() const { return path_; }
    // The first file (of a single-file checkpoint: the only one).
    const MappedFile& file() const { return *shards_.front().file; }
    std::shared_ptr<const MappedFile> shared_file() const { return shards_.front().file; }
    Format format() const { return format_; }

    const std::vector<CheckpointShard>& shards() const { return shards_; }
    bool sharded() const { return shards_.size() > 1 || index_path_.has_value(); }
    const std::optional<std::filesystem::path>& index_path() const { return index_path_; }
    const MappedFile& file_of(const TensorEntry& t) const { return *shards_.at(t.shard).file; }
    std::uint64_t total_size() const;  // bytes of every file

    // config.json beside the weights, when there is one.
    const std::optional<HfConfig>& config() const { return config_; }

    // The unpickled object tree (nullptr for safetensors, whose header is in `metadata`). A sharded
    // torch checkpoint has one tree per shard; this is the first one's.
    const Value* root() const { return document_.root; }
    const PickleDocument& document() const { return document_; }
    int pickle_protocol() const { return document_.protocol; }
    // Of every shard; for a shard other than the first, its reason names the file.
    const std::vector<SecurityFinding>& findings() const { return findings_; }

    // Where the state dict was found: "" for the root itself, else the key path
    // ("model_state_dict", "model", "state_dict/module", ...).
    const std::optional<std::string>& state_dict_path() const { return state_dict_path_; }
    const std::vector<TensorEntry>& tensors() const { return tensors_; }
    std::vector<const TensorEntry*> state_dict_tensors() const;
    const TensorEntry* find_tensor(std::string_view name) const;
    TensorData data(const TensorEntry& t) const { return TensorData(file_of(t), t); }

    // What the readers recognised beyond the plain layout (packed ternary groups, the scale
    // convention of Hugging Face packed weights and where it came from, GGUF type ids, shards).
    const std::vector<std::string>& notes() const { return notes_; }
    // What is wrong or doubtful without stopping the reading, one line each naming what it is about
    // (a storage record holding more bytes than its declared elements, a config.json that
    // disagrees with the weights, a guessed scale convention): every report shows these.
    const std::vector<std::string>& warnings() const { return warnings_; }

    // safetensors' "__metadata__" (string map), GGUF's key/values (as text), empty otherwise.
    const std::vector<std::pair<std::string, std::string>>& metadata() const { return metadata_; }

    // A training step recorded in the file ("step", "global_step", "iteration", ... at the top
    // level), else trainer_state.json's global_step beside the weights.
    std::optional<std::int64_t> step() const;

private:
    Checkpoint() = default;
    friend struct CheckpointBuilder;

    std::filesystem::path path_;
    std::vector<CheckpointShard> shards_;
    std::optional<std::filesystem::path> index_path_;
    std::optional<HfConfig> config_;
    Format format_ = Format::TorchZip;
    PickleDocument document_;
    std::vector<PickleDocument> other_documents_;  // shards after the first (they own their values)
    std::vector<SecurityFinding> findings_;
    std::optional<std::string> state_dict_path_;
    std::vector<TensorEntry> tensors_;
    std::vector<std::pair<std::string, std::string>> metadata_;
    std::vector<std::string> notes_;
    std::vector<std::string> warnings_;
};

}  // namespace bitfsck::io
