#include "bitfsck/io/zip_archive.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <string>

#include "bitfsck/io/error.hpp"

namespace bitfsck::io {
namespace {

constexpr std::uint32_t kLocalHeaderSig = 0x04034b50;
constexpr std::uint32_t kCentralHeaderSig = 0x02014b50;
constexpr std::uint32_t kEocdSig = 0x06054b50;
constexpr std::uint32_t kZip64EocdSig = 0x06064b50;
constexpr std::uint32_t kZip64LocatorSig = 0x07064b50;

constexpr std::uint64_t kLocalHeaderSize = 30;
constexpr std::uint64_t kCentralHeaderSize = 46;
constexpr std::uint64_t kEocdSize = 22;
constexpr std::uint64_t kZip64EocdSize = 56;
constexpr std::uint64_t kZip64LocatorSize = 20;
constexpr std::uint64_t kMaxCommentSize = 65535;

constexpr std::uint16_t kZip64ExtraId = 0x0001;
constexpr std::uint16_t kMethodStored = 0;
constexpr std::uint16_t kMethodDeflated = 8;
constexpr std::uint16_t kFlagEncrypted = 0x0001;

// Deflate cannot expand data by more than this factor (a 258-byte match in about 2 bits of input).
constexpr std::uint64_t kMaxDeflateRatio = 1032;

// Little-endian field reads from a bounds-checked span (the map may be unaligned).
std::uint16_t u16(std::span<const std::byte> b, std::size_t at) {
    return static_cast<std::uint16_t>(std::to_integer<unsigned>(b[at]) | std::to_integer<unsigned>(b[at + 1]) << 8);
}
std::uint32_t u32(std::span<const std::byte> b, std::size_t at) {
    return std::uint32_t(u16(b, at)) | std::uint32_t(u16(b, at + 2)) << 16;
}
std::uint64_t u64(std::span<const std::byte> b, std::size_t at) {
    return std::uint64_t(u32(b, at)) | std::uint64_t(u32(b, at + 4)) << 32;
}

struct DirectoryLocation {
    std::uint64_t entries = 0;
    std::uint64_t size = 0;
    std::uint64_t offset = 0;
    std::uint64_t end = 0;  // where the central directory must end: the first end record
};

class Reader {
public:
    explicit Reader(const MappedFile& file) : file_(file), name_(file.display_name()) {}

    [[noreturn]] void fail(const std::string& what) const { throw FormatError(name_, what); }

    std::span<const std::byte> at(std::uint64_t offset, std::uint64_t length, const std::string& what) const {
        return file_.bytes(offset, length, what.c_str());
    }

    DirectoryLocation locate_directory() const;
    std::vector<ZipEntry> read_directory(const DirectoryLocation& dir) const;

private:
    std::optional<std::uint64_t> find_eocd() const;
    bool read_zip64_end(std::uint64_t eocd, DirectoryLocation& dir) const;
    ZipEntry read_central_header(std::span<const std::byte> dir, std::uint64_t& pos, std::uint64_t index) const;
    void apply_zip64_extra(std::span<const std::byte> extra, ZipEntry& e, bool disk_is_max) const;
    void read_local_header(ZipEntry& e) const;

    const MappedFile& file_;
    std::string name_;
};

// The last end-of-central-directory signature whose comment fits in the file. It must lie in
// the final 22 + 65535 bytes, since the comment length is a 16-bit field.
std::optional<std::uint64_t> Reader::find_eocd() const {
    const std::uint64_t size = file_.size();
    if (size < kEocdSize) return std::nullopt;
    const std::uint64_t lowest = size - kEocdSize > kMaxCommentSize ? size - kEocdSize - kMaxCommentSize : 0;
    const auto tail = at(lowest, size - lowest, "end of central directory search");
    for (std::uint64_t pos = size - kEocdSize + 1; pos-- > lowest;) {
        const auto rel = static_cast<std::size_t>(pos - lowest);
        if (u32(tail, rel) != kEocdSig) continue;
        if (pos + kEocdSize + u16(tail, rel + 20) <= size) return pos;
    }
    return std::nullopt;
}

bool Reader::read_zip64_end(std::uint64_t eocd, DirectoryLocation& dir) const {
    if (eocd < kZip64LocatorSize) return false;
    const auto loc = at(eocd - kZip64LocatorSize, kZip64LocatorSize, "ZIP64 end of central directory locator");
    if (u32(loc, 0) != kZip64LocatorSig) return false;
    if (u32(loc, 4) != 0 || u32(loc, 16) > 1) fail("multi-disk zip archives are not supported");
    const std::uint64_t record_offset = u64(loc, 8);
    const auto rec = at(record_offset, kZip64EocdSize, "ZIP64 end of central directory record");
    if (u32(rec, 0) != kZip64EocdSig)
        fail("no ZIP64 end of central directory record at offset " + std::to_string(record_offset) +
             " where its locator points");
    if (u32(rec, 16) != 0 || u32(rec, 20) != 0) fail("multi-disk zip archives are not supported");
    if (u64(rec, 24) != u64(rec, 32))
        fail("ZIP64 end of central directory counts " + std::to_string(u64(rec, 24)) + " entries on this disk but " +
             std::to_string(u64(rec, 32)) + " in total");
    dir.entries = u64(rec, 32);
    dir.size = u64(rec, 40);
    dir.offset = u64(rec, 48);
    dir.end = record_offset;
    return true;
}

DirectoryLocation Reader::locate_directory() const {
    const auto eocd = find_eocd();
    if (!eocd) fail("no zip end of central directory record (not a zip archive, or truncated)");
    const auto rec = at(*eocd, kEocdSize, "end of central directory record");
    DirectoryLocation dir;
    if (!read_zip64_end(*eocd, dir)) {
        if (u16(rec, 4) != 0 || u16(rec, 6) != 0) fail("multi-disk zip archives are not supported");
        if (u16(rec, 8) != u16(rec, 10))
            fail("end of central directory counts " + std::to_string(u16(rec, 8)) + " entries on this disk but " +
                 std::to_string(u16(rec, 10)) + " in total");
        if (u16(rec, 10) == 0xffff || u32(rec, 12) == 0xffffffff || u32(rec, 16) == 0xffffffff)
            fail("end of central directory defers to a ZIP64 record that is missing");
        dir.entries = u16(rec, 10);
        dir.size = u32(rec, 12);
        dir.offset = u32(rec, 16);
        dir.end = *eocd;
    }
    if (dir.offset > dir.end || dir.size > dir.end - dir.offset)
        fail("central directory at offset " + std::to_string(dir.offset) + ", length " + std::to_string(dir.size) +
             " runs past its end record at offset " + std::to_string(dir.end) + " (file size " +
             std::to_string(file_.size()) + ")");
    if (dir.entries > dir.size / kCentralHeaderSize)
        fail("central directory of " + std::to_string(dir.size) + " bytes cannot hold the " +
             std::to_string(dir.entries) + " entries it claims");
    return dir;
}

void Reader::apply_zip64_extra(std::span<const std::byte> extra, ZipEntry& e, bool disk_is_max) const {
    for (std::size_t pos = 0; pos + 4 <= extra.size();) {
        const std::uint16_t id = u16(extra, pos);
        const std::size_t len = u16(extra, pos + 2);
        if (pos + 4 + len > extra.size()) fail("zip record '" + e.name + "' has a truncated extra field");
        if (id == kZip64ExtraId) {
            // Only the fields whose 32-bit slot is saturated are present, always in this order.
            auto field = extra.subspan(pos + 4, len);
            std::size_t used = 0;
            auto take = [&](std::uint64_t& value) {
                if (used + 8 > field.size()) fail("zip record '" + e.name + "' has a ZIP64 extra field that is too short");
                value = u64(field, used);
                used += 8;
            };
            if (e.size == 0xffffffff) take(e.size);
            if (e.compressed_size == 0xffffffff) take(e.compressed_size);
            if (e.local_header_offset == 0xffffffff) take(e.local_header_offset);
            if (disk_is_max && (used + 4 > field.size() || u32(field, used) != 0))
                fail("zip record '" + e.name + "' lies on another disk; multi-disk archives are not supported");
            return;
        }
        pos += 4 + len;
    }
    if (e.size == 0xffffffff || e.compressed_size == 0xffffffff || e.local_header_offset == 0xffffffff || disk_is_max)
        fail("zip record '" + e.name + "' needs a ZIP64 extra field that is missing");
}

ZipEntry Reader::read_central_header(std::span<const std::byte> dir, std::uint64_t& pos, std::uint64_t index) const {
    const std::string which = "central directory entry " + std::to_string(index);
    if (dir.size() - pos < kCentralHeaderSize) fail(which + " runs past the end of the central directory");
    const auto h = dir.subspan(static_cast<std::size_t>(pos), kCentralHeaderSize);
    if (u32(h, 0) != kCentralHeaderSig) fail(which + " has a bad signature");
    const std::uint64_t name_len = u16(h, 28), extra_len = u16(h, 30), comment_len = u16(h, 32);
    const std::uint64_t total = kCentralHeaderSize + name_len + extra_len + comment_len;
    if (dir.size() - pos < total) fail(which + " runs past the end of the central directory");

    ZipEntry e;
    const auto name = dir.subspan(static_cast<std::size_t>(pos + kCentralHeaderSize), name_len);
    e.name.assign(reinterpret_cast<const char*>(name.data()), name.size());
    if (e.name.find('\0') != std::string::npos) fail(which + " has a NUL byte in its name");
    if ((u16(h, 8) & kFlagEncrypted) != 0) fail("zip record '" + e.name + "' is encrypted");
    e.method = u16(h, 10);
    e.crc32 = u32(h, 16);
    e.compressed_size = u32(h, 20);
    e.size = u32(h, 24);
    e.local_header_offset = u32(h, 42);
    const bool disk_is_max = u16(h, 34) == 0xffff;
    if (!disk_is_max && u16(h, 34) != 0)
        fail("zip record '" + e.name + "' lies on another disk; multi-disk archives are not supported");
    apply_zip64_extra(dir.subspan(static_cast<std::size_t>(pos + kCentralHeaderSize + name_len), extra_len), e,
                      disk_is_max);
    pos += total;
    return e;
}

void Reader::read_local_header(ZipEntry& e) const {
    const std::string record = "zip record '" + e.name + "'";
    const auto h = at(e.local_header_offset, kLocalHeaderSize, "local header of " + record);
    if (u32(h, 0) != kLocalHeaderSig)
        fail(record + " has no local header at offset " + std::to_string(e.local_header_offset));
    const std::uint64_t name_len = u16(h, 26), extra_len = u16(h, 28);
    // A local name that differs from the central one means two readers could see two archives.
    const auto name = at(e.local_header_offset + kLocalHeaderSize, name_len, "local header of " + record);
    if (name.size() != e.name.size() || (!name.empty() && std::memcmp(name.data(), e.name.data(), name.size()) != 0))
        fail(record + " has a different name in its local header");
    // One header per tensor, spread over the file: without this, what reading them maps stays resident.
    file_.release_near(e.local_header_offset);
    e.data_offset = e.local_header_offset + kLocalHeaderSize + name_len + extra_len;
    at(e.data_offset, e.compressed_size, "data of " + record);
    if (e.method == kMethodStored && e.compressed_size != e.size)
        fail(record + " is stored but its sizes differ (" + std::to_string(e.compressed_size) + " stored, " +
             std::to_string(e.size) + " uncompressed)");
}

std::vector<ZipEntry> Reader::read_directory(const DirectoryLocation& loc) const {
    const auto dir = at(loc.offset, loc.size, "central directory");
    std::vector<ZipEntry> entries;
    entries.reserve(static_cast<std::size_t>(loc.entries));
    std::uint64_t pos = 0;
    for (std::uint64_t i = 0; i < loc.entries; ++i) {
        ZipEntry e = read_central_header(dir, pos, i);
        read_local_header(e);
        entries.push_back(std::move(e));
    }
    return entries;
}

std::string common_top_folder(const std::vector<ZipEntry>& entries) {
    std::string top;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto slash = entries[i].name.find('/');
        if (slash == std::string::npos || slash == 0) return {};
        std::string_view first(entries[i].name.data(), slash);
        if (i == 0)
            top = first;
        else if (first != top)
            return {};
    }
    return top;
}

// Ends zlib's stream on every way out of read().
struct Inflater {
    z_stream zs{};
    Inflater(const std::string& file, const std::string& record) {
        if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) throw FormatError(file, "cannot start inflating " + record);
    }
    ~Inflater() { inflateEnd(&zs); }
    Inflater(const Inflater&) = delete;
    Inflater& operator=(const Inflater&) = delete;
};

// zlib counts in uInt; feed huge buffers in pieces.
constexpr std::uint64_t kZlibChunk = 1u << 30;

std::uint32_t crc_of(std::span<const std::byte> data) {
    uLong crc = crc32(0L, Z_NULL, 0);
    for (std::size_t pos = 0; pos < data.size();) {
        const auto n = static_cast<uInt>(std::min<std::uint64_t>(data.size() - pos, kZlibChunk));
        crc = crc32(crc, reinterpret_cast<const Bytef*>(data.data() + pos), n);
        pos += n;
    }
    return static_cast<std::uint32_t>(crc);
}

}  // namespace

ZipArchive::ZipArchive(std::shared_ptr<const MappedFile> file) : file_(std::move(file)) {
    Reader reader(*file_);
    entries_ = reader.read_directory(reader.locate_directory());
    index_.reserve(entries_.size());
    for (std::size_t i = 0; i < entries_.size(); ++i)
        if (!index_.emplace(entries_[i].name, i).second)
            reader.fail("zip record '" + entries_[i].name + "' appears twice in the central directory");
    top_folder_ = common_top_folder(entries_);
}

bool ZipArchive::looks_like_zip(const MappedFile& file) {
    if (file.size() < 4) return false;
    const auto head = file.bytes(0, 4, "zip signature");
    const std::uint32_t sig = u32(head, 0);
    return sig == kLocalHeaderSig || (sig == kEocdSig && file.size() >= kEocdSize);
}

const ZipEntry* ZipArchive::find(std::string_view name) const {
    auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : &entries_[it->second];
}

const ZipEntry* ZipArchive::find_in_top_folder(std::string_view suffix) const {
    if (top_folder_.empty()) return find(suffix);
    std::string full = top_folder_;
    full += '/';
    full += suffix;
    return find(full);
}

std::span<const std::byte> ZipArchive::stored_view(const ZipEntry& e) const {
    if (e.method != kMethodStored)
        throw FormatError(file_->display_name(), "zip record '" + e.name + "' is compressed (method " +
                                                     std::to_string(e.method) + "); it cannot be read in place");
    const std::string what = "data of zip record '" + e.name + "'";
    return file_->bytes(e.data_offset, e.size, what.c_str());
}

std::vector<std::byte> ZipArchive::read(const ZipEntry& e, std::uint64_t max_size) const {
    const std::string file = file_->display_name();
    const std::string record = "zip record '" + e.name + "'";
    if (e.method != kMethodStored && e.method != kMethodDeflated)
        throw FormatError(file, record + " uses compression method " + std::to_string(e.method) +
                                    "; only stored (0) and deflated (8) are supported");
    if (e.size > max_size)
        throw FormatError(file, record + " holds " + std::to_string(e.size) + " bytes, more than the limit of " +
                                    std::to_string(max_size) + " for reading it into memory");
    std::vector<std::byte> out;
    if (e.method == kMethodStored) {
        const auto view = stored_view(e);
        out.assign(view.begin(), view.end());
    } else {
        if (e.compressed_size < e.size / kMaxDeflateRatio)
            throw FormatError(file, record + " claims " + std::to_string(e.size) + " bytes from " +
                                        std::to_string(e.compressed_size) + " compressed, more than deflate can produce");
        const std::string what = "data of " + record;
        const auto in = file_->bytes(e.data_offset, e.compressed_size, what.c_str());
        out.resize(static_cast<std::size_t>(e.size));

        Inflater inflater(file, record);
        z_stream& zs = inflater.zs;
        std::uint64_t in_pos = 0, out_pos = 0;
        Bytef spill = 0;  // receives output past the recorded size, which is an error
        for (;;) {
            const auto in_n = static_cast<uInt>(std::min<std::uint64_t>(in.size() - in_pos, kZlibChunk));
            zs.next_in = const_cast<Bytef*>(reinterpret_cast<const Bytef*>(in.data() + in_pos));
            zs.avail_in = in_n;
            const bool full = out_pos == out.size();
            const auto out_n = full ? 1u : static_cast<uInt>(std::min<std::uint64_t>(out.size() - out_pos, kZlibChunk));
            zs.next_out = full ? &spill : reinterpret_cast<Bytef*>(out.data() + out_pos);
            zs.avail_out = out_n;
            const int rc = inflate(&zs, Z_NO_FLUSH);
            in_pos += in_n - zs.avail_in;
            if (full && zs.avail_out == 0)
                throw FormatError(file, record + " inflates to more than its recorded " + std::to_string(e.size) + " bytes");
            if (!full) out_pos += out_n - zs.avail_out;
            if (rc == Z_STREAM_END) break;
            if (rc == Z_BUF_ERROR && in_pos == in.size())
                throw FormatError(file, record + " has a truncated deflate stream");
            if (rc != Z_OK && rc != Z_BUF_ERROR)
                throw FormatError(file, record + " has a corrupted deflate stream" + (zs.msg ? std::string(": ") + zs.msg : ""));
        }
        if (out_pos != out.size())
            throw FormatError(file, record + " inflates to " + std::to_string(out_pos) + " bytes, not its recorded " +
                                        std::to_string(e.size));
    }
    if (crc_of(out) != e.crc32)
        throw FormatError(file, record + " fails its CRC-32 check (the data is corrupted)");
    return out;
}

}  // namespace bitfsck::io
