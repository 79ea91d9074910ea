#include "bitfsck/io/shard_writer.hpp"

#include <system_error>

#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/io/checkpoint_files.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/safetensors_writer.hpp"
#include "bitfsck/io/shard_index.hpp"

namespace bitfsck::io {

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> files_of(const Checkpoint& c) {
    std::vector<fs::path> out;
    for (const auto& s : c.shards()) out.push_back(s.path);
    out.push_back(c.path());
    return out;
}

// Files beside a sharded model that are not its weights or index (config.json, tokenizer.json,
// generation_config.json, …): copied so the output folder is a model as loadable as the input.
void copy_companions(const Checkpoint& source, const fs::path& to) {
    const fs::path folder = source.shards().front().path.parent_path();
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(folder.empty() ? fs::path(".") : folder, ec)) {
        if (!e.is_regular_file(ec)) continue;
        const fs::path p = e.path();
        bool weights = is_shard_index(p) || starts_like_checkpoint(p);
        for (const auto& s : source.shards()) weights = weights || fs::equivalent(p, s.path, ec);
        if (weights) continue;
        fs::copy_file(p, to / p.filename(), fs::copy_options::overwrite_existing, ec);
        if (ec) throw OutputError((to / p.filename()).string(), "cannot copy " + p.string() + ": " + ec.message());
    }
}

// "model-00002-of-00015.safetensors" for a shard of any name, in the format written.
std::string shard_file_name(const fs::path& source_shard, std::size_t index, std::size_t count, Format format) {
    const bool st = format == Format::Safetensors;
    auto s = shard_name(source_shard);
    const std::string ext = st ? ".safetensors" : ".bin";
    std::string prefix = s ? s->prefix : (st ? "model" : "pytorch_model");
    // A change of format takes the other format's Hugging Face prefix.
    if (st && prefix == "pytorch_model") prefix = "model";
    if (!st && prefix == "model") prefix = "pytorch_model";
    char digits[32];
    std::snprintf(digits, sizeof digits, "-%05zu-of-%05zu", index + 1, count);
    return prefix + digits + ext;
}

}  // namespace

void ensure_folder_output(const fs::path& output) {
    fs::path p = output;
    if (p.filename().empty()) return;  // "out/"
    const std::string ext = p.extension().string();
    for (const char* e : {".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".gguf", ".bit2"})
        if (ext == e)
            throw Error(output.string() + ": a sharded checkpoint is written as a folder of shards with its index; name a folder", ErrorKind::Usage, output.string());
}

RewriteReport rewrite_checkpoint(const Checkpoint& source, const fs::path& output, const std::map<std::string, ReplacementTensor>& replacements,
                                 const RewriteOptions& options, std::vector<fs::path> inputs) {
    const auto own = files_of(source);
    inputs.insert(inputs.end(), own.begin(), own.end());
    RewriteReport report;
    if (!source.sharded()) {
        ensure_not_an_input(output, inputs);
        if (source.format() == Format::Safetensors) rewrite_safetensors(source, output, replacements, inputs);
        else report = rewrite_checkpoint_pt(source, output, replacements, options);
        return report;
    }
    ensure_folder_output(output);
    ensure_not_an_input(output, inputs);
    for (const auto& [name, r] : replacements)
        if (!source.find_tensor(name)) throw Error(source.path().string() + ": no tensor '" + name + "' to replace");
    replace_folder_atomically(output, [&](const fs::path& tmp) {
        for (std::uint32_t i = 0; i < source.shards().size(); ++i) {
            const fs::path& shard_path = source.shards()[i].path;
            std::map<std::string, ReplacementTensor> mine;
            for (const auto& [name, r] : replacements)
                if (source.find_tensor(name)->shard == i) mine.emplace(name, r);
            const fs::path target = tmp / shard_path.filename();
            if (mine.empty() && !options.drop_optimizer_state) {
                std::error_code ec;
                fs::copy_file(shard_path, target, ec);
                if (ec) throw OutputError(target.string(), "cannot copy " + shard_path.string() + ": " + ec.message());
                continue;
            }
            // Each shard is a checkpoint of its own; rewritten the way a single file would be.
            const Checkpoint shard = Checkpoint::open(shard_path);
            if (shard.format() == Format::Safetensors) {
                rewrite_safetensors(shard, target, mine, inputs);
            } else {
                const RewriteReport r = rewrite_checkpoint_pt(shard, target, mine, options);
                report.dropped_keys.insert(report.dropped_keys.end(), r.dropped_keys.begin(), r.dropped_keys.end());
                report.rewritten_storages.insert(report.rewritten_storages.end(), r.rewritten_storages.begin(), r.rewritten_storages.end());
                report.repickled = report.repickled || r.repickled;
                report.records += r.records;
            }
        }
        if (source.index_path()) {
            std::error_code ec;
            fs::copy_file(*source.index_path(), tmp / source.index_path()->filename(), ec);
            if (ec) throw OutputError((tmp / source.index_path()->filename()).string(), "cannot copy the index: " + ec.message());
        }
        copy_companions(source, tmp);
    });
    return report;
}

void write_shards_like(const Checkpoint& source, const fs::path& output, const std::vector<std::vector<OutputTensor>>& by_shard,
                       Format format) {
    ensure_folder_output(output);
    ensure_not_an_input(output, files_of(source));
    if (by_shard.size() != source.shards().size()) throw Error(output.string() + ": shard count does not match the input's");
    replace_folder_atomically(output, [&](const fs::path& tmp) {
        std::map<std::string, std::string> weight_map;
        std::uint64_t total = 0;
        for (std::size_t i = 0; i < by_shard.size(); ++i) {
            const std::string name = shard_file_name(source.shards()[i].path, i, by_shard.size(), format);
            for (const auto& t : by_shard[i]) {
                weight_map[t.name] = name;
                total += t.bytes().size();
            }
            if (format == Format::Safetensors) {
                write_safetensors(tmp / name, by_shard[i], {{"format", "pt"}});
            } else {
                write_state_dict_pt(tmp / name, by_shard[i]);
            }
        }
        write_shard_index(tmp / (format == Format::Safetensors ? "model.safetensors.index.json" : "pytorch_model.bin.index.json"),
                          weight_map, total);
        copy_companions(source, tmp);
    });
}

}  // namespace bitfsck::io
