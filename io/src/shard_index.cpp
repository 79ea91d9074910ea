#include "bitfsck/io/shard_index.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>

#include <nlohmann/json.hpp>

#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/io/error.hpp"

namespace bitfsck::io {

namespace fs = std::filesystem;

ShardIndex read_shard_index(const fs::path& path) {
    const std::string name = path.string();
    std::error_code ec;
    // Real indexes are a few hundred KB even for the largest releases.
    constexpr std::uintmax_t kMaxIndex = 256u << 20;
    const auto size = fs::file_size(path, ec);
    if (ec) throw FileError(name + ": cannot read: " + ec.message());
    if (size > kMaxIndex) throw FormatError(name, "is " + std::to_string(size) + " bytes, too large for a shard index");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FileError(name + ": cannot open");
    std::ostringstream text;
    text << in.rdbuf();
    const nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw FormatError(name, "a shard index must be a JSON object");
    auto wm = j.find("weight_map");
    if (wm == j.end() || !wm->is_object())
        throw FormatError(name, "not a sharded checkpoint index: no \"weight_map\" object");
    if (wm->empty()) throw FormatError(name, "its weight_map lists no tensors");

    ShardIndex index;
    index.path = path;
    std::set<std::string> files;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
        if (!it.value().is_string())
            throw FormatError(name, "weight_map entry '" + it.key() + "' is not a file name");
        const std::string file = it.value().get<std::string>();
        // Shards sit beside their index: a path would let an index point anywhere on the disk.
        if (file.empty() || file.find('/') != std::string::npos || file.find('\\') != std::string::npos || file == "." || file == "..")
            throw FormatError(name, "weight_map entry '" + it.key() + "' names '" + file + "', which is not a file beside the index");
        index.weight_map.emplace_back(it.key(), file);
        files.insert(file);
    }
    for (const auto& f : files) index.shards.push_back(path.parent_path() / f);
    if (auto meta = j.find("metadata"); meta != j.end() && meta->is_object()) {
        if (auto ts = meta->find("total_size"); ts != meta->end()) {
            if (ts->is_number_unsigned() || (ts->is_number_integer() && ts->get<std::int64_t>() >= 0))
                index.total_size = ts->get<std::uint64_t>();
            // huggingface_hub writes total_size as a float in some versions.
            else if (ts->is_number_float() && ts->get<double>() >= 0)
                index.total_size = static_cast<std::uint64_t>(ts->get<double>());
        }
    }
    return index;
}

void write_shard_index(const fs::path& path, const std::map<std::string, std::string>& weight_map, std::uint64_t total_size) {
    nlohmann::ordered_json j;
    j["metadata"] = {{"total_size", total_size}};
    j["weight_map"] = nlohmann::ordered_json::object();
    for (const auto& [tensor, file] : weight_map) j["weight_map"][tensor] = file;
    write_file_atomically(path, j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

}  // namespace bitfsck::io
