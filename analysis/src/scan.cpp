#include "bitfsck/analysis/scan.hpp"

#include <xxhash.h>

#include "bitfsck/io/checkpoint_files.hpp"
#include "bitfsck/io/parallel.hpp"
#include "bitfsck/io/shard_index.hpp"

#include <algorithm>
#include <memory>
#include <numeric>
#include <vector>

namespace bitfsck::analysis {

namespace {

using HashState = std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)>;

HashState new_hash_state() {
    HashState state(XXH3_createState(), &XXH3_freeState);
    if (!state || XXH3_128bits_reset(state.get()) != XXH_OK) throw Error("xxh3: cannot initialise hash state");
    return state;
}

void hash_file(XXH3_state_t* state, const io::MappedFile& file) {
    constexpr std::uint64_t kChunk = 16ull << 20;
    for (std::uint64_t off = 0; off < file.size(); off += kChunk) {
        std::uint64_t len = std::min(kChunk, file.size() - off);
        auto bytes = file.bytes(off, len, "content");
        XXH3_128bits_update(state, bytes.data(), bytes.size());
        // Hashing a checkpoint must not leave it all resident.
        file.release(off, len);
    }
}

std::string hash_text(XXH3_state_t* state) {
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(state));
    static constexpr char hex[] = "0123456789abcdef";
    std::string out = "xxh3-128:";
    for (unsigned char b : canonical.digest) {
        out += hex[b >> 4];
        out += hex[b & 15];
    }
    return out;
}

}  // namespace

std::string content_hash(const io::MappedFile& file) {
    HashState state = new_hash_state();
    hash_file(state.get(), file);
    return hash_text(state.get());
}

std::string content_hash(const io::Checkpoint& checkpoint) {
    HashState state = new_hash_state();
    for (const auto& shard : checkpoint.shards()) hash_file(state.get(), *shard.file);
    return hash_text(state.get());
}

std::string content_hash_of(const std::filesystem::path& input) {
    std::vector<std::filesystem::path> files;
    std::error_code ec;
    if (std::filesystem::is_directory(input, ec)) files = io::model_files_in(input).weights;
    else if (io::is_shard_index(input)) files = io::read_shard_index(input).shards;
    else files = {input};
    HashState state = new_hash_state();
    for (const auto& f : files) hash_file(state.get(), io::MappedFile(f));
    return hash_text(state.get());
}

namespace {

SecuritySummary summarize(const io::SecurityFinding& f) {
    SecuritySummary s;
    s.global = f.global;
    s.severity = f.severity == io::Severity::Critical ? "critical" : "warning";
    s.offset = f.offset;
    s.called = f.called;
    s.reason = f.reason;
    return s;
}

}  // namespace

ScanReport scan_checkpoint(const io::Checkpoint& checkpoint, const ScanOptions& options) {
    ScanReport report;
    report.file = checkpoint.path().string();
    report.file_size = checkpoint.total_size();
    if (checkpoint.sharded())
        for (const auto& shard : checkpoint.shards()) report.shards.push_back(shard.path.string());
    report.notes = checkpoint.notes();
    report.warnings = checkpoint.warnings();
    report.format = std::string(io::format_name(checkpoint.format()));
    report.state_dict_path = checkpoint.state_dict_path();
    report.step = checkpoint.step();
    report.quantizer = options.analysis.quantizer;
    report.thresholds = options.thresholds;
    for (const auto& f : checkpoint.findings()) report.security.push_back(summarize(f));

    std::vector<const io::TensorEntry*> entries;
    for (const io::TensorEntry* e : checkpoint.state_dict_tensors()) {
        if (!options.selection.is_default() && !explicit_selection_matches(options.selection, e->name)) continue;
        if (e->is_broadcast_view())
            report.undecoded.push_back(e->name + ": a view of " + std::to_string(e->numel()) + " elements repeating a storage of " +
                                       std::to_string(e->storage_nbytes) + " bytes (stride 0): not scanned");
        else if (io::dtype_is_floating(e->dtype)) entries.push_back(e);
        else if (e->encoding == io::TensorEncoding::Opaque) report.undecoded.push_back(e->name + ": " + e->packed.note);
    }

    // Items for the worker pool, biggest first so that two cores are not left waiting on one
    // large embedding at the end; hashing the file is one more item.
    constexpr std::size_t kHashItem = static_cast<std::size_t>(-1);
    std::uint64_t total = 0;
    for (const auto* e : entries) total += e->nbytes();
    std::vector<std::size_t> order(entries.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return entries[a]->nbytes() > entries[b]->nbytes(); });
    if (options.content_hash) order.insert(order.begin(), kHashItem);

    ProgressTracker progress(options.progress, ProgressUnit::Bytes, total);
    report.tensors.resize(entries.size());
    parallel_for(order.size(), options.threads, [&](std::size_t k) {
        progress.check();
        if (order[k] == kHashItem) {
            report.content_hash = content_hash(checkpoint);
            return;
        }
        const io::TensorEntry& e = *entries[order[k]];
        TensorStats& stats = report.tensors[order[k]];
        stats = analyze_tensor(e.name, checkpoint.data(e), options.analysis);
        if (checkpoint.sharded()) stats.shard = e.shard;
        progress.advance(e.nbytes(), e.name);
    });
    judge(report);
    return report;
}

}  // namespace bitfsck::analysis
