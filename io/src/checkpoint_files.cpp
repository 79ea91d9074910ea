#include "bitfsck/io/checkpoint_files.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <system_error>

#include "bitfsck/io/error.hpp"

namespace bitfsck::io {

namespace fs = std::filesystem;

bool starts_like_checkpoint(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    unsigned char head[9] = {};
    if (!in.read(reinterpret_cast<char*>(head), sizeof head)) return false;
    if (head[0] == 'P' && head[1] == 'K') return true;             // torch.save zip
    if (head[0] == 0x80 && head[1] == 0x02 && head[2] == 0x8a) return true;  // legacy torch.save
    if (std::memcmp(head, "GGUF", 4) == 0) return true;
    std::uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | head[i];
    std::error_code ec;
    auto size = fs::file_size(file, ec);
    return !ec && head[8] == '{' && header_len + 8 <= size;           // safetensors
}

std::vector<fs::path> checkpoint_files_in(const fs::path& folder) {
    static constexpr std::array<std::string_view, 6> kExtensions = {".pt", ".pth", ".ckpt", ".safetensors", ".gguf", ".bit2"};
    std::vector<fs::path> found;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(folder, ec)) {
        if (!e.is_regular_file(ec)) continue;
        const std::string ext = e.path().extension().string();
        bool known = std::find(kExtensions.begin(), kExtensions.end(), ext) != kExtensions.end();
        if (known || (ext == ".bin" && starts_like_checkpoint(e.path()))) found.push_back(e.path());
    }
    if (ec) throw FileError(folder.string() + ": cannot list: " + ec.message());
    std::sort(found.begin(), found.end());
    return found;
}

std::vector<fs::path> expand_checkpoint_inputs(const std::vector<std::string>& inputs) {
    std::vector<fs::path> files;
    for (const auto& in : inputs) {
        if (!fs::is_directory(in)) {
            files.emplace_back(in);
            continue;
        }
        auto found = checkpoint_files_in(in);
        files.insert(files.end(), found.begin(), found.end());
    }
    return files;
}

}  // namespace bitfsck::io
