#include "bitfsck/io/atomic_write.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "bitfsck/io/error.hpp"

namespace bitfsck::io {

std::filesystem::path temporary_sibling(const std::filesystem::path& target) {
    static std::atomic<unsigned> counter{0};
    return std::filesystem::path(target.string() + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
}

void replace_atomically(const std::filesystem::path& target, const std::function<void(const std::filesystem::path&)>& write) {
    auto tmp = temporary_sibling(target);
    try {
        write(tmp);
        std::error_code ec;
        std::filesystem::rename(tmp, target, ec);
        if (ec) throw OutputError(target.string(), "cannot rename the finished output into place: " + ec.message());
    } catch (...) {
        std::error_code ignored;
        std::filesystem::remove(tmp, ignored);
        throw;
    }
}

void replace_folder_atomically(const std::filesystem::path& target, const std::function<void(const std::filesystem::path&)>& write) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::exists(target, ec)) {
        if (!fs::is_directory(target, ec)) throw OutputError(target.string(), "exists and is not a folder");
        if (!fs::is_empty(target, ec)) throw OutputError(target.string(), "exists and is not empty; name a new folder");
    }
    fs::path name = target;
    if (name.filename().empty()) name = name.parent_path();  // "out/"
    const fs::path tmp = temporary_sibling(name);
    try {
        fs::create_directories(tmp, ec);
        if (ec) throw OutputError(tmp.string(), "cannot create: " + ec.message());
        write(tmp);
        if (fs::exists(name, ec)) fs::remove(name, ec);  // the empty folder checked above
        fs::rename(tmp, name, ec);
        if (ec) throw OutputError(name.string(), "cannot rename the finished output into place: " + ec.message());
    } catch (...) {
        std::error_code ignored;
        fs::remove_all(tmp, ignored);
        throw;
    }
}

void write_file_atomically(const std::filesystem::path& target, std::string_view bytes) {
    replace_atomically(target, [&](const std::filesystem::path& tmp) {
        int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) throw OutputError(target.string(), std::string("cannot create: ") + std::strerror(errno));
        std::size_t done = 0;
        while (done < bytes.size()) {
            ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                int err = errno;
                ::close(fd);
                throw OutputError(target.string(), std::string("cannot write: ") + std::strerror(err));
            }
            done += static_cast<std::size_t>(n);
        }
        if (::fsync(fd) != 0 || ::close(fd) != 0) throw OutputError(target.string(), std::string("cannot write: ") + std::strerror(errno));
    });
}

void ensure_not_an_input(const std::filesystem::path& output, const std::vector<std::filesystem::path>& inputs) {
    std::error_code ec;
    for (const auto& in : inputs)
        if (std::filesystem::exists(output, ec) && std::filesystem::equivalent(output, in, ec))
            throw OutputError(output.string(), "refusing to overwrite an input checkpoint");
}

void ensure_writable_output(const std::filesystem::path& output) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_directory(output, ec)) throw OutputError(output.string(), "is a folder; name the output file");
    const fs::path folder = output.parent_path().empty() ? fs::path(".") : output.parent_path();
    if (!fs::is_directory(folder, ec)) throw OutputError(output.string(), "its folder " + folder.string() + " does not exist");
    const fs::path probe = temporary_sibling(output);
    {
        std::ofstream f(probe, std::ios::binary);
        if (!f) throw OutputError(output.string(), "its folder " + folder.string() + " is not writable");
    }
    fs::remove(probe, ec);
}

}  // namespace bitfsck::io
