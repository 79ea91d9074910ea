#include "bitfsck/io/folder_watch.hpp"

#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <system_error>
#include <thread>

#include "bitfsck/io/checkpoint_files.hpp"
#include "bitfsck/io/error.hpp"

namespace bitfsck::io {

namespace fs = std::filesystem;

namespace {

void add_file(InputSignature& s, const fs::path& file) {
    std::error_code ec;
    const auto size = fs::file_size(file, ec);
    if (ec) return;  // gone between the listing and now: the next listing tells
    const auto time = fs::last_write_time(file, ec);
    if (ec) return;
    const std::int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count();
    s.bytes += size;
    s.files += 1;
    s.newest_mtime_ns = std::max(s.newest_mtime_ns, ns);
    // splitmix64 steps: order-dependent, so a rename of one shard over another shows too
    auto mix = [](std::uint64_t x) {
        x += 0x9e3779b97f4a7c15ULL;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        return x ^ (x >> 31);
    };
    s.mix = mix(s.mix ^ size) ^ mix(static_cast<std::uint64_t>(ns));
}

// The other files of a shard set, beside its index or its first shard.
std::vector<fs::path> shard_set(const fs::path& member) {
    std::vector<fs::path> files;
    std::string prefix, extension;
    if (is_shard_index(member)) {
        // model.safetensors.index.json -> shards model-*.safetensors
        std::string name = member.filename().string();
        name = name.substr(0, name.size() - std::string(".index.json").size());
        const fs::path weights(name);
        prefix = weights.stem().string();
        extension = weights.extension().string();
    } else if (auto s = shard_name(member)) {
        prefix = s->prefix;
        extension = s->extension;
    } else {
        return files;
    }
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(member.parent_path(), ec))
        if (auto s = shard_name(e.path()); s && s->prefix == prefix && s->extension == extension && e.path() != member)
            files.push_back(e.path());
    std::sort(files.begin(), files.end());
    return files;
}

// HF Trainer saves into `tmp-checkpoint-N/` and renames it when complete; dotted names are
// editors' and writers' temporaries.
bool is_temporary_name(const fs::path& p) {
    const std::string n = p.filename().string();
    return n.empty() || n[0] == '.' || n.rfind("tmp-", 0) == 0 || n.rfind("tmp_", 0) == 0;
}

}  // namespace

InputSignature input_signature(const fs::path& input) {
    InputSignature s;
    std::error_code ec;
    if (fs::is_directory(input, ec)) {
        // The files a scan of the folder reads (its index and weights, and config.json): a
        // Trainer writing optimizer.pt or trainer_state.json after the weights is not a new model.
        // While the folder is not yet one model, every file in it counts.
        std::vector<fs::path> files;
        try {
            const ModelFiles model = model_files_in(input);
            files = model.weights;
            if (model.index) files.push_back(*model.index);
            if (fs::exists(input / "config.json", ec)) files.push_back(input / "config.json");
        } catch (const Error&) {
            for (auto it = fs::recursive_directory_iterator(input, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
                if (it->is_regular_file(ec)) files.push_back(it->path());
        }
        std::sort(files.begin(), files.end());
        for (const auto& f : files) add_file(s, f);
        return s;
    }
    add_file(s, input);
    for (const auto& f : shard_set(input)) add_file(s, f);
    return s;
}

FolderWatch::FolderWatch(fs::path folder, FolderWatchOptions options) : folder_(std::move(folder)), options_(options) {
    std::error_code ec;
    if (!fs::exists(folder_, ec)) throw FileError(folder_.string() + ": no such folder", folder_.string());
    if (!fs::is_directory(folder_, ec)) throw FileError(folder_.string() + ": not a folder (watch follows a run folder)", folder_.string());
    if (options_.use_inotify) {
        inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (inotify_fd_ >= 0 &&
            inotify_add_watch(inotify_fd_, folder_.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_MODIFY) < 0) {
            // Out of watches, or a file system without events: polling still works.
            ::close(inotify_fd_);
            inotify_fd_ = -1;
        }
    }
}

FolderWatch::~FolderWatch() {
    if (inotify_fd_ >= 0) ::close(inotify_fd_);
}

void FolderWatch::wait_for_change() {
    // With checkpoints still settling, look again as soon as the earliest may have settled.
    auto wait = options_.poll;
    const auto now = std::chrono::steady_clock::now();
    for (const auto& [path, seen] : seen_)
        if (seen.signature.bytes > 0 && !(seen.handed_out && seen.handed_signature == seen.signature)) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(seen.since + options_.settle - now);
            wait = std::clamp(left + std::chrono::milliseconds(1), std::chrono::milliseconds(0), wait);
        }
    if (inotify_fd_ < 0) {
        std::this_thread::sleep_for(wait);
        return;
    }
    pollfd p{inotify_fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(wait.count())) > 0) {
        // Events only wake the listing; their contents are not needed. Drain them.
        alignas(inotify_event) std::array<char, 16384> buffer;
        while (::read(inotify_fd_, buffer.data(), buffer.size()) > 0) {
        }
    }
}

std::vector<fs::path> FolderWatch::settled() {
    wait_for_change();
    std::vector<fs::path> listed;
    for (const auto& p : checkpoint_files_in(folder_))
        if (!is_temporary_name(p)) listed.push_back(p);

    for (auto it = seen_.begin(); it != seen_.end();) {
        if (std::find(listed.begin(), listed.end(), it->first) == listed.end()) {
            if (it->second.handed_out) removed_.push_back(it->first);
            it = seen_.erase(it);
            last_change_ = std::chrono::steady_clock::now();
        } else {
            ++it;
        }
    }
    const auto now = std::chrono::steady_clock::now();
    const bool first_listing = !listed_once_;
    listed_once_ = true;
    std::vector<fs::path> ready;
    for (const auto& p : listed) {
        const InputSignature sig = input_signature(p);
        // In the first listing, a checkpoint untouched for the settling time already was there
        // before the watch began: settled at first sight. Later arrivals always wait the settling
        // time out, whatever their times say (a file server's clock may be behind ours).
        const std::int64_t now_ns =
            std::chrono::duration_cast<std::chrono::nanoseconds>(fs::file_time_type::clock::now().time_since_epoch()).count();
        const bool old_already = first_listing && now_ns - sig.newest_mtime_ns >= std::chrono::nanoseconds(options_.settle).count();
        auto [it, inserted] = seen_.try_emplace(p, Seen{sig, old_already ? now - options_.settle : now});
        Seen& seen = it->second;
        if (inserted && !old_already) last_change_ = now;
        if (!inserted && !(seen.signature == sig)) {
            seen.signature = sig;
            seen.since = now;
            last_change_ = now;
        }
        if (seen.signature.files == 0 || seen.signature.bytes == 0) continue;
        if (seen.handed_out && seen.handed_signature == seen.signature) continue;
        if (now - seen.since < options_.settle) continue;
        seen.handed_out = true;
        seen.handed_signature = seen.signature;
        ready.push_back(p);
    }
    return ready;
}

bool FolderWatch::changing(const fs::path& input) const {
    const auto it = seen_.find(input);
    return it != seen_.end() && it->second.handed_out && !(it->second.handed_signature == it->second.signature);
}

bool FolderWatch::unsettled() const {
    return std::any_of(seen_.begin(), seen_.end(), [](const auto& entry) {
        const Seen& seen = entry.second;
        return seen.signature.bytes > 0 && !(seen.handed_out && seen.handed_signature == seen.signature);
    });
}

std::vector<fs::path> FolderWatch::take_removed() {
    std::vector<fs::path> out;
    out.swap(removed_);
    return out;
}

}  // namespace bitfsck::io
