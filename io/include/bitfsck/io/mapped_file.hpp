#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

namespace bitfsck::io {

// A read-only memory map of a whole file. Never writes to the file.
// bytes() is bounds-checked: a range past the end throws FormatError naming the file.
class MappedFile {
public:
    explicit MappedFile(const std::filesystem::path& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const std::filesystem::path& path() const { return path_; }
    std::string display_name() const { return path_.string(); }
    std::uint64_t size() const { return size_; }
    const std::byte* data() const { return data_; }

    // [offset, offset+length) of the file; throws FormatError (with `what` in the message) when out of range.
    std::span<const std::byte> bytes(std::uint64_t offset, std::uint64_t length, const char* what = "data") const;

    // Tell the kernel we are done with these pages, so they stop counting in our resident memory.
    void release(std::uint64_t offset, std::uint64_t length) const;
    // Drops whatever a small read at `offset` (a header) mapped in: a fault maps pages around the
    // one it touched, a whole large folio (up to 2 MB) where the page cache keeps file pages in
    // them, but never past the 2 MB region of address space that one page table covers.
    void release_near(std::uint64_t offset) const;
    // Tell the kernel we will read this range soon, in order.
    void will_need(std::uint64_t offset, std::uint64_t length) const;

private:
    std::filesystem::path path_;
    std::uint64_t size_ = 0;
    const std::byte* data_ = nullptr;
};

}  // namespace bitfsck::io
