#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

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
};

// An opened checkpoint: the mapped file, the object tree, every tensor found in it, where the
// state dict is and what would be unsafe to load. Tensor data is read lazily through data().
class Checkpoint {
public:
    // Detects the format from the content (never from the extension). Throws FormatError with a
    // one-line message naming the file for anything unreadable.
    static Checkpoint open(const std::filesystem::path& path, const OpenOptions& options = {});

    Checkpoint(Checkpoint&&) = default;
    Checkpoint& operator=(Checkpoint&&) = default;

    const std::filesystem::path& path() const { return file_->path(); }
    const MappedFile& file() const { return *file_; }
    std::shared_ptr<const MappedFile> shared_file() const { return file_; }
    Format format() const { return format_; }

    // The unpickled object tree (nullptr for safetensors, whose header is in `metadata`).
    const Value* root() const { return document_.root; }
    const PickleDocument& document() const { return document_; }
    int pickle_protocol() const { return document_.protocol; }
    const std::vector<SecurityFinding>& findings() const { return document_.findings; }

    // Where the state dict was found: "" for the root itself, else the key path
    // ("model_state_dict", "model", "state_dict/module", ...).
    const std::optional<std::string>& state_dict_path() const { return state_dict_path_; }
    const std::vector<TensorEntry>& tensors() const { return tensors_; }
    std::vector<const TensorEntry*> state_dict_tensors() const;
    const TensorEntry* find_tensor(std::string_view name) const;
    TensorData data(const TensorEntry& t) const { return TensorData(*file_, t); }

    // What the readers recognised beyond the plain layout (packed ternary groups, the scale
    // convention of Hugging Face packed weights and how sure that verdict is, GGUF type ids).
    const std::vector<std::string>& notes() const { return notes_; }
    // What is wrong with the file without stopping it being read, one line each naming what it is
    // about (a storage record that holds more bytes than its declared elements).
    const std::vector<std::string>& warnings() const { return warnings_; }

    // safetensors' "__metadata__" (string map), GGUF's key/values (as text), empty otherwise.
    const std::vector<std::pair<std::string, std::string>>& metadata() const { return metadata_; }

    // A training step recorded in the file ("step", "global_step", "iteration", ... at the top level).
    std::optional<std::int64_t> step() const;

private:
    Checkpoint() = default;
    friend struct CheckpointBuilder;

    std::shared_ptr<const MappedFile> file_;
    Format format_ = Format::TorchZip;
    PickleDocument document_;
    std::optional<std::string> state_dict_path_;
    std::vector<TensorEntry> tensors_;
    std::vector<std::pair<std::string, std::string>> metadata_;
    std::vector<std::string> notes_;
    std::vector<std::string> warnings_;
};

}  // namespace bitfsck::io
