#include "bitfsck/io/safetensors_writer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/io/error.hpp"

namespace bitfsck::io {

namespace {

class FdWriter {
public:
    FdWriter(const std::filesystem::path& tmp, std::string display) : display_(std::move(display)) {
        fd_ = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd_ < 0) fail("cannot create");
    }
    ~FdWriter() {
        if (fd_ >= 0) ::close(fd_);
    }
    FdWriter(const FdWriter&) = delete;
    FdWriter& operator=(const FdWriter&) = delete;

    void write(const void* data, std::size_t n) {
        const char* p = static_cast<const char*>(data);
        while (n > 0) {
            const ssize_t done = ::write(fd_, p, n);
            if (done < 0 && errno == EINTR) continue;
            if (done <= 0) fail("cannot write");
            p += done;
            n -= static_cast<std::size_t>(done);
        }
    }
    void close() {
        if (::fsync(fd_) != 0) fail("cannot write");
        const int fd = fd_;
        fd_ = -1;
        if (::close(fd) != 0) fail("cannot write");
    }

private:
    [[noreturn]] void fail(const char* what) const { throw OutputError(display_, std::string(what) + ": " + std::strerror(errno)); }
    int fd_ = -1;
    std::string display_;
};

}  // namespace

void write_safetensors(const std::filesystem::path& path, const std::vector<OutputTensor>& tensors,
                       const std::vector<std::pair<std::string, std::string>>& metadata,
                       const std::vector<std::filesystem::path>& inputs) {
    const std::string file = path.string();
    ensure_not_an_input(path, inputs);

    std::unordered_map<std::string, const OutputTensor*> by_name;
    std::vector<std::span<const std::byte>> data;
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) {
        nlohmann::ordered_json m = nlohmann::ordered_json::object();
        for (const auto& [k, v] : metadata) m[k] = v;
        header["__metadata__"] = std::move(m);
    }
    std::uint64_t offset = 0;
    for (const auto& t : tensors) {
        const std::string what = file + ": tensor '" + t.name + "'";
        if (t.name == "__metadata__") throw Error(what + ": the name is reserved for the metadata");
        if (!by_name.emplace(t.name, &t).second) throw Error(what + " appears twice");
        const OutputTensor* source = &t;
        if (!t.tied_to.empty()) {
            auto it = by_name.find(t.tied_to);
            if (it == by_name.end() || it->second == &t) throw Error(what + " is tied to '" + t.tied_to + "', which is not an earlier tensor");
            if (it->second->dtype != t.dtype || it->second->shape != t.shape) throw Error(what + " is tied to a tensor of another dtype or shape");
            source = it->second;
            while (!source->tied_to.empty()) source = by_name.at(source->tied_to);
        }
        std::uint64_t numel = 1;
        for (auto d : t.shape) {
            if (d < 0) throw Error(what + ": negative dimension");
            numel *= static_cast<std::uint64_t>(d);
        }
        const std::uint64_t nbytes = numel * dtype_size(t.dtype);
        if (source->bytes().size() != nbytes)
            throw Error(what + " has " + std::to_string(source->bytes().size()) + " bytes, its dtype and shape need " + std::to_string(nbytes));
        header[t.name] = {{"dtype", std::string(dtype_safetensors_name(t.dtype))},
                          {"shape", t.shape},
                          {"data_offsets", {offset, offset + nbytes}}};
        data.push_back(source->bytes());
        offset += nbytes;
    }
    std::string text;
    try {
        text = header.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
    } catch (const nlohmann::json::exception&) {
        throw Error(file + ": a tensor name or metadata entry is not valid UTF-8, which the safetensors header (JSON) cannot hold");
    }
    text.append((8 - text.size() % 8) % 8, ' ');  // as the Python library pads: data starts 8-byte aligned
    replace_atomically(path, [&](const std::filesystem::path& tmp) {
        FdWriter out(tmp, file);
        unsigned char length[8];
        for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>((static_cast<std::uint64_t>(text.size()) >> (8 * i)) & 0xFF);
        out.write(length, 8);
        out.write(text.data(), text.size());
        for (const auto& d : data) out.write(d.data(), d.size());
        out.close();
    });
}

void rewrite_safetensors(const Checkpoint& source, const std::filesystem::path& path,
                         const std::map<std::string, ReplacementTensor>& replacements,
                         std::vector<std::filesystem::path> inputs) {
    inputs.push_back(source.path());
    std::vector<OutputTensor> tensors;
    for (const TensorEntry* t : source.state_dict_tensors()) {
        OutputTensor o;
        o.name = t->name;
        o.dtype = t->dtype;
        o.shape = t->shape;
        if (auto it = replacements.find(t->name); it != replacements.end()) {
            if (it->second.dtype != t->dtype || it->second.shape != t->shape || it->second.bytes().size() != t->nbytes())
                throw Error(source.path().string() + ": the replacement of '" + t->name + "' does not match its dtype and shape");
            o.view = it->second.bytes();
        } else {
            o.view = source.file().bytes(t->storage_file_offset + static_cast<std::uint64_t>(t->storage_offset) * dtype_size(t->dtype),
                                         t->nbytes(), "tensor data");
        }
        tensors.push_back(std::move(o));
    }
    write_safetensors(path, tensors, source.metadata(), inputs);
}

}  // namespace bitfsck::io
