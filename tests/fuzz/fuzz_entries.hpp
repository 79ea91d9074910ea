#pragma once
// The fuzzing entry points: one function per reader that takes untrusted bytes. Each one feeds the
// bytes to the reader as bitfsck's commands do (a path to a memory-mapped file, or a span for the
// pickle machine) and then uses everything the reader returned, so that a lie the reader let
// through surfaces here. An input may be refused with bitfsck::Error (that is the contract: a
// one-line error); anything else escaping — another exception, a crash, a sanitizer report, an
// allocation past the fuzzer's limit, a hang — is a bug.
//
// Compiled twice: into the libFuzzer targets (fuzz_target.cpp, clang with ASan and UBSan) and into
// the regression test (tests/io/test_fuzz_regressions.cpp, the project's own compiler), which
// replays every file under tests/fuzz/regressions/<target>/ through the same function.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/object_tree.hpp"
#include "bitfsck/io/packed.hpp"
#include "bitfsck/io/pickle.hpp"
#include "bitfsck/io/zip_archive.hpp"
#include "bitfsck/model/tokenizer.hpp"
#include "bitfsck/model/tokens.hpp"

namespace bitfsck::fuzz {

// The input as a file the readers can open by path: one anonymous memfd per process, rewritten
// for every input, reached through /proc/self/fd. A symlink named `<dir>/input.bit2` points at it
// for the one branch of Checkpoint::open that looks at the file name's extension.
class MemoryFile {
public:
    static MemoryFile& instance() {
        static MemoryFile file;
        return file;
    }
    // Replaces the content; returns the path to open.
    const std::filesystem::path& hold(std::span<const std::byte> bytes) {
        if (::ftruncate(fd_, 0) != 0) fatal("ftruncate");
        std::size_t done = 0;
        while (done < bytes.size()) {
            const ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
            if (n <= 0) fatal("pwrite");
            done += static_cast<std::size_t>(n);
        }
        return path_;
    }
    const std::filesystem::path& bit2_path() const { return bit2_path_; }

    MemoryFile(const MemoryFile&) = delete;
    MemoryFile& operator=(const MemoryFile&) = delete;

private:
    MemoryFile() {
        fd_ = ::memfd_create("bitfsck-fuzz-input", MFD_CLOEXEC);
        if (fd_ < 0) fatal("memfd_create");
        path_ = "/proc/self/fd/" + std::to_string(fd_);
        std::string dir = (std::filesystem::temp_directory_path() / "bitfsck-fuzz-XXXXXX").string();
        if (!::mkdtemp(dir.data())) fatal("mkdtemp");
        dir_ = dir;
        bit2_path_ = dir_ / "input.bit2";
        std::filesystem::create_symlink("/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(fd_), bit2_path_);
    }
    ~MemoryFile() {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
        ::close(fd_);
    }
    [[noreturn]] static void fatal(const char* what) {
        throw std::runtime_error(std::string("fuzz harness: ") + what + " failed");
    }

    int fd_ = -1;
    std::filesystem::path path_, dir_, bit2_path_;
};

// Values read per tensor: enough to reach every code path of the decoders, bounded so that a
// legitimately huge view (a stride-0 expand over one element) does not turn into a hang here.
inline constexpr std::int64_t kMaxElementsRead = 1 << 16;

// Reads what a scan would read: values, and for packed tensors codes, scales and the code check.
inline void read_tensor(const io::Checkpoint& c, const io::TensorEntry& t, bool ternary_view) {
    io::TensorData d = c.data(t);
    const std::int64_t n = std::min(d.numel(), kMaxElementsRead);
    std::vector<double> values(static_cast<std::size_t>(n));
    d.read(0, n, values.data());
    if (n > 0) d.read(d.numel() - 1, 1, values.data());  // the far end of the storage
    if (d.encoding() == io::TensorEncoding::Plain) return;
    std::vector<float> scales(static_cast<std::size_t>(n));
    d.read_scales(0, n, scales.data());
    if (!d.is_ternary()) return;
    std::vector<std::int8_t> codes(static_cast<std::size_t>(n));
    d.read_codes(0, n, codes.data());
    d.check_codes();
    if (ternary_view && d.numel() <= kMaxElementsRead) {
        io::TernaryTensor view = io::read_ternary(d, t.name);
        (void)view.fractions();
    }
}

// Opens a checkpoint of any format as `bitfsck inspect` and `scan` do, renders what inspect shows,
// and decodes every tensor (each tensor's error on its own, so that one bad tensor does not hide
// the rest).
inline void open_checkpoint(const std::filesystem::path& path, bool ternary_view) {
    io::OpenOptions options;
    options.pickle.limits.max_values = 1'000'000;  // a fuzz input is small; keep memory small too
    io::Checkpoint c = io::Checkpoint::open(path, options);
    (void)c.step();
    (void)c.state_dict_tensors();
    (void)io::render_tree(io::object_tree(c));
    (void)io::inspect_json(c).dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    for (const auto& t : c.tensors()) {
        (void)c.find_tensor(t.name);
        try {
            read_tensor(c, t, ternary_view);
        } catch (const Error&) {
        }
    }
}

// --- the entry points ------------------------------------------------------------------------

// The pickle machine alone, on a span (as it reads data.pkl inside a mapped zip).
inline void fuzz_pickle(std::span<const std::byte> data) {
    io::PickleOptions options;
    options.source_name = "fuzz.pkl";
    options.limits.max_values = 1'000'000;
    options.trusted_globals = {"__main__.TrainConfig"};
    io::PickleDocument doc = io::parse_pickle(data, options);
    for (const auto& f : doc.findings) (void)f.reason.size();
    if (doc.root) (void)doc.root->kind_name();
}

// The zip reader (ZIP64 included): the directory, then every record stored or inflated.
inline void fuzz_zip(std::span<const std::byte> data) {
    auto file = std::make_shared<const io::MappedFile>(MemoryFile::instance().hold(data));
    (void)io::ZipArchive::looks_like_zip(*file);
    io::ZipArchive zip(file);
    (void)zip.find_in_top_folder("data.pkl");
    for (const auto& e : zip.entries()) {
        (void)zip.find(e.name);
        try {
            if (e.method == 0) (void)zip.stored_view(e);
            (void)zip.read(e, 1 << 20);
        } catch (const Error&) {
        }
    }
}

// Checkpoint::open end to end: format detection, the readers, packed detection, the object tree,
// inspect's JSON and every tensor decoded. The corpora and dictionaries steer each target to its
// format; any input may still reach any reader, as a user's file can.
inline void fuzz_checkpoint(std::span<const std::byte> data) {
    open_checkpoint(MemoryFile::instance().hold(data), false);
}

// .bit2, opened under a .bit2 name so that a foreign .bit2 is described rather than refused.
inline void fuzz_bit2(std::span<const std::byte> data) {
    MemoryFile& file = MemoryFile::instance();
    file.hold(data);
    open_checkpoint(file.bit2_path(), true);
}

// Packed formats: detection inside open, then each packed tensor decoded to its ternary view.
inline void fuzz_packed(std::span<const std::byte> data) {
    open_checkpoint(MemoryFile::instance().hold(data), true);
}

// Token files (raw u16/u32 ids or .npy) as finetune, perplexity and induction read them.
inline void fuzz_tokens(std::span<const std::byte> data) {
    const auto& path = MemoryFile::instance().hold(data);
    for (auto dtype : {model::TokenDType::U16, model::TokenDType::U32}) {
        try {
            (void)model::read_token_file(path, dtype);
            (void)model::read_token_file(path, dtype, 3);
        } catch (const Error&) {
        }
    }
}

// The prompt tokenizers (`generate --prompt`): ids as text for most vocabularies, bytes for 256.
inline void fuzz_tokenizer(std::span<const std::byte> data) {
    const std::string text(reinterpret_cast<const char*>(data.data()), data.size());
    for (std::int64_t vocab : {256, 32000}) {
        model::Tokenizer tok = model::Tokenizer::create(std::nullopt, vocab);
        try {
            (void)tok.decode(tok.encode(text));
        } catch (const Error&) {
        }
    }
}

struct Target {
    std::string_view name;
    void (*run)(std::span<const std::byte>);
};

// Every target, by the name of its folder under tests/fuzz/regressions/ and dicts/.
inline constexpr Target kTargets[] = {
    {"pickle", fuzz_pickle},           {"zip", fuzz_zip},       {"pt", fuzz_checkpoint},
    {"safetensors", fuzz_checkpoint},  {"gguf", fuzz_checkpoint}, {"bit2", fuzz_bit2},
    {"packed", fuzz_packed},           {"tokens", fuzz_tokens}, {"tokenizer", fuzz_tokenizer},
};

// Runs one input through a target: bitfsck::Error is the reader's refusal and fine; anything else
// propagates to the caller (libFuzzer reports an uncaught exception as a crash).
inline void run_one(const Target& target, std::span<const std::byte> data) {
    try {
        target.run(data);
    } catch (const Error&) {
    }
}

}  // namespace bitfsck::fuzz
