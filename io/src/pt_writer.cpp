// torch.save's zip layout, written the way PyTorch's own writer (caffe2 PyTorchStreamWriter over
// miniz) does: every record stored, its data 64-byte aligned by padding an 'FB' extra field in
// the local header (so torch can map storages in place), ZIP64 fields only where a size or offset
// needs them.
#include "bitfsck/io/pt_writer.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <unordered_map>

#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/zip_archive.hpp"

namespace bitfsck::io {

namespace {

constexpr std::uint64_t kAlignment = 64;
constexpr std::uint16_t kDosDate = (0 << 9) | (1 << 5) | 1;  // 1980-01-01: the output does not depend on the clock
constexpr std::size_t kChunk = 8u << 20;

void le(std::string& out, std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
}

std::uint32_t crc32_of(std::uint32_t crc, std::span<const std::byte> data) {
    uLong c = crc;
    for (std::size_t done = 0; done < data.size();) {
        const std::size_t n = std::min(data.size() - done, kChunk);
        c = ::crc32(c, reinterpret_cast<const Bytef*>(data.data() + done), static_cast<uInt>(n));
        done += n;
    }
    return static_cast<std::uint32_t>(c);
}

std::span<const std::byte> as_bytes(std::string_view s) { return std::as_bytes(std::span<const char>(s.data(), s.size())); }

// Streams records into a file; the central directory is kept in memory (one entry per record).
class ZipStreamWriter {
public:
    ZipStreamWriter(const std::filesystem::path& tmp, std::string display, std::uint64_t zip64_threshold)
        : display_(std::move(display)), threshold_(zip64_threshold) {
        fd_ = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd_ < 0) throw OutputError(display_, std::string("cannot create: ") + std::strerror(errno));
    }
    ~ZipStreamWriter() {
        if (fd_ >= 0) ::close(fd_);
    }
    ZipStreamWriter(const ZipStreamWriter&) = delete;
    ZipStreamWriter& operator=(const ZipStreamWriter&) = delete;

    // A stored record; its CRC is computed while writing and patched into the local header.
    // Returns the CRC so callers copying a record can check it against the source's.
    std::uint32_t add_stored(const std::string& name, std::span<const std::byte> data) {
        Entry e = begin(name, 0, data.size(), data.size());
        std::uint32_t crc = 0;
        for (std::size_t done = 0; done < data.size();) {
            const std::size_t n = std::min(data.size() - done, kChunk);
            crc = crc32_of(crc, data.subspan(done, n));
            write(data.subspan(done, n));
            done += n;
        }
        e.crc = crc;
        patch_crc(e);
        entries_.push_back(std::move(e));
        return crc;
    }

    // A record copied as it is (e.g. a deflated record of the source): bytes, method and CRC.
    void add_raw(const std::string& name, std::uint16_t method, std::uint32_t crc, std::span<const std::byte> compressed,
                 std::uint64_t size) {
        Entry e = begin(name, method, compressed.size(), size);
        write(compressed);
        e.crc = crc;
        patch_crc(e);
        entries_.push_back(std::move(e));
    }

    std::size_t records() const { return entries_.size(); }

    void finish() {
        flush();
        const std::uint64_t cd_offset = offset_;
        for (const Entry& e : entries_) {
            const bool big_size = e.size >= threshold_ || e.csize >= threshold_;
            const bool big_offset = e.header_offset >= threshold_;
            std::string extra;
            if (big_size || big_offset) {
                std::string fields;
                if (big_size) {
                    le(fields, e.size, 8);
                    le(fields, e.csize, 8);
                }
                if (big_offset) le(fields, e.header_offset, 8);
                le(extra, 0x0001, 2);
                le(extra, fields.size(), 2);
                extra += fields;
            }
            const std::uint16_t version = (big_size || big_offset) ? 45 : 20;
            std::string h;
            le(h, 0x02014b50, 4);
            le(h, version, 2);  // made by (MS-DOS attributes, none set)
            le(h, version, 2);  // needed
            le(h, 0, 2);        // flags
            le(h, e.method, 2);
            le(h, 0, 2);  // time
            le(h, kDosDate, 2);
            le(h, e.crc, 4);
            le(h, big_size ? 0xFFFFFFFF : e.csize, 4);
            le(h, big_size ? 0xFFFFFFFF : e.size, 4);
            le(h, e.name.size(), 2);
            le(h, extra.size(), 2);
            le(h, 0, 2);  // comment
            le(h, 0, 2);  // disk
            le(h, 0, 2);  // internal attributes
            le(h, 0, 4);  // external attributes
            le(h, big_offset ? 0xFFFFFFFF : e.header_offset, 4);
            h += e.name;
            h += extra;
            write(as_bytes(h));
        }
        const std::uint64_t cd_size = offset_ - cd_offset;
        const std::uint64_t count = entries_.size();
        const bool zip64 = count >= 0xFFFF || cd_offset >= threshold_ || cd_size >= threshold_;
        std::string tail;
        if (zip64) {
            const std::uint64_t eocd64_offset = offset_;
            le(tail, 0x06064b50, 4);
            le(tail, 44, 8);  // size of the rest of this record
            le(tail, 45, 2);
            le(tail, 45, 2);
            le(tail, 0, 4);
            le(tail, 0, 4);
            le(tail, count, 8);
            le(tail, count, 8);
            le(tail, cd_size, 8);
            le(tail, cd_offset, 8);
            le(tail, 0x07064b50, 4);  // locator
            le(tail, 0, 4);
            le(tail, eocd64_offset, 8);
            le(tail, 1, 4);
        }
        le(tail, 0x06054b50, 4);
        le(tail, 0, 2);
        le(tail, 0, 2);
        le(tail, zip64 ? 0xFFFF : count, 2);
        le(tail, zip64 ? 0xFFFF : count, 2);
        le(tail, zip64 ? 0xFFFFFFFF : cd_size, 4);
        le(tail, zip64 ? 0xFFFFFFFF : cd_offset, 4);
        le(tail, 0, 2);
        write(as_bytes(tail));
        flush();
        if (::fsync(fd_) != 0) fail("cannot write");
        const int fd = fd_;
        fd_ = -1;
        if (::close(fd) != 0) fail("cannot write");
    }

private:
    struct Entry {
        std::string name;
        std::uint16_t method = 0;
        std::uint32_t crc = 0;
        std::uint64_t csize = 0, size = 0, header_offset = 0;
    };

    [[noreturn]] void fail(const char* what) const { throw OutputError(display_, std::string(what) + ": " + std::strerror(errno)); }

    // Writes the local header (CRC 0 for now) and its padding; the data goes next.
    Entry begin(const std::string& name, std::uint16_t method, std::uint64_t csize, std::uint64_t size) {
        if (name.size() > 0xFFFF) throw Error(display_ + ": record name too long: " + name.substr(0, 64) + "...");
        Entry e{name, method, 0, csize, size, offset_};
        const bool big_size = size >= threshold_ || csize >= threshold_;
        std::string extra;
        if (big_size) {  // the local header's ZIP64 field holds both sizes, offsets never
            le(extra, 0x0001, 2);
            le(extra, 16, 2);
            le(extra, size, 8);
            le(extra, csize, 8);
        }
        // torch's padding: an 'FB' field sized so the data starts on a 64-byte boundary.
        const std::uint64_t start = offset_ + 30 + name.size() + extra.size() + 4;
        const std::uint64_t pad = (kAlignment - start % kAlignment) % kAlignment;
        le(extra, 0x4246, 2);
        le(extra, pad, 2);
        extra.append(static_cast<std::size_t>(pad), 'Z');
        std::string h;
        le(h, 0x04034b50, 4);
        le(h, big_size ? 45 : 20, 2);
        le(h, 0, 2);
        le(h, method, 2);
        le(h, 0, 2);
        le(h, kDosDate, 2);
        le(h, 0, 4);  // CRC, patched after the data
        le(h, big_size ? 0xFFFFFFFF : csize, 4);
        le(h, big_size ? 0xFFFFFFFF : size, 4);
        le(h, name.size(), 2);
        le(h, extra.size(), 2);
        h += name;
        h += extra;
        write(as_bytes(h));
        return e;
    }

    void patch_crc(const Entry& e) {
        flush();
        std::string c;
        le(c, e.crc, 4);
        if (::pwrite(fd_, c.data(), 4, static_cast<off_t>(e.header_offset + 14)) != 4) fail("cannot write");
    }

    void write(std::span<const std::byte> data) {
        if (buffer_.size() + data.size() <= kChunk) {
            buffer_.append(reinterpret_cast<const char*>(data.data()), data.size());
        } else {
            flush();
            write_fd(reinterpret_cast<const char*>(data.data()), data.size());
        }
        offset_ += data.size();
    }

    void flush() {
        write_fd(buffer_.data(), buffer_.size());
        buffer_.clear();
    }

    void write_fd(const char* p, std::size_t n) {
        while (n > 0) {
            const ssize_t done = ::write(fd_, p, n);
            if (done < 0 && errno == EINTR) continue;
            if (done <= 0) fail("cannot write");
            p += done;
            n -= static_cast<std::size_t>(done);
        }
    }

    int fd_ = -1;
    std::string display_;
    std::uint64_t threshold_;
    std::uint64_t offset_ = 0;
    std::string buffer_;
    std::vector<Entry> entries_;
};

// torch names the archive after the file, up to the first '.' ("model.final.pt" -> "model").
std::string archive_name_for(const std::filesystem::path& path) {
    std::string name = path.filename().string();
    name = name.substr(0, name.find('.'));
    return name.empty() ? "archive" : name;
}

std::int64_t checked_numel(const std::vector<std::int64_t>& shape, const std::string& what) {
    std::int64_t n = 1;
    for (auto d : shape) {
        if (d < 0) throw Error(what + ": negative dimension");
        if (d != 0 && n > INT64_MAX / d) throw Error(what + ": element count overflows");
        n *= d;
    }
    return n;
}

std::vector<std::int64_t> contiguous_strides(const std::vector<std::int64_t>& shape) {
    std::vector<std::int64_t> stride(shape.size(), 1);
    for (std::size_t i = shape.size(); i-- > 1;) stride[i - 1] = stride[i] * std::max<std::int64_t>(shape[i], 1);
    return stride;
}

void check_output_tensors(const std::string& file, const std::vector<OutputTensor>& tensors) {
    std::unordered_map<std::string, const OutputTensor*> by_name;
    for (const auto& t : tensors) {
        const std::string what = file + ": tensor '" + t.name + "'";
        if (!by_name.emplace(t.name, &t).second) throw Error(what + " appears twice");
        const std::int64_t numel = checked_numel(t.shape, what);
        if (!t.tied_to.empty()) {
            auto it = by_name.find(t.tied_to);
            if (it == by_name.end() || it->second == &t) throw Error(what + " is tied to '" + t.tied_to + "', which is not an earlier tensor");
            if (it->second->dtype != t.dtype || it->second->shape != t.shape) throw Error(what + " is tied to '" + t.tied_to + "' of another dtype or shape");
            if (!t.bytes().empty()) throw Error(what + " is tied to '" + t.tied_to + "' but has data of its own");
            continue;
        }
        const std::uint64_t expected = static_cast<std::uint64_t>(numel) * dtype_size(t.dtype);
        if (t.bytes().size() != expected)
            throw Error(what + " has " + std::to_string(t.bytes().size()) + " bytes, its dtype and shape need " + std::to_string(expected));
        if (t.dtype == DType::Bool)
            for (std::byte b : t.bytes())
                if (static_cast<unsigned>(b) > 1) throw Error(what + " is bool but holds a byte other than 0 or 1");
    }
}

// Copies the new contiguous values of `entry` into `storage` (the whole storage's bytes) at the
// positions its offset and strides select; `written` marks elements already set, so two
// replacements (or a stride-0 tensor) disagreeing about one element are refused.
void scatter(const std::string& file, const TensorEntry& entry, std::span<const std::byte> values, std::vector<std::byte>& storage,
             std::vector<std::uint8_t>& written) {
    const std::size_t es = dtype_size(entry.dtype);
    const std::int64_t numel = entry.numel();
    if (numel == 0) return;
    std::vector<std::int64_t> index(entry.shape.size(), 0);
    std::int64_t position = entry.storage_offset;
    for (std::int64_t i = 0; i < numel; ++i) {
        const auto p = static_cast<std::size_t>(position);
        if ((p + 1) * es > storage.size()) throw FormatError(file, "tensor '" + entry.name + "' reaches past its storage");
        std::byte* dst = storage.data() + p * es;
        const std::byte* src = values.data() + static_cast<std::size_t>(i) * es;
        if (written[p]) {
            if (std::memcmp(dst, src, es) != 0)
                throw Error(file + ": the new values of '" + entry.name +
                            "' disagree with another replacement about a storage element they share");
        } else {
            std::memcpy(dst, src, es);
            written[p] = 1;
        }
        for (std::size_t d = index.size(); d-- > 0;) {  // odometer over the shape
            position += entry.stride[d];
            if (++index[d] < entry.shape[d]) break;
            position -= entry.stride[d] * entry.shape[d];
            index[d] = 0;
        }
    }
}

bool is_optimizer_key(std::string_view key) { return key.find("optim") != std::string_view::npos; }

}  // namespace

void write_state_dict_pt(const std::filesystem::path& path, const std::vector<OutputTensor>& tensors, const PtWriteOptions& options) {
    const std::string file = path.string();
    ensure_not_an_input(path, options.inputs);
    check_output_tensors(file, tensors);
    for (const auto& t : tensors)
        if (!pt_writable_dtype(t.dtype))
            throw Error(file + ": tensor '" + t.name + "' is " + std::string(dtype_name(t.dtype)) +
                        ", which torch.save's typed-storage format cannot hold");

    PickledStateDict sd;
    sd.state_dict_key = options.state_dict_key;
    sd.extra = options.extra;
    std::unordered_map<std::string, std::string> key_of;  // tensor name -> storage key
    std::vector<std::pair<std::string, const OutputTensor*>> storages;
    for (const auto& t : tensors) {
        PickledTensor p;
        if (t.tied_to.empty()) {
            p.storage_key = std::to_string(storages.size());
            storages.push_back({p.storage_key, &t});
        } else {
            p.storage_key = key_of.at(t.tied_to);
        }
        key_of[t.name] = p.storage_key;
        p.dtype = t.dtype;
        p.storage_numel = checked_numel(t.shape, t.name);
        p.shape = t.shape;
        p.stride = contiguous_strides(t.shape);
        p.parameter = t.parameter;
        p.requires_grad = t.parameter && (dtype_is_floating(t.dtype) || t.dtype == DType::C64 || t.dtype == DType::C128);
        sd.tensors.push_back({t.name, std::move(p)});
    }
    const std::string pickle = pickle_state_dict(sd);
    const std::string archive = archive_name_for(path);
    replace_atomically(path, [&](const std::filesystem::path& tmp) {
        ZipStreamWriter zip(tmp, file, options.zip64_threshold);
        zip.add_stored(archive + "/data.pkl", as_bytes(pickle));
        zip.add_stored(archive + "/byteorder", as_bytes("little"));
        for (const auto& [key, t] : storages) zip.add_stored(archive + "/data/" + key, t->bytes());
        zip.add_stored(archive + "/version", as_bytes("3\n"));
        zip.finish();
    });
}

RewriteReport rewrite_checkpoint_pt(const Checkpoint& source, const std::filesystem::path& path,
                                    const std::map<std::string, ReplacementTensor>& replacements, const RewriteOptions& options) {
    const std::string src_name = source.file().display_name();
    const std::string file = path.string();
    ensure_not_an_input(path, {source.path()});
    if (source.format() == Format::Safetensors)
        throw Error(src_name + ": a safetensors file cannot be rewritten as a .pt checkpoint (use write_state_dict_pt)");

    // New bytes for every storage a replacement touches: a copy of the whole storage, with the
    // replaced tensors' elements written over it.
    struct NewStorage {
        std::vector<std::byte> bytes;
        std::vector<std::uint8_t> written;
    };
    std::map<std::string, NewStorage> rewritten;
    for (const auto& [name, r] : replacements) {
        const TensorEntry* e = source.find_tensor(name);
        if (!e) throw Error(src_name + ": no tensor named '" + name + "' to replace");
        if (r.dtype != e->dtype || r.shape != e->shape)
            throw Error(src_name + ": the replacement for '" + name + "' changes its dtype or shape; only values may change");
        if (r.bytes().size() != e->nbytes())
            throw Error(src_name + ": the replacement for '" + name + "' has " + std::to_string(r.bytes().size()) + " bytes, the tensor has " +
                        std::to_string(e->nbytes()));
        auto [it, inserted] = rewritten.try_emplace(e->storage_key);
        NewStorage& s = it->second;
        if (inserted) {
            auto original = source.file().bytes(e->storage_file_offset, e->storage_nbytes, "storage");
            s.bytes.assign(original.begin(), original.end());
            s.written.assign(static_cast<std::size_t>(e->storage_nbytes / dtype_size(e->dtype)), 0);
        }
        scatter(src_name, *e, r.bytes(), s.bytes, s.written);
    }

    RewriteReport report;
    for (const auto& [key, s] : rewritten) report.rewritten_storages.push_back(key);
    RepickleOptions ropts;
    if (options.drop_optimizer_state) ropts.drop_top_level_key = is_optimizer_key;

    if (source.format() == Format::TorchZip) {
        auto zip_file = source.shared_file();
        ZipArchive zip(zip_file);
        const ZipEntry* pkl = zip.find_in_top_folder("data.pkl");
        if (!pkl) throw FormatError(src_name, "no data.pkl record");
        const std::string prefix = zip.top_folder().empty() ? std::string("data/") : zip.top_folder() + "/data/";
        std::optional<RepickleResult> fresh;
        if (options.drop_optimizer_state) {
            ropts.source_name = src_name + ":" + pkl->name;
            auto bytes = zip.read(*pkl);
            fresh = repickle(bytes, ropts);
            report.dropped_keys = fresh->dropped_keys;
            report.repickled = true;
        }
        std::set<std::string> referenced;
        if (fresh) referenced.insert(fresh->storage_keys.begin(), fresh->storage_keys.end());

        replace_atomically(path, [&](const std::filesystem::path& tmp) {
            ZipStreamWriter out(tmp, file, options.zip64_threshold);
            auto copy = [&](const ZipEntry& e) {
                auto raw = zip_file->bytes(e.data_offset, e.compressed_size, "record");
                if (e.method != 0) {
                    out.add_raw(e.name, e.method, e.crc32, raw, e.size);
                } else if (out.add_stored(e.name, raw) != e.crc32) {
                    throw FormatError(src_name, "record " + e.name + " fails its CRC-32 check; refusing to carry damaged data over");
                }
            };
            for (const ZipEntry& e : zip.entries()) {
                if (&e == pkl && fresh) {
                    out.add_stored(e.name, as_bytes(fresh->pickle));
                } else if (e.name.starts_with(prefix)) {
                    const std::string key = e.name.substr(prefix.size());
                    if (fresh && !referenced.count(key)) continue;  // used only by dropped entries
                    if (auto it = rewritten.find(key); it != rewritten.end()) out.add_stored(e.name, it->second.bytes);
                    else copy(e);
                } else {
                    copy(e);
                }
            }
            out.finish();
            report.records = out.records();
        });
        return report;
    }

    // Legacy format: find the object pickle again (after the magic number, protocol version and
    // system info pickles) and re-emit it with zip-format persistent ids.
    auto whole = source.file().bytes(0, source.file().size(), "file");
    std::uint64_t pos = 0;
    for (int i = 0; i < 3; ++i) pos += parse_pickle(whole.subspan(pos), {}).end_offset;
    ropts.source_name = src_name;
    ropts.legacy_storage_ids = true;
    RepickleResult fresh = repickle(whole.subspan(pos, source.document().end_offset), ropts);
    report.dropped_keys = fresh.dropped_keys;
    report.repickled = true;

    std::unordered_map<std::string, const TensorEntry*> storage_of;
    for (const auto& t : source.tensors()) storage_of.emplace(t.storage_key, &t);
    const std::string archive = archive_name_for(path);
    replace_atomically(path, [&](const std::filesystem::path& tmp) {
        ZipStreamWriter out(tmp, file, options.zip64_threshold);
        out.add_stored(archive + "/data.pkl", as_bytes(fresh.pickle));
        out.add_stored(archive + "/byteorder", as_bytes("little"));
        for (const std::string& key : fresh.storage_keys) {
            const std::string record = archive + "/data/" + key;
            if (auto it = rewritten.find(key); it != rewritten.end()) {
                out.add_stored(record, it->second.bytes);
                continue;
            }
            auto t = storage_of.find(key);
            if (t == storage_of.end())
                throw FormatError(src_name, "storage '" + key + "' is not used by any tensor; bare storages are not supported");
            out.add_stored(record, source.file().bytes(t->second->storage_file_offset, t->second->storage_nbytes, "storage"));
        }
        out.add_stored(archive + "/version", as_bytes("3\n"));
        out.finish();
        report.records = out.records();
    });
    return report;
}

}  // namespace bitfsck::io
