#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "bitfsck/io/error.hpp"
#include "bitfsck/io/mapped_file.hpp"
#include "support.hpp"

using namespace bitfsck::io;
using bitfsck::test::TempDir;
using bitfsck::test::write_bytes;
using Catch::Matchers::Contains;

namespace {
std::string view_text(std::span<const std::byte> s) { return std::string(reinterpret_cast<const char*>(s.data()), s.size()); }
}

TEST_CASE("MappedFile maps a file's content") {
    TempDir dir;
    const auto path = dir / "data.bin";
    write_bytes(path, "hello, mapped world");
    MappedFile f(path);
    CHECK(f.size() == 19);
    CHECK(f.path() == path);
    CHECK(f.display_name() == path.string());
    REQUIRE(f.data() != nullptr);
    CHECK(view_text(f.bytes(0, 5)) == "hello");
    CHECK(view_text(f.bytes(7, 12)) == "mapped world");
    CHECK(f.bytes(19, 0).empty());
    CHECK(f.bytes(3, 0).empty());
}

TEST_CASE("MappedFile::bytes rejects ranges past the end, without overflow") {
    TempDir dir;
    const auto path = dir / "small.bin";
    write_bytes(path, std::string(100, 'x'));
    MappedFile f(path);
    CHECK_THROWS_WITH(f.bytes(90, 11, "tensor data"),
                      Contains(path.string()) && Contains("tensor data at offset 90, length 11") &&
                          Contains("runs past the end of the file (size 100)"));
    CHECK_THROWS_AS(f.bytes(101, 0), FormatError);
    constexpr auto kMax = std::numeric_limits<std::uint64_t>::max();
    CHECK_THROWS_AS(f.bytes(kMax, 2), FormatError);
    CHECK_THROWS_AS(f.bytes(50, kMax - 10), FormatError);
    CHECK_THROWS_AS(f.bytes(1, kMax), FormatError);
    CHECK(f.bytes(0, 100).size() == 100);
}

TEST_CASE("MappedFile of an empty file maps nothing") {
    TempDir dir;
    const auto path = dir / "empty.bin";
    write_bytes(path, "");
    MappedFile f(path);
    CHECK(f.size() == 0);
    CHECK(f.data() == nullptr);
    CHECK(f.bytes(0, 0).empty());
    CHECK_THROWS_AS(f.bytes(0, 1), FormatError);
    f.release(0, 100);
    f.will_need(0, 100);
}

TEST_CASE("MappedFile reports missing files and directories as FileError") {
    TempDir dir;
    const auto missing = dir / "nope.pt";
    CHECK_THROWS_AS(MappedFile(missing), FileError);
    CHECK_THROWS_WITH(MappedFile(missing), Contains(missing.string() + ": cannot open: No such file or directory"));
    CHECK_THROWS_AS(MappedFile(dir.path()), FileError);
    CHECK_THROWS_WITH(MappedFile(dir.path()), Contains(dir.path().string() + ": is a directory"));
}

TEST_CASE("MappedFile release and will_need keep the content readable") {
    TempDir dir;
    const auto path = dir / "pages.bin";
    std::string content(5 * 4096 + 123, '\0');
    for (std::size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>(i * 31 % 251);
    write_bytes(path, content);
    MappedFile f(path);
    f.will_need(0, f.size());
    f.will_need(4000, std::numeric_limits<std::uint64_t>::max());
    CHECK(view_text(f.bytes(0, f.size())) == content);
    f.release(0, f.size());
    f.release(100, 3 * 4096);  // unaligned: only inner pages may go
    f.release(f.size() - 10, std::numeric_limits<std::uint64_t>::max());
    f.release(f.size() + 4096, 10);  // beyond the end: ignored
    // Pages dropped from a private read-only map come back from the file, unchanged.
    CHECK(view_text(f.bytes(0, f.size())) == content);
}
