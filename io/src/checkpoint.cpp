// Opening a checkpoint: detect the format from the content, unpickle the object tree without
// running it, find every tensor and where its bytes are, and find the state dict in the tree.
#include "bitfsck/io/checkpoint.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "bitfsck/io/checkpoint_files.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/shard_index.hpp"
#include "bitfsck/io/zip_archive.hpp"
#include "checkpoint_builder.hpp"
#include "bit2_reader.hpp"
#include "gguf_reader.hpp"
#include "safetensors_reader.hpp"

namespace bitfsck::io {

std::string_view format_name(Format f) {
    switch (f) {
        case Format::TorchZip: return "torch_zip";
        case Format::TorchLegacy: return "torch_legacy";
        case Format::Safetensors: return "safetensors";
        case Format::Gguf: return "gguf";
        case Format::Bit2: return "bit2";
    }
    return "unknown";
}

namespace {

// The LONG1 integer torch's legacy format pickles first (torch/serialization.py MAGIC_NUMBER).
constexpr const char* kLegacyMagic = "119547037146038801333356";
constexpr std::int64_t kLegacyProtocolVersion = 1001;

std::string hex_prefix(const MappedFile& f) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (std::uint64_t i = 0; i < std::min<std::uint64_t>(8, f.size()); ++i) {
        auto b = static_cast<unsigned char>(f.data()[i]);
        if (!out.empty()) out += ' ';
        out += digits[b >> 4];
        out += digits[b & 15];
    }
    return out;
}

bool starts_with(const MappedFile& f, std::string_view magic) {
    return f.size() >= magic.size() && std::memcmp(f.data(), magic.data(), magic.size()) == 0;
}

PickleOptions with_source(const OpenOptions& options, std::string source) {
    PickleOptions p = options.pickle;
    p.source_name = std::move(source);
    return p;
}

void open_torch_zip(CheckpointBuilder& b, const OpenOptions& options) {
    const MappedFile& file = *b.file;
    ZipArchive zip(b.file);
    const ZipEntry* pkl = zip.find_in_top_folder("data.pkl");
    if (!pkl) {
        // TorchScript archives and other zips also start with PK; say what we found instead.
        throw FormatError(file.display_name(), zip.find_in_top_folder("constants.pkl")
                                                   ? "a TorchScript archive (torch.jit.save), not a torch.save checkpoint"
                                                   : "a zip archive without data.pkl: not a torch.save checkpoint");
    }
    if (const ZipEntry* order = zip.find_in_top_folder("byteorder")) {
        auto bytes = zip.read(*order, 64);
        std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        if (text != "little") throw FormatError(file.display_name(), "byte order '" + text + "' is not supported (only little-endian)");
    }
    std::string source = file.display_name() + ":" + pkl->name;
    std::vector<std::byte> inflated;
    std::span<const std::byte> pickle_bytes;
    if (pkl->method == 0) {
        pickle_bytes = zip.stored_view(*pkl);
    } else {
        inflated = zip.read(*pkl);
        pickle_bytes = inflated;
    }
    const PickleOptions pickle_options = with_source(options, source);
    b.document = parse_pickle(pickle_bytes, pickle_options);
    if (auto note = check_bytes_after_stop(b.document, pickle_bytes, b.document.end_offset, pickle_options,
                                           pkl->name + " after its STOP");
        !note.empty())
        b.notes.push_back(std::move(note));
    std::string prefix = zip.top_folder().empty() ? std::string("data/") : zip.top_folder() + "/data/";
    b.resolve_storage = [&zip, prefix, &file](const Value& storage, StorageLocation& where) {
        std::string record = prefix + storage.text;
        const ZipEntry* e = zip.find(record);
        if (!e) throw FormatError(file.display_name(), "storage '" + storage.text + "' has no record " + record);
        if (e->method != 0)
            throw FormatError(file.display_name(), "record " + record + " is compressed; tensor data must be stored uncompressed as torch.save writes it");
        where.record = record;
        where.file_offset = e->data_offset;
        where.nbytes = e->size;
    };
    b.collect_tensors();
}

void open_torch_legacy(CheckpointBuilder& b, const OpenOptions& options) {
    const MappedFile& file = *b.file;
    const std::string name = file.display_name();
    auto whole = file.bytes(0, file.size(), "file");
    std::uint64_t pos = 0;
    std::vector<std::uint64_t> starts;  // file offset of each pickle
    auto next_pickle = [&](const char* what) {
        if (pos >= whole.size()) throw FormatError(name, std::string("truncated: ") + what + " is missing");
        PickleDocument doc = parse_pickle(whole.subspan(pos), with_source(options, name + ":" + what));
        starts.push_back(pos);
        pos += doc.end_offset;
        return doc;
    };
    // torch.load runs each pickle before it checks it: a refusal still names what it would have run.
    auto refuse = [&](const PickleDocument& doc, const std::string& what) {
        std::string message = what;
        for (const auto& f : doc.findings) message += "; its pickle also names " + f.global + ", which torch.load would import";
        return FormatError(name, message);
    };
    PickleDocument magic = next_pickle("magic number");
    if (!magic.root || magic.root->kind != ValueKind::BigInt || magic.root->text != kLegacyMagic)
        throw refuse(magic, "not a PyTorch checkpoint (legacy magic number missing)");
    PickleDocument version = next_pickle("protocol version");
    if (!version.root || version.root->kind != ValueKind::Int || version.root->integer != kLegacyProtocolVersion)
        throw refuse(version, "unsupported legacy serialization protocol version");
    PickleDocument sys_info = next_pickle("system info");
    if (const Value* little = sys_info.root ? sys_info.root->get("little_endian") : nullptr;
        little && little->kind == ValueKind::Bool && !little->boolean)
        throw refuse(sys_info, "written on a big-endian machine; not supported");
    b.document = next_pickle("object");
    const std::uint64_t object_start = starts.back();
    PickleDocument keys = next_pickle("storage keys");
    if (!keys.root || keys.root->kind != ValueKind::List)
        throw refuse(keys, "storage key list is not a list");
    // The format is a sequence of pickles and torch.load unpickles every one: a global in any of
    // them is the file's finding.
    const std::pair<const PickleDocument*, const char*> side_pickles[] = {
        {&magic, "magic number"}, {&version, "protocol version"}, {&sys_info, "system info"}, {&keys, "storage keys"}};
    for (std::size_t i = 0; i < 4; ++i)
        adopt_findings(b.document, *side_pickles[i].first,
                       std::string("the legacy format's ") + side_pickles[i].second + " pickle at file offset " +
                           std::to_string(starts[i < 3 ? i : 4]));

    // After the key list come the raw storages in that order: an 8-byte element count, then the
    // elements. Their element size comes from the storage type named in the object pickle.
    std::unordered_map<std::string, DType> dtype_of_key;
    b.for_each_storage([&](const Value& s) { dtype_of_key.emplace(s.text, s.dtype); });
    std::unordered_map<std::string, StorageLocation> located;
    for (const Value* key : keys.root->items) {
        if (!key || key->kind != ValueKind::String) throw FormatError(name, "storage key is not a string");
        auto size_bytes = file.bytes(pos, 8, "storage size");
        std::int64_t numel;
        std::memcpy(&numel, size_bytes.data(), 8);
        pos += 8;
        auto it = dtype_of_key.find(key->text);
        std::size_t elsize = it == dtype_of_key.end() ? 1 : dtype_size(it->second);
        if (numel < 0 || static_cast<std::uint64_t>(numel) > file.size() / elsize)
            throw FormatError(name, "storage '" + key->text + "' claims " + std::to_string(numel) + " elements, more than the file holds");
        std::uint64_t nbytes = static_cast<std::uint64_t>(numel) * elsize;
        file.bytes(pos, nbytes, ("storage '" + key->text + "'").c_str());
        located[key->text] = StorageLocation{"", pos, nbytes};
        pos += nbytes;
    }
    // Nothing follows the last storage in a file torch.save wrote; a pickle there is what another
    // loader reading on would run. Offsets are counted from the object pickle, like its findings.
    if (auto note = check_bytes_after_stop(b.document, whole.subspan(object_start), pos - object_start,
                                           with_source(options, name + ":after the last storage"),
                                           "the data after the last storage");
        !note.empty())
        b.notes.push_back(std::move(note));
    b.resolve_storage = [located = std::move(located), name](const Value& storage, StorageLocation& where) {
        auto it = located.find(storage.text);
        if (it == located.end()) throw FormatError(name, "storage '" + storage.text + "' is not among the stored keys");
        where = it->second;
    };
    b.collect_tensors();
}

}  // namespace

CheckpointBuilder read_checkpoint_file(const std::filesystem::path& path, const OpenOptions& options) {
    CheckpointBuilder b;
    b.file = std::make_shared<MappedFile>(path);
    const MappedFile& file = *b.file;
    const std::string name = file.display_name();
    if (file.size() == 0) throw FormatError(name, "empty file");

    if (starts_with(file, "PK\x03\x04") || starts_with(file, "PK\x05\x06")) {
        b.format = Format::TorchZip;
        open_torch_zip(b, options);
    } else if (starts_with(file, "\x80\x02\x8a")) {  // PROTO 2, LONG1: the legacy magic number
        b.format = Format::TorchLegacy;
        open_torch_legacy(b, options);
    } else if (looks_like_safetensors(file)) {
        b.format = Format::Safetensors;
        read_safetensors(b);
    } else if (starts_with(file, "GGUF")) {
        b.format = Format::Gguf;
        read_gguf(b, options);
    } else if (looks_like_bit2(file)) {
        b.format = Format::Bit2;
        read_bit2(b);
    } else if (path.extension() == ".bit2") {
        // Another tool's .bit2: say so, with what can be seen, rather than guess at a layout.
        throw FormatError(name, describe_foreign_bit2(file));
    } else if (file.size() > 262 && std::memcmp(file.data() + 257, "ustar", 5) == 0) {
        throw FormatError(name, "a tar archive (PyTorch < 0.4 checkpoint format), which is not supported");
    } else {
        // The content matched no format; the name says what the file meant to be, for the message.
        const std::string ext = path.extension().string();
        if (ext == ".safetensors") throw FormatError(name, describe_broken_safetensors(file));
        if (ext == ".gguf") throw FormatError(name, "not a GGUF file: it starts with " + hex_prefix(file) + ", not \"GGUF\"");
        if (ext == ".pt" || ext == ".pth" || ext == ".ckpt" || ext == ".bin")
            throw FormatError(name, "not a PyTorch checkpoint: it starts with " + hex_prefix(file) +
                                        ", neither a zip archive (torch.save) nor a legacy pickle");
        throw FormatError(name, "not a checkpoint bitfsck reads (PyTorch, safetensors, GGUF, .bit2): it starts with " + hex_prefix(file));
    }
    // The headers are parsed into b: let their pages go. Where the kernel keeps file pages in large
    // folios (6.x with file THP), a fault maps the whole folio, up to 2 MB, so touching the 134
    // local headers of a 100M-parameter torch.save zip left ~130 MB resident before any tensor was read.
    file.release(0, file.size());
    return b;
}

Checkpoint Checkpoint::open(const std::filesystem::path& path, const OpenOptions& options) {
    namespace fs = std::filesystem;
    std::error_code ec;
    CheckpointBuilder b;
    if (fs::is_directory(path, ec)) {
        const ModelFiles model = model_files_in(path);
        b = model.index || model.weights.size() > 1 ? read_sharded_checkpoint(model, options)
                                                    : read_checkpoint_file(model.weights.front(), options);
        b.notes.insert(b.notes.end(), model.notes.begin(), model.notes.end());
    } else if (is_shard_index(path)) {
        ModelFiles model;
        model.folder = path.parent_path();
        model.index = path;
        model.weights = read_shard_index(path).shards;
        b = read_sharded_checkpoint(model, options);
    } else {
        b = read_checkpoint_file(path, options);
        if (auto s = shard_name(path); s && s->count > 1)
            b.notes.push_back(path.filename().string() + " is shard " + std::to_string(s->index) + " of " + std::to_string(s->count) +
                              ": open its folder or index for the whole model");
    }
    b.opened_path = path;
    b.config = read_hf_config_beside(path);
    if (b.config) b.warnings.insert(b.warnings.end(), b.config->notes.begin(), b.config->notes.end());
    if (b.format == Format::TorchZip || b.format == Format::TorchLegacy || b.format == Format::Safetensors)
        detect_packed_tensors(b);
    return b.finish();
}

std::uint64_t Checkpoint::total_size() const {
    std::uint64_t total = 0;
    for (const auto& s : shards_) total += s.file->size();
    return total;
}

std::vector<const TensorEntry*> Checkpoint::state_dict_tensors() const {
    std::vector<const TensorEntry*> out;
    for (const auto& t : tensors_)
        if (t.in_state_dict) out.push_back(&t);
    return out;
}

const TensorEntry* Checkpoint::find_tensor(std::string_view name) const {
    for (const auto& t : tensors_)
        if (t.in_state_dict && t.name == name) return &t;
    for (const auto& t : tensors_)
        if (t.path == name) return &t;
    return nullptr;
}

std::optional<std::int64_t> Checkpoint::step() const {
    const Value* root = document_.root;
    if (root && root->kind == ValueKind::Dict) {
        for (const char* key : {"step", "global_step", "iteration", "iter", "num_steps", "train_step"}) {
            const Value* v = root->get(key);
            if (v && v->kind == ValueKind::Int) return v->integer;
        }
    }
    // transformers' Trainer writes checkpoint-N/trainer_state.json beside the weights.
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path folder = fs::is_directory(path_, ec) ? path_ : path_.parent_path();
    const fs::path state = (folder.empty() ? fs::path(".") : folder) / "trainer_state.json";
    if (!fs::is_regular_file(state, ec) || fs::file_size(state, ec) > (64u << 20)) return std::nullopt;
    std::ifstream in(state, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    const auto j = nlohmann::json::parse(text.str(), nullptr, false);
    if (j.is_object())
        if (auto it = j.find("global_step"); it != j.end() && it->is_number_integer()) return it->get<std::int64_t>();
    return std::nullopt;
}

}  // namespace bitfsck::io
