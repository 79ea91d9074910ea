#pragma once
// Follows a run folder as a training job writes checkpoints into it, and says when each one is
// complete enough to read: its files have kept the same sizes and modification times for a
// settling time. torch.save writes straight to the final name, so a checkpoint that is still
// being written is listed like any other; only its changing signature tells it apart.
//
// Wakes on inotify events (a file closed after writing, moved in, created or deleted) where the
// kernel offers them, and on a poll interval in any case (network file systems send no events).
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <vector>

namespace bitfsck::io {

struct FolderWatchOptions {
    std::chrono::milliseconds poll{1000};    // the longest wait between two listings
    std::chrono::milliseconds settle{2000};  // a checkpoint is settled after this long unchanged
    bool use_inotify = true;                 // false: listings on the poll interval only
};

// What a checkpoint input looks like on disk now: the size and modification time of every file
// it spans (a file, a sharded index's shards, or the weights, index and config.json of a model
// folder). Equal signatures over the settling time mean nobody is writing it.
struct InputSignature {
    std::uint64_t bytes = 0;
    std::int64_t newest_mtime_ns = 0;
    std::uint64_t files = 0;
    std::uint64_t mix = 0;  // the sizes and times of every file, mixed, so a rewrite of one shard shows
    bool operator==(const InputSignature&) const = default;
};
InputSignature input_signature(const std::filesystem::path& input);

// One run folder being followed. Its state is what it has seen of each input: the signature and
// since when it has held, and which signature it last handed out.
class FolderWatch {
public:
    // Throws FileError naming the folder when it is missing or not a folder.
    explicit FolderWatch(std::filesystem::path folder, FolderWatchOptions options = {});
    ~FolderWatch();
    FolderWatch(const FolderWatch&) = delete;
    FolderWatch& operator=(const FolderWatch&) = delete;

    // Waits for a change or for at most the poll interval, lists the folder's checkpoints
    // (checkpoint_files_in, without hidden names and transformers' `tmp-checkpoint-N` folders),
    // and returns those that have settled with a signature not returned before, in name order.
    // A checkpoint rewritten after it was returned is returned again once it settles.
    std::vector<std::filesystem::path> settled();

    // Inputs returned before that are no longer in the folder (deleted or renamed away) since
    // the last call; each is named once.
    std::vector<std::filesystem::path> take_removed();

    // Whether a listed checkpoint has changed and not settled yet (a writer is at work), and when
    // the folder's checkpoints last changed at all (appeared, grew, were renamed or removed).
    bool unsettled() const;
    // Whether `input`, handed out before, has changed since (a writer is at it again).
    bool changing(const std::filesystem::path& input) const;
    std::chrono::steady_clock::time_point last_change() const { return last_change_; }

    const std::filesystem::path& folder() const { return folder_; }
    bool uses_inotify() const { return inotify_fd_ >= 0; }

private:
    struct Seen {
        InputSignature signature;
        std::chrono::steady_clock::time_point since;
        bool handed_out = false;
        InputSignature handed_signature;
    };
    void wait_for_change();

    std::filesystem::path folder_;
    FolderWatchOptions options_;
    int inotify_fd_ = -1;
    std::map<std::filesystem::path, Seen> seen_;
    std::vector<std::filesystem::path> removed_;
    bool listed_once_ = false;
    std::chrono::steady_clock::time_point last_change_ = std::chrono::steady_clock::now();
};

}  // namespace bitfsck::io
