#include "bitfsck/model/tokens.hpp"

#include <charconv>
#include <cstring>
#include <fstream>
#include <regex>

#include "bitfsck/model/config.hpp"

namespace bitfsck::model {

TokenDType parse_token_dtype(std::string_view s) {
    if (s == "u16" || s == "uint16") return TokenDType::U16;
    if (s == "u32" || s == "uint32") return TokenDType::U32;
    throw ModelError("--token-dtype " + std::string(s) + ": expected u16 or u32");
}

namespace {

struct NpyInfo {
    std::size_t item = 2;
    bool is_signed = false;
    std::uint64_t data_offset = 0;
    std::int64_t count = 0;
};

// Compiled once: building a std::regex costs more than reading a small token file.
const std::regex descr_re("'descr'\\s*:\\s*'([<>|=])([uif])(\\d+)'");
const std::regex fortran_re("'fortran_order'\\s*:\\s*True");
const std::regex shape_re("'shape'\\s*:\\s*\\(([^)]*)\\)");
const std::regex number_re("\\d+");

NpyInfo parse_npy_header(std::ifstream& in, const std::string& file) {
    char magic[8];
    in.read(magic, 8);
    if (!in || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw ModelError(file + ": not a .npy file");
    const int major = static_cast<unsigned char>(magic[6]);
    std::uint32_t header_len = 0;
    std::uint64_t prefix = 10;
    if (major == 1) {
        unsigned char b[2];
        in.read(reinterpret_cast<char*>(b), 2);
        header_len = b[0] | (b[1] << 8);
    } else if (major == 2 || major == 3) {
        unsigned char b[4];
        in.read(reinterpret_cast<char*>(b), 4);
        header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (std::uint32_t(b[3]) << 24);
        prefix = 12;
    } else {
        throw ModelError(file + ": unsupported .npy version " + std::to_string(major));
    }
    // numpy itself refuses headers over 10000 bytes unless told otherwise (max_header_size).
    if (header_len > (1u << 16)) throw ModelError(file + ": .npy header of " + std::to_string(header_len) + " bytes is too long");
    std::string header(header_len, '\0');
    in.read(header.data(), header_len);
    if (!in) throw ModelError(file + ": truncated .npy header");
    std::smatch m;
    if (!std::regex_search(header, m, descr_re))
        throw ModelError(file + ": .npy header has no readable 'descr'");
    NpyInfo info;
    const char kind = m[2].str()[0];
    info.item = 0;
    const std::string item = m[3].str();
    if (std::from_chars(item.data(), item.data() + item.size(), info.item).ec != std::errc()) info.item = 0;
    if (kind == 'f' || (m[1] == ">" && info.item > 1) || (info.item != 1 && info.item != 2 && info.item != 4 && info.item != 8))
        throw ModelError(file + ": .npy dtype " + m[1].str() + m[2].str() + m[3].str() +
                         " is not little-endian integer token ids");
    info.is_signed = kind == 'i';
    if (std::regex_search(header, fortran_re))
        throw ModelError(file + ": .npy in Fortran order is not supported; save it with np.ascontiguousarray");
    if (!std::regex_search(header, m, shape_re))
        throw ModelError(file + ": .npy header has no 'shape'");
    std::int64_t count = 1;
    std::string dims = m[1];
    for (auto it = std::sregex_iterator(dims.begin(), dims.end(), number_re); it != std::sregex_iterator(); ++it) {
        const std::string digits = it->str();
        std::int64_t dim = 0;
        if (std::from_chars(digits.data(), digits.data() + digits.size(), dim).ec != std::errc() ||
            __builtin_mul_overflow(count, dim, &count))
            throw ModelError(file + ": .npy shape (" + dims + ") is too large");
    }
    info.count = count;
    info.data_offset = prefix + header_len;
    return info;
}

}  // namespace

std::vector<std::int64_t> read_token_file(const std::filesystem::path& path, TokenDType dtype, std::int64_t max_tokens) {
    const std::string file = path.string();
    std::ifstream in(path, std::ios::binary);
    if (!in) throw io::FileError(file + ": cannot open the token file");
    char first = 0;
    in.read(&first, 1);
    in.clear();
    in.seekg(0);
    std::size_t item = dtype == TokenDType::U16 ? 2 : 4;
    bool is_signed = false;
    std::int64_t count = -1;
    if (first == '\x93') {
        NpyInfo info = parse_npy_header(in, file);
        item = info.item, is_signed = info.is_signed, count = info.count;
        in.seekg(static_cast<std::streamoff>(info.data_offset));
    } else {
        const auto size = std::filesystem::file_size(path);
        if (size % item)
            throw ModelError(file + ": " + std::to_string(size) + " bytes are not whole " + std::to_string(item * 8) +
                             "-bit token ids (wrong --token-dtype?)");
        count = static_cast<std::int64_t>(size / item);
    }
    const std::int64_t n = std::min(count, max_tokens);
    // What the header declares must be in the file before anything is allocated for it.
    const auto data_start = static_cast<std::uint64_t>(in.tellg());
    const auto size = std::filesystem::file_size(path);
    if (n < 0 || data_start > size || static_cast<std::uint64_t>(n) > (size - data_start) / item)
        throw ModelError(file + ": truncated token data (" + std::to_string(n) + " ids of " + std::to_string(item) +
                         " bytes declared, " + std::to_string(data_start > size ? 0 : size - data_start) + " bytes present)");
    std::vector<unsigned char> raw(static_cast<std::size_t>(n) * item);
    in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size()));
    if (in.gcount() != static_cast<std::streamsize>(raw.size())) throw ModelError(file + ": truncated token data");
    std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
        const unsigned char* p = raw.data() + i * item;
        std::uint64_t v = 0;
        for (std::size_t b = 0; b < item; ++b) v |= std::uint64_t(p[b]) << (8 * b);
        std::int64_t s = static_cast<std::int64_t>(v);
        if (is_signed && item < 8 && (v >> (8 * item - 1)) & 1) s = static_cast<std::int64_t>(v) - (std::int64_t(1) << (8 * item));
        if (s < 0) throw ModelError(file + ": negative token id " + std::to_string(s) + " at index " + std::to_string(i));
        ids[static_cast<std::size_t>(i)] = s;
    }
    return ids;
}

}  // namespace bitfsck::model
