#pragma once
// Column-aligned text tables for terminal output. Cells may carry ANSI colour codes; widths
// are measured without them.
#include <string>
#include <vector>

namespace bitfsck::cli {

class Table {
public:
    explicit Table(std::vector<std::string> headers);
    void add(std::vector<std::string> row);
    std::string render() const;
    std::size_t rows() const { return rows_.size(); }

private:
    std::vector<std::string> headers_;
    std::vector<std::vector<std::string>> rows_;
};

}  // namespace bitfsck::cli
