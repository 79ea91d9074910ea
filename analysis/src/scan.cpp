#include "bitfsck/analysis/scan.hpp"

#include <xxhash.h>

#include "bitfsck/io/checkpoint_files.hpp"
#include "bitfsck/io/shard_index.hpp"

#include <algorithm>
#include <exception>
#include <memory>
#include <mutex>
#include <numeric>
#include <thread>
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

// Work items pulled from one atomic counter by every worker; biggest first so that two cores
// are not left waiting on one large embedding at the end. Item `hash_item` hashes the file.
class ScanWork {
public:
    ScanWork(const io::Checkpoint& ckpt, const ScanOptions& options, std::vector<const io::TensorEntry*> entries)
        : ckpt_(ckpt), options_(options), entries_(std::move(entries)), results_(entries_.size()) {
        for (const auto* e : entries_) total_ += e->nbytes();
        order_.resize(entries_.size());
        std::iota(order_.begin(), order_.end(), std::size_t{0});
        std::stable_sort(order_.begin(), order_.end(),
                         [&](std::size_t a, std::size_t b) { return entries_[a]->nbytes() > entries_[b]->nbytes(); });
        if (options_.content_hash) order_.insert(order_.begin(), kHashItem);
    }

    void run(unsigned threads) {
        threads = std::max(1u, std::min<unsigned>(threads, static_cast<unsigned>(std::max<std::size_t>(order_.size(), 1))));
        std::vector<std::thread> pool;
        for (unsigned i = 1; i < threads; ++i) pool.emplace_back([this] { work(); });
        work();
        for (auto& t : pool) t.join();
        if (error_) std::rethrow_exception(error_);
        if (cancelled()) throw Cancelled();
    }

    std::vector<TensorStats> take_results() { return std::move(results_); }
    std::string take_hash() { return std::move(hash_); }

private:
    static constexpr std::size_t kHashItem = static_cast<std::size_t>(-1);

    bool cancelled() const { return options_.cancel && options_.cancel->load(std::memory_order_relaxed); }

    void work() {
        while (!stop_.load(std::memory_order_relaxed)) {
            if (cancelled()) {
                stop_ = true;
                return;
            }
            std::size_t k = next_.fetch_add(1, std::memory_order_relaxed);
            if (k >= order_.size()) return;
            try {
                run_item(order_[k]);
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex_);
                if (!error_) error_ = std::current_exception();
                stop_ = true;
            }
        }
    }

    void run_item(std::size_t index) {
        if (index == kHashItem) {
            hash_ = content_hash(ckpt_);
            return;
        }
        const io::TensorEntry& e = *entries_[index];
        io::TensorData data = ckpt_.data(e);
        results_[index] = analyze_tensor(e.name, data, options_.analysis);
        if (ckpt_.sharded()) results_[index].shard = e.shard;
        std::uint64_t done = done_.fetch_add(e.nbytes(), std::memory_order_relaxed) + e.nbytes();
        if (options_.progress) options_.progress(done, total_, e.name);
    }

    const io::Checkpoint& ckpt_;
    const ScanOptions& options_;
    std::vector<const io::TensorEntry*> entries_;
    std::vector<TensorStats> results_;
    std::vector<std::size_t> order_;
    std::string hash_;
    std::uint64_t total_ = 0;
    std::atomic<std::uint64_t> done_{0};
    std::atomic<std::size_t> next_{0};
    std::atomic<bool> stop_{false};
    std::mutex error_mutex_;
    std::exception_ptr error_;
};

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
        if (io::dtype_is_floating(e->dtype)) entries.push_back(e);
        else if (e->encoding == io::TensorEncoding::Opaque) report.undecoded.push_back(e->name + ": " + e->packed.note);
    }

    unsigned threads = options.threads ? options.threads : std::max(1u, std::thread::hardware_concurrency());
    ScanWork work(checkpoint, options, std::move(entries));
    work.run(threads);
    report.tensors = work.take_results();
    if (options.content_hash) report.content_hash = work.take_hash();
    judge(report);
    return report;
}

}  // namespace bitfsck::analysis
