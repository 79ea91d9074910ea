#include "bitfsck/io/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "bitfsck/io/error.hpp"

namespace bitfsck::io {
namespace {

// Closes the descriptor on every path out of the constructor; the mapping outlives it.
class FileDescriptor {
public:
    explicit FileDescriptor(int fd) : fd_(fd) {}
    ~FileDescriptor() {
        if (fd_ >= 0) ::close(fd_);
    }
    FileDescriptor(const FileDescriptor&) = delete;
    FileDescriptor& operator=(const FileDescriptor&) = delete;
    int get() const { return fd_; }

private:
    int fd_;
};

std::uint64_t page_size() {
    static const auto size = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    return size;
}

// The page-aligned range inside [offset, offset+length) clipped to the file, or an empty range.
// Pages shared with neighbouring data are left alone so releasing one tensor never evicts
// the start of the next.
bool inner_pages(std::uint64_t file_size, std::uint64_t offset, std::uint64_t length, std::uint64_t& begin,
                 std::uint64_t& end) {
    if (offset >= file_size) return false;
    const std::uint64_t last = length > file_size - offset ? file_size : offset + length;
    const std::uint64_t page = page_size();
    begin = (offset + page - 1) / page * page;
    // The last page of the file may be partial; it holds nothing else, so it can go too.
    end = last == file_size ? (last + page - 1) / page * page : last / page * page;
    return begin < end;
}

}  // namespace

MappedFile::MappedFile(const std::filesystem::path& path) : path_(path) {
    const std::string name = path_.string();
    FileDescriptor fd(::open(name.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) throw FileError(name + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw FileError(name + ": cannot stat: " + std::strerror(errno));
    if (S_ISDIR(st.st_mode)) throw FileError(name + ": is a directory");
    if (!S_ISREG(st.st_mode)) throw FileError(name + ": is not a regular file");
    size_ = static_cast<std::uint64_t>(st.st_size);
    if (size_ == 0) return;  // mmap refuses a zero length; an empty file maps nothing
    if (size_ > std::numeric_limits<std::size_t>::max()) throw FileError(name + ": too large to map");
    void* p = ::mmap(nullptr, static_cast<std::size_t>(size_), PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (p == MAP_FAILED) throw FileError(name + ": cannot map: " + std::strerror(errno));
    data_ = static_cast<const std::byte*>(p);
}

MappedFile::~MappedFile() {
    if (data_) ::munmap(const_cast<std::byte*>(data_), static_cast<std::size_t>(size_));
}

std::span<const std::byte> MappedFile::bytes(std::uint64_t offset, std::uint64_t length, const char* what) const {
    // Written as two comparisons so that offset + length cannot wrap.
    if (offset > size_ || length > size_ - offset)
        throw FormatError(display_name(), std::string(what ? what : "data") + " at offset " + std::to_string(offset) +
                                              ", length " + std::to_string(length) +
                                              " runs past the end of the file (size " + std::to_string(size_) + ")");
    if (length == 0) return {};
    return {data_ + offset, static_cast<std::size_t>(length)};
}

void MappedFile::release(std::uint64_t offset, std::uint64_t length) const {
    std::uint64_t begin, end;
    if (!data_ || !inner_pages(size_, offset, length, begin, end)) return;
    // Safe on a read-only private mapping: the pages are never dirty, so they are re-read from
    // the file if touched again. Failure only means the memory stays resident.
    ::madvise(const_cast<std::byte*>(data_ + begin), static_cast<std::size_t>(end - begin), MADV_DONTNEED);
}

void MappedFile::release_near(std::uint64_t offset) const {
    if (!data_ || offset >= size_) return;
    constexpr std::uintptr_t kTableSpan = std::uintptr_t{2} << 20;  // what one page table maps (x86-64, arm64 4K)
    const auto base = reinterpret_cast<std::uintptr_t>(data_);
    const std::uintptr_t page = page_size();
    const std::uintptr_t mapped_end = base + (size_ + page - 1) / page * page;
    const std::uintptr_t at = base + offset;
    const std::uintptr_t begin = std::max(base, at & ~(kTableSpan - 1));
    const std::uintptr_t end = std::min(mapped_end, (at & ~(kTableSpan - 1)) + kTableSpan);
    ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);  // failure: the pages stay
}

void MappedFile::will_need(std::uint64_t offset, std::uint64_t length) const {
    if (!data_ || offset >= size_) return;
    const std::uint64_t page = page_size();
    const std::uint64_t begin = offset / page * page;
    const std::uint64_t end = length > size_ - offset ? size_ : offset + length;
    if (end > begin)  // a hint only: failure changes nothing but speed
        ::madvise(const_cast<std::byte*>(data_ + begin), static_cast<std::size_t>(end - begin), MADV_WILLNEED);
}

}  // namespace bitfsck::io
