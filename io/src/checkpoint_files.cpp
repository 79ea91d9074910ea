#include "bitfsck/io/checkpoint_files.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <fstream>
#include <map>
#include <system_error>
#include <tuple>

#include "bitfsck/io/error.hpp"
#include "bitfsck/io/shard_index.hpp"

namespace bitfsck::io {

namespace fs = std::filesystem;

namespace {

constexpr std::array<std::string_view, 6> kExtensions = {".pt", ".pth", ".ckpt", ".safetensors", ".gguf", ".bit2"};

// The names transformers gives a model's weights (WEIGHTS_NAME, SAFE_WEIGHTS_NAME and the
// adapter variants); other checkpoint files beside them are training state.
constexpr std::array<std::string_view, 5> kHfWeightNames = {"model.safetensors", "pytorch_model.bin", "adapter_model.safetensors",
                                                           "adapter_model.bin", "consolidated.safetensors"};

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool is_checkpoint_file(const fs::directory_entry& e) {
    std::error_code ec;
    if (!e.is_regular_file(ec)) return false;
    const std::string ext = e.path().extension().string();
    if (std::find(kExtensions.begin(), kExtensions.end(), ext) != kExtensions.end()) return true;
    return ext == ".bin" && starts_like_checkpoint(e.path());
}

std::vector<fs::path> listing(const fs::path& folder, bool (*keep)(const fs::directory_entry&)) {
    std::vector<fs::path> found;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(folder, ec))
        if (keep(e)) found.push_back(e.path());
    if (ec) throw FileError(folder.string() + ": cannot list: " + ec.message());
    std::sort(found.begin(), found.end());
    return found;
}

bool is_index_entry(const fs::directory_entry& e) {
    std::error_code ec;
    return e.is_regular_file(ec) && is_shard_index(e.path());
}

bool is_directory_entry(const fs::directory_entry& e) {
    std::error_code ec;
    return e.is_directory(ec);
}

// Shards grouped by (prefix, extension, count).
using GroupKey = std::tuple<std::string, std::string, int>;
std::map<GroupKey, std::vector<fs::path>> shard_groups(const std::vector<fs::path>& files) {
    std::map<GroupKey, std::vector<fs::path>> groups;
    for (const auto& f : files)
        if (auto s = shard_name(f); s && s->count > 1) groups[{s->prefix, s->extension, s->count}].push_back(f);
    return groups;
}

// What transformers' Trainer saves beside the model in checkpoint-N/: training state, not weights.
bool is_training_state(const fs::path& p) {
    const std::string n = p.filename().string();
    for (std::string_view s : {"optimizer.pt", "optimizer.bin", "scheduler.pt", "scaler.pt", "training_args.bin"})
        if (n == s) return true;
    return n.rfind("rng_state", 0) == 0 && ends_with(n, ".pth");
}

bool is_hf_weight_name(const fs::path& p) {
    const std::string n = p.filename().string();
    return std::find(kHfWeightNames.begin(), kHfWeightNames.end(), n) != kHfWeightNames.end();
}

// safetensors before pickles, as transformers' from_pretrained prefers them.
bool safetensors_first(const fs::path& a, const fs::path& b) {
    const bool sa = ends_with(a.filename().string(), ".safetensors"), sb = ends_with(b.filename().string(), ".safetensors");
    return sa != sb ? sa : a < b;
}

std::string names_of(const std::vector<fs::path>& files, std::size_t most = 4) {
    std::string out;
    for (std::size_t i = 0; i < files.size() && i < most; ++i) out += (i ? ", " : "") + files[i].filename().string();
    if (files.size() > most) out += ", … (" + std::to_string(files.size()) + " in all)";
    return out;
}

}  // namespace

std::optional<ShardName> shard_name(const fs::path& file) {
    // <prefix>-<digits>-of-<digits><extension>, the extension being everything after the count.
    const std::string name = file.filename().string();
    const auto of = name.rfind("-of-");
    if (of == std::string::npos || of == 0) return std::nullopt;
    std::size_t a = of;
    while (a > 0 && std::isdigit(static_cast<unsigned char>(name[a - 1]))) --a;
    std::size_t b = of + 4, e = b;
    while (e < name.size() && std::isdigit(static_cast<unsigned char>(name[e]))) ++e;
    if (a == of || e == b || a == 0 || name[a - 1] != '-' || e - b > 6 || of - a > 6) return std::nullopt;
    ShardName s;
    s.prefix = name.substr(0, a - 1);
    s.extension = name.substr(e);
    std::from_chars(name.data() + a, name.data() + of, s.index);
    std::from_chars(name.data() + b, name.data() + e, s.count);
    if (s.index < 1 || s.count < 1 || s.index > s.count) return std::nullopt;
    return s;
}

bool is_shard_index(const fs::path& file) { return ends_with(file.filename().string(), ".index.json"); }

bool starts_like_checkpoint(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    unsigned char head[9] = {};
    if (!in.read(reinterpret_cast<char*>(head), sizeof head)) return false;
    if (head[0] == 'P' && head[1] == 'K') return true;             // torch.save zip
    if (head[0] == 0x80 && head[1] == 0x02 && head[2] == 0x8a) return true;  // legacy torch.save
    if (std::memcmp(head, "GGUF", 4) == 0) return true;
    std::uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | head[i];
    std::error_code ec;
    auto size = fs::file_size(file, ec);
    return !ec && head[8] == '{' && header_len + 8 <= size;           // safetensors
}

ModelFiles model_files_in(const fs::path& folder) {
    ModelFiles m;
    m.folder = folder;
    const std::string where = folder.string();

    std::vector<fs::path> indexes = listing(folder, is_index_entry);
    if (!indexes.empty()) {
        std::sort(indexes.begin(), indexes.end(), safetensors_first);
        m.index = indexes.front();
        m.weights = read_shard_index(*m.index).shards;
        for (std::size_t i = 1; i < indexes.size(); ++i)
            m.notes.push_back(where + ": " + indexes[i].filename().string() + " left aside: " + m.index->filename().string() +
                              " describes the same model in the preferred format");
        return m;
    }

    const std::vector<fs::path> files = listing(folder, is_checkpoint_file);
    auto groups = shard_groups(files);
    if (!groups.empty()) {
        std::vector<std::pair<GroupKey, std::vector<fs::path>>> ordered(groups.begin(), groups.end());
        std::sort(ordered.begin(), ordered.end(), [](const auto& a, const auto& b) {
            return safetensors_first(a.second.front(), b.second.front());
        });
        // Two shard sets in different formats are the same model twice; in the same format, two models.
        if (ordered.size() > 1 && std::get<1>(ordered[0].first) == std::get<1>(ordered[1].first))
            throw FormatError(where, "holds two sets of shards without an index (" + names_of(ordered[0].second, 1) + ", " +
                                         names_of(ordered[1].second, 1) + "): open one by its index");
        m.weights = ordered.front().second;
        for (std::size_t i = 1; i < ordered.size(); ++i)
            m.notes.push_back(where + ": shards " + names_of(ordered[i].second, 2) + " left aside for the " +
                              std::get<1>(ordered[0].first) + " shards");
        return m;
    }

    std::vector<fs::path> named;
    for (const auto& f : files)
        if (is_hf_weight_name(f)) named.push_back(f);
    std::sort(named.begin(), named.end(), safetensors_first);
    if (!named.empty()) {
        m.weights = {named.front()};
        std::vector<fs::path> others, state;
        for (const auto& f : files)
            if (f != named.front()) (is_training_state(f) ? state : others).push_back(f);
        if (!state.empty())
            m.notes.push_back(where + ": training state beside the model, not read: " + names_of(state));
        if (!others.empty())
            m.notes.push_back(where + ": " + named.front().filename().string() + " taken as the model; also there, not read: " +
                              names_of(others));
        return m;
    }
    if (files.size() == 1) {
        m.weights = files;
        return m;
    }
    if (files.empty()) throw FormatError(where, "holds no checkpoint (no .safetensors, .pt, .bin, .gguf or shard index)");
    throw FormatError(where, "holds " + std::to_string(files.size()) + " checkpoints (" + names_of(files) +
                                 "), not one model: name the file, or use scan/timeline for a run folder");
}

bool is_model_folder(const fs::path& folder) {
    std::error_code ec;
    if (!fs::is_directory(folder, ec)) return false;
    try {
        if (!listing(folder, is_index_entry).empty()) return true;
        const std::vector<fs::path> files = listing(folder, is_checkpoint_file);
        if (!shard_groups(files).empty()) return true;
        return std::any_of(files.begin(), files.end(), is_hf_weight_name);
    } catch (const Error&) {
        return false;
    }
}

std::vector<fs::path> checkpoint_files_in(const fs::path& folder) {
    std::vector<fs::path> files = listing(folder, is_checkpoint_file);
    std::vector<fs::path> out;
    // A shard set counts once: by its index when there is one, else by its first shard.
    std::vector<fs::path> indexes = listing(folder, is_index_entry);
    std::vector<fs::path> indexed;
    for (const auto& index : indexes) {
        try {
            const ShardIndex si = read_shard_index(index);
            indexed.insert(indexed.end(), si.shards.begin(), si.shards.end());
            out.push_back(index);
        } catch (const Error&) {
            out.push_back(index);  // opened later, it reports what is wrong with it
        }
    }
    for (const auto& [key, group] : shard_groups(files)) {
        const bool covered = std::all_of(group.begin(), group.end(), [&](const fs::path& f) {
            return std::find(indexed.begin(), indexed.end(), f) != indexed.end();
        });
        if (!covered) out.push_back(group.front());
        indexed.insert(indexed.end(), group.begin(), group.end());
    }
    for (const auto& f : files)
        if (std::find(indexed.begin(), indexed.end(), f) == indexed.end()) out.push_back(f);
    for (const auto& sub : listing(folder, is_directory_entry))
        if (is_model_folder(sub)) out.push_back(sub);
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<fs::path> expand_checkpoint_inputs(const std::vector<std::string>& inputs) {
    std::vector<fs::path> out;
    for (const auto& in : inputs) {
        std::error_code ec;
        if (!fs::is_directory(in, ec)) {
            out.emplace_back(in);
            continue;
        }
        // A release folder is one model; a run folder is many checkpoints (which may be model folders).
        bool one_model = false;
        try {
            const ModelFiles m = model_files_in(in);
            one_model = m.index.has_value() || m.weights.size() > 1;
            if (!one_model && m.weights.size() == 1 && is_hf_weight_name(m.weights.front())) {
                // checkpoint-N/ of transformers' Trainer: the model and its training state only.
                one_model = true;
                for (const auto& f : listing(in, is_checkpoint_file))
                    if (f != m.weights.front() && !is_training_state(f)) one_model = false;
            }
        } catch (const Error&) {
        }
        if (one_model) {
            out.emplace_back(in);
            continue;
        }
        auto found = checkpoint_files_in(in);
        out.insert(out.end(), found.begin(), found.end());
    }
    return out;
}

std::uint64_t checkpoint_input_size(const fs::path& input) {
    std::error_code ec;
    auto sum = [](const std::vector<fs::path>& files) {
        std::uint64_t total = 0;
        for (const auto& f : files) {
            std::error_code e;
            const auto s = fs::file_size(f, e);
            if (!e) total += s;
        }
        return total;
    };
    try {
        if (fs::is_directory(input, ec)) return sum(model_files_in(input).weights);
        if (is_shard_index(input)) return sum(read_shard_index(input).shards);
    } catch (const Error&) {
        return 0;
    }
    const auto s = fs::file_size(input, ec);
    return ec ? 0 : s;
}

}  // namespace bitfsck::io
