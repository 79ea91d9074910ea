#include "bitfsck/analysis/scan.hpp"

#include "bitfsck/io/checkpoint_files.hpp"
#include "bitfsck/io/parallel.hpp"
#include "bitfsck/io/shard_index.hpp"

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "tensor_scan.hpp"
#include "xxh3_stream.hpp"

namespace bitfsck::analysis {

namespace {

using HashState = std::unique_ptr<detail::Xxh3Stream>;

HashState new_hash_state() { return std::make_unique<detail::Xxh3Stream>(); }

void hash_file(detail::Xxh3Stream* state, const io::MappedFile& file) {
    constexpr std::uint64_t kChunk = 16ull << 20;
    for (std::uint64_t off = 0; off < file.size(); off += kChunk) {
        std::uint64_t len = std::min(kChunk, file.size() - off);
        auto bytes = file.bytes(off, len, "content");
        state->update(bytes.data(), bytes.size());
        // Hashing a checkpoint must not leave it all resident.
        file.release(off, len);
    }
}

std::string hash_text(detail::Xxh3Stream* state) {
    unsigned char digest[16];
    state->digest(digest);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out = "xxh3-128:";
    for (unsigned char b : digest) {
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

namespace {

// The content hash of a checkpoint fed in file order by the workers of the scan itself: before
// each block of a chunk's first pass, the worker hashes the file up to the block's end (the bytes
// between tensors too), so the tensor bytes are read from memory once for both. Whatever order the chunks finish in,
// the hash sees each shard's bytes once, in order, shard after shard.
class OrderedHash {
public:
    explicit OrderedHash(const io::Checkpoint& checkpoint) : checkpoint_(checkpoint), state_(new_hash_state()) {}

    // Hashes up to `end` of shard `shard` (and every earlier shard whole); the pages before
    // `keep_from` are released, those after it are the caller's to release after its pass.
    void advance(std::uint32_t shard, std::uint64_t keep_from, std::uint64_t end) {
        std::lock_guard lock(mutex_);
        const auto& shards = checkpoint_.shards();
        while (shard_ < shard && shard_ < shards.size()) {
            const io::MappedFile& f = *shards[shard_].file;
            hash_range(f, f.size(), f.size());
            ++shard_;
            offset_ = 0;
        }
        if (shard_ == shard && shard_ < shards.size()) hash_range(*shards[shard_].file, keep_from, end);
    }

    std::string finish() {
        advance(static_cast<std::uint32_t>(checkpoint_.shards().size()), 0, 0);
        return hash_text(state_.get());
    }

private:
    void hash_range(const io::MappedFile& f, std::uint64_t keep_from, std::uint64_t end) {
        constexpr std::uint64_t kStep = 4ull << 20;
        end = std::min(end, f.size());
        while (offset_ < end) {
            const std::uint64_t len = std::min(kStep, end - offset_);
            auto bytes = f.bytes(offset_, len, "content");
            state_->update(bytes.data(), bytes.size());
            if (offset_ < keep_from) f.release(offset_, std::min(len, keep_from - offset_));
            offset_ += len;
        }
    }

    const io::Checkpoint& checkpoint_;
    HashState state_;
    std::mutex mutex_;
    std::size_t shard_ = 0;
    std::uint64_t offset_ = 0;
};

// One tensor in flight: its chunked scan and how many chunks of each pass are still to finish.
struct Job {
    std::size_t index = 0;  // into report.tensors
    std::unique_ptr<detail::TensorScan> scan;
    std::string name;
    std::uint32_t shard = 0;
    std::uint64_t bytes = 0;  // of tensor data, for progress
    std::atomic<std::size_t> pass1_left{0}, pass2_left{0};
    bool pass1_done = false;  // under Schedule::mutex
};

struct Task {
    Job* job;
    std::uint32_t chunk;
    bool second_pass;
};

// The order of work: tensors in file order, each tensor's first-pass chunks followed by the
// previous tensor's second-pass chunks, so that both workers stay on nearby bytes and a
// second pass rarely waits for its first. A second-pass chunk taken before its tensor's first
// pass is complete waits for it; it can only wait on chunks taken earlier, which never wait.
std::vector<Task> schedule(std::vector<std::unique_ptr<Job>>& jobs) {
    std::vector<Task> tasks;
    auto first = [&](Job& j) {
        for (std::uint32_t c = 0; c < j.scan->chunks(); ++c) tasks.push_back({&j, c, false});
    };
    auto second = [&](Job& j) {
        for (std::uint32_t c = 0; c < j.scan->chunks(); ++c) tasks.push_back({&j, c, true});
    };
    for (std::size_t k = 0; k < jobs.size(); ++k) {
        first(*jobs[k]);
        if (k > 0) second(*jobs[k - 1]);
    }
    if (!jobs.empty()) second(*jobs.back());
    return tasks;
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

    // Tensors in file order, each cut into chunks for the worker pool: a large tensor is spread
    // over every core, and no more than a chunk per worker is resident at a time.
    std::vector<std::unique_ptr<Job>> jobs;
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const io::TensorEntry& e = *entries[i];
        auto job = std::make_unique<Job>();
        job->index = i;
        job->scan = std::make_unique<detail::TensorScan>(e.name, checkpoint.data(e), options.analysis);
        job->name = e.name;
        job->shard = e.shard;
        job->bytes = e.nbytes();
        job->pass1_left = job->pass2_left = job->scan->chunks();
        total += job->bytes;
        jobs.push_back(std::move(job));
    }
    std::stable_sort(jobs.begin(), jobs.end(), [](const auto& a, const auto& b) {
        return std::pair(a->shard, a->scan->data().span_begin()) < std::pair(b->shard, b->scan->data().span_begin());
    });
    const std::vector<Task> tasks = schedule(jobs);

    std::optional<OrderedHash> hash;
    if (options.content_hash) hash.emplace(checkpoint);
    std::mutex mutex;
    std::condition_variable pass1_done;
    bool failed = false;

    ProgressTracker progress(options.progress, ProgressUnit::Bytes, total);
    report.tensors.resize(entries.size());
    auto run_task = [&](const Task& task) {
        Job& job = *task.job;
        detail::TensorScan& scan = *job.scan;
        const std::int64_t first = scan.chunk_first(task.chunk), count = scan.chunk_count(task.chunk);
        // The chunk's share of the tensor's bytes; the shares add up to the tensor's exactly.
        const auto numel = static_cast<unsigned __int128>(std::max<std::int64_t>(scan.data().numel(), 1));
        const auto upto = [&](std::int64_t k) {
            return static_cast<std::uint64_t>(static_cast<unsigned __int128>(job.bytes) * static_cast<std::uint64_t>(k) / numel);
        };
        const std::uint64_t bytes = scan.data().numel() == 0 ? job.bytes : upto(first + count) - upto(first);
        if (!task.second_pass) {
            if (hash) {
                // Block by block, so the hash and the first pass read each block from cache.
                const std::uint64_t keep_from = first == 0 ? scan.data().span_begin() : scan.data().span_end_after(0, first);
                scan.pass1(task.chunk, [&](std::int64_t b, std::int64_t n) {
                    hash->advance(job.shard, keep_from, scan.data().span_end_after(b, n));
                });
            } else {
                scan.pass1(task.chunk);
            }
            if (job.pass1_left.fetch_sub(1) == 1) {
                scan.finish1();
                std::lock_guard lock(mutex);
                job.pass1_done = true;
                pass1_done.notify_all();
            }
            progress.advance(bytes / 2, job.name);
            return;
        }
        {
            std::unique_lock lock(mutex);
            pass1_done.wait(lock, [&] { return job.pass1_done || failed; });
            if (failed) return;  // the first error is rethrown by parallel_for
        }
        scan.pass2(task.chunk);
        if (job.pass2_left.fetch_sub(1) == 1) {
            TensorStats& stats = report.tensors[job.index];
            stats = scan.finish2();
            if (checkpoint.sharded()) stats.shard = job.shard;
            job.scan.reset();  // releases the tensor's pages
        }
        progress.advance(bytes - bytes / 2, job.name);
    };
    parallel_for(tasks.size(), options.threads, [&](std::size_t k) {
        try {
            progress.check();
            run_task(tasks[k]);
        } catch (...) {
            std::lock_guard lock(mutex);
            failed = true;
            pass1_done.notify_all();
            throw;
        }
    });
    if (hash) report.content_hash = hash->finish();
    judge(report);
    return report;
}

}  // namespace bitfsck::analysis
