#include "table.hpp"

#include <algorithm>

namespace bitfsck::cli {
namespace {

// Display width: skip ANSI escape sequences and count UTF-8 code points, not bytes.
std::size_t visible_width(const std::string& s) {
    std::size_t w = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\x1b') {
            while (i < s.size() && s[i] != 'm') ++i;
            continue;
        }
        if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) ++w;
    }
    return w;
}

}  // namespace

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::add(std::vector<std::string> row) {
    row.resize(headers_.size());
    rows_.push_back(std::move(row));
}

std::string Table::render() const {
    std::vector<std::size_t> width(headers_.size());
    for (std::size_t c = 0; c < headers_.size(); ++c) width[c] = visible_width(headers_[c]);
    for (const auto& r : rows_)
        for (std::size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], visible_width(r[c]));
    std::string out;
    auto line = [&](const std::vector<std::string>& r) {
        std::string l;
        for (std::size_t c = 0; c < r.size(); ++c) {
            l += r[c];
            if (c + 1 < r.size()) l.append(width[c] - visible_width(r[c]) + 2, ' ');
        }
        out += l + "\n";
    };
    line(headers_);
    for (const auto& r : rows_) line(r);
    return out;
}

}  // namespace bitfsck::cli
