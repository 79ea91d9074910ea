#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bitfsck/io/mapped_file.hpp"

namespace bitfsck::io {

struct ZipEntry {
    std::string name;
    std::uint64_t local_header_offset = 0;
    std::uint64_t data_offset = 0;        // first byte of the (possibly compressed) data in the file
    std::uint64_t compressed_size = 0;
    std::uint64_t size = 0;               // uncompressed
    std::uint16_t method = 0;             // 0 stored, 8 deflated
    std::uint32_t crc32 = 0;
};

// The central directory of a zip archive (ZIP64 included), every offset and size checked
// against the file. Stored records are read zero-copy from the map.
class ZipArchive {
public:
    explicit ZipArchive(std::shared_ptr<const MappedFile> file);

    static bool looks_like_zip(const MappedFile& file);  // local or end-of-central-directory signature

    const std::vector<ZipEntry>& entries() const { return entries_; }
    const ZipEntry* find(std::string_view name) const;
    // Entry whose name ends with "/" + suffix under the archive's single top folder (torch.save
    // writes "<archive name>/data.pkl"); nullptr when absent.
    const ZipEntry* find_in_top_folder(std::string_view suffix) const;
    const std::string& top_folder() const { return top_folder_; }  // without trailing '/'

    // Zero-copy view of a stored record; throws FormatError for a compressed one.
    std::span<const std::byte> stored_view(const ZipEntry& e) const;
    // The record's bytes, inflated when deflated (refused past max_size).
    std::vector<std::byte> read(const ZipEntry& e, std::uint64_t max_size = std::uint64_t(1) << 32) const;

    const MappedFile& file() const { return *file_; }

private:
    std::shared_ptr<const MappedFile> file_;
    std::vector<ZipEntry> entries_;
    std::unordered_map<std::string, std::size_t> index_;  // name -> position in entries_
    std::string top_folder_;
};

}  // namespace bitfsck::io
