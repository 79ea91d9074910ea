#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bitfsck/io/error.hpp"
#include "bitfsck/io/mapped_file.hpp"
#include "bitfsck/io/zip_archive.hpp"
#include "support.hpp"

using namespace bitfsck::io;
using bitfsck::test::TempDir;
using bitfsck::test::write_bytes;
using Catch::Matchers::Contains;

namespace {

void put16(std::string& s, std::uint16_t v) {
    s += static_cast<char>(v & 0xff);
    s += static_cast<char>(v >> 8);
}
void put32(std::string& s, std::uint32_t v) {
    put16(s, static_cast<std::uint16_t>(v));
    put16(s, static_cast<std::uint16_t>(v >> 16));
}
void put64(std::string& s, std::uint64_t v) {
    put32(s, static_cast<std::uint32_t>(v));
    put32(s, static_cast<std::uint32_t>(v >> 32));
}
void patch16(std::string& s, std::size_t at, std::uint16_t v) {
    s[at] = static_cast<char>(v & 0xff);
    s[at + 1] = static_cast<char>(v >> 8);
}
void patch32(std::string& s, std::size_t at, std::uint32_t v) {
    patch16(s, at, static_cast<std::uint16_t>(v));
    patch16(s, at + 2, static_cast<std::uint16_t>(v >> 16));
}

std::uint32_t crc(const std::string& s) {
    return static_cast<std::uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(s.size())));
}

std::string deflate_raw(const std::string& in) {
    z_stream zs{};
    REQUIRE(deflateInit2(&zs, 9, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    std::string out(deflateBound(&zs, in.size()), '\0');
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = static_cast<uInt>(in.size());
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    return out;
}

struct Record {
    std::string name;
    std::string data;
    bool deflated = false;
};

// A zip as torch.save writes it (stored records padded with an extra field so their data is
// 64-byte aligned), with the offsets of its parts kept so tests can corrupt them.
struct Zip {
    std::string bytes;
    std::vector<std::size_t> central;  // offset of each central directory header
    std::vector<std::size_t> data;     // offset of each record's data
    std::size_t eocd = 0;
};

Zip build_zip(const std::vector<Record>& records) {
    Zip z;
    std::string cd;
    for (const auto& r : records) {
        const std::string payload = r.deflated ? deflate_raw(r.data) : r.data;
        const std::size_t header = z.bytes.size();
        std::string extra;
        std::size_t unpadded = header + 30 + r.name.size();
        if (!r.deflated) {
            std::size_t pad = (64 - (unpadded + 4) % 64) % 64;
            put16(extra, 0x4646);  // the id torch uses for its padding ("FF")
            put16(extra, static_cast<std::uint16_t>(pad));
            extra.append(pad, 'Z');
        }
        put32(z.bytes, 0x04034b50);
        put16(z.bytes, 20);
        put16(z.bytes, 0);
        put16(z.bytes, r.deflated ? 8 : 0);
        put32(z.bytes, 0);
        put32(z.bytes, crc(r.data));
        put32(z.bytes, static_cast<std::uint32_t>(payload.size()));
        put32(z.bytes, static_cast<std::uint32_t>(r.data.size()));
        put16(z.bytes, static_cast<std::uint16_t>(r.name.size()));
        put16(z.bytes, static_cast<std::uint16_t>(extra.size()));
        z.bytes += r.name;
        z.bytes += extra;
        z.data.push_back(z.bytes.size());
        z.bytes += payload;

        z.central.push_back(cd.size());
        put32(cd, 0x02014b50);
        put16(cd, 20);
        put16(cd, 20);
        put16(cd, 0);
        put16(cd, r.deflated ? 8 : 0);
        put32(cd, 0);
        put32(cd, crc(r.data));
        put32(cd, static_cast<std::uint32_t>(payload.size()));
        put32(cd, static_cast<std::uint32_t>(r.data.size()));
        put16(cd, static_cast<std::uint16_t>(r.name.size()));
        put16(cd, 0);
        put16(cd, 0);
        put16(cd, 0);
        put16(cd, 0);
        put32(cd, 0);
        put32(cd, static_cast<std::uint32_t>(header));
        cd += r.name;
    }
    const std::size_t cd_offset = z.bytes.size();
    for (auto& c : z.central) c += cd_offset;
    z.bytes += cd;
    z.eocd = z.bytes.size();
    put32(z.bytes, 0x06054b50);
    put16(z.bytes, 0);
    put16(z.bytes, 0);
    put16(z.bytes, static_cast<std::uint16_t>(records.size()));
    put16(z.bytes, static_cast<std::uint16_t>(records.size()));
    put32(z.bytes, static_cast<std::uint32_t>(cd.size()));
    put32(z.bytes, static_cast<std::uint32_t>(cd_offset));
    put16(z.bytes, 0);
    return z;
}

std::string pickle_like() {
    std::string s = "\x80\x02}q\x00(X\x06\x00\x00\x00weightq\x01";
    for (int i = 0; i < 200; ++i) s += "ctorch._utils\n_rebuild_tensor_v2\n";
    return s;
}

std::vector<Record> torch_like_records() {
    std::string storage;
    for (int i = 0; i < 1000; ++i) storage += static_cast<char>(i * 7 % 256);
    return {
        {"archive/data.pkl", pickle_like(), true},
        {"archive/byteorder", "little", false},
        {"archive/data/0", storage, false},
        {"archive/version", "3\n", false},
    };
}

std::string text(std::span<const std::byte> s) { return std::string(reinterpret_cast<const char*>(s.data()), s.size()); }
std::string text(const std::vector<std::byte>& v) { return std::string(reinterpret_cast<const char*>(v.data()), v.size()); }

std::shared_ptr<const MappedFile> write_and_map(const std::filesystem::path& p, const std::string& bytes) {
    write_bytes(p, bytes);
    return std::make_shared<const MappedFile>(p);
}

}  // namespace

TEST_CASE("ZipArchive reads a torch-like archive written in C++") {
    TempDir dir;
    const auto records = torch_like_records();
    auto file = write_and_map(dir / "model.pt", build_zip(records).bytes);
    REQUIRE(ZipArchive::looks_like_zip(*file));
    ZipArchive zip(file);
    REQUIRE(zip.entries().size() == 4);
    CHECK(zip.top_folder() == "archive");
    for (std::size_t i = 0; i < records.size(); ++i) {
        const ZipEntry& e = zip.entries()[i];
        CHECK(e.name == records[i].name);
        CHECK(e.size == records[i].data.size());
        CHECK(e.method == (records[i].deflated ? 8 : 0));
        CHECK(text(zip.read(e)) == records[i].data);
        if (!records[i].deflated) {
            CHECK(e.data_offset % 64 == 0);
            CHECK(e.compressed_size == e.size);
            CHECK(text(zip.stored_view(e)) == records[i].data);
            CHECK(zip.stored_view(e).data() == file->data() + e.data_offset);
        }
    }
    const ZipEntry* pkl = zip.find_in_top_folder("data.pkl");
    REQUIRE(pkl != nullptr);
    CHECK(pkl->name == "archive/data.pkl");
    CHECK(pkl->compressed_size < pkl->size);
    CHECK(zip.find("archive/data/0") == &zip.entries()[2]);
    CHECK(zip.find("data.pkl") == nullptr);
    CHECK(zip.find_in_top_folder("data/1") == nullptr);
    CHECK_THROWS_WITH(zip.stored_view(*pkl), Contains("model.pt") && Contains("archive/data.pkl"));
    CHECK_THROWS_WITH(zip.read(*pkl, 100), Contains("model.pt") && Contains("limit"));
}

TEST_CASE("ZipArchive reads archives written by Python's zipfile") {
    TempDir dir;
    const auto out = dir / "py.zip";
    const auto script = dir / "make.py";
    write_bytes(script,
                "import sys, zipfile\n"
                "with zipfile.ZipFile(sys.argv[1], 'w') as z:\n"
                "    z.writestr(zipfile.ZipInfo('top/stored.bin'), bytes(range(256)) * 40, zipfile.ZIP_STORED)\n"
                "    z.writestr('top/deflated.txt', 'abc' * 5000, zipfile.ZIP_DEFLATED)\n"
                "    z.writestr('top/empty', b'', zipfile.ZIP_DEFLATED)\n"
                "    z.comment = b'a comment that moves the end record'\n");
    auto r = bitfsck::test::run_command(bitfsck::test::python() + " " + bitfsck::test::quote(script) + " " +
                                        bitfsck::test::quote(out));
    REQUIRE(r.exit_code == 0);
    auto file = std::make_shared<const MappedFile>(out);
    ZipArchive zip(file);
    REQUIRE(zip.entries().size() == 3);
    CHECK(zip.top_folder() == "top");
    const ZipEntry* stored = zip.find_in_top_folder("stored.bin");
    REQUIRE(stored != nullptr);
    std::string expected;
    for (int k = 0; k < 40; ++k)
        for (int i = 0; i < 256; ++i) expected += static_cast<char>(i);
    CHECK(stored->method == 0);
    CHECK(text(zip.stored_view(*stored)) == expected);
    const ZipEntry* deflated = zip.find("top/deflated.txt");
    REQUIRE(deflated != nullptr);
    CHECK(deflated->method == 8);
    CHECK(deflated->compressed_size < 200);
    std::string abc;
    for (int i = 0; i < 5000; ++i) abc += "abc";
    CHECK(text(zip.read(*deflated)) == abc);
    const ZipEntry* empty = zip.find("top/empty");
    REQUIRE(empty != nullptr);
    CHECK(zip.read(*empty).empty());
}

TEST_CASE("ZipArchive top folder and empty archives") {
    TempDir dir;
    {
        auto file = write_and_map(dir / "mixed.zip", build_zip({{"a/x", "1"}, {"b/y", "2"}}).bytes);
        CHECK(ZipArchive(file).top_folder().empty());
    }
    {
        auto file = write_and_map(dir / "flat.zip", build_zip({{"a/x", "1"}, {"y", "2"}}).bytes);
        ZipArchive zip(file);
        CHECK(zip.top_folder().empty());
        CHECK(zip.find_in_top_folder("y") == &zip.entries()[1]);
    }
    {
        auto file = write_and_map(dir / "empty.zip", build_zip({}).bytes);
        CHECK(file->size() == 22);
        CHECK(ZipArchive::looks_like_zip(*file));
        ZipArchive zip(file);
        CHECK(zip.entries().empty());
        CHECK(zip.top_folder().empty());
    }
}

TEST_CASE("ZipArchive rejects damaged archives with a FormatError naming the file") {
    TempDir dir;
    const auto records = torch_like_records();
    const Zip good = build_zip(records);
    const auto path = dir / "broken.pt";
    const std::string name = path.string();
    auto open = [&](const std::string& bytes) { return ZipArchive(write_and_map(path, bytes)); };
    // Central directory header fields, relative to the header.
    constexpr std::size_t kMethod = 10, kCrc = 16, kCompressed = 20, kSize = 24, kNameStart = 46;

    SECTION("empty file") {
        auto file = write_and_map(path, "");
        CHECK_FALSE(ZipArchive::looks_like_zip(*file));
        REQUIRE_THROWS_AS(ZipArchive(file), FormatError);
        CHECK_THROWS_WITH(ZipArchive(file), Contains(name));
    }
    SECTION("random bytes") {
        std::mt19937 rng(7);
        std::string junk(5000, '\0');
        for (auto& c : junk) c = static_cast<char>(rng());
        auto file = write_and_map(path, junk);
        CHECK_FALSE(ZipArchive::looks_like_zip(*file));
        REQUIRE_THROWS_AS(ZipArchive(file), FormatError);
        CHECK_THROWS_WITH(ZipArchive(file), Contains(name));
    }
    SECTION("truncated end record") {
        const std::string cut = good.bytes.substr(0, good.bytes.size() - 10);
        REQUIRE_THROWS_AS(open(cut), FormatError);
        CHECK_THROWS_WITH(open(cut), Contains(name) && Contains("end of central directory"));
    }
    SECTION("truncated in the middle of the data") {
        REQUIRE_THROWS_AS(open(good.bytes.substr(0, good.bytes.size() / 2)), FormatError);
    }
    SECTION("central directory offset past the end") {
        std::string bad = good.bytes;
        patch32(bad, good.eocd + 16, 0x7fff0000);
        REQUIRE_THROWS_AS(open(bad), FormatError);
        CHECK_THROWS_WITH(open(bad), Contains(name) && Contains("central directory"));
    }
    SECTION("absurd entry count") {
        std::string bad = good.bytes;
        patch16(bad, good.eocd + 8, 0xfff0);
        patch16(bad, good.eocd + 10, 0xfff0);
        REQUIRE_THROWS_AS(open(bad), FormatError);
        CHECK_THROWS_WITH(open(bad), Contains(name) && Contains("cannot hold"));
    }
    SECTION("entry data past the end") {
        std::string bad = good.bytes;
        patch32(bad, good.central[2] + kCompressed, 0x10000000);
        patch32(bad, good.central[2] + kSize, 0x10000000);
        REQUIRE_THROWS_AS(open(bad), FormatError);
        CHECK_THROWS_WITH(open(bad), Contains(name) && Contains("archive/data/0") && Contains("runs past the end"));
    }
    SECTION("local header offset past the end") {
        std::string bad = good.bytes;
        patch32(bad, good.central[1] + 42, static_cast<std::uint32_t>(good.bytes.size() + 100));
        REQUIRE_THROWS_AS(open(bad), FormatError);
        CHECK_THROWS_WITH(open(bad), Contains(name) && Contains("archive/byteorder"));
    }
    SECTION("local name differs from the central one") {
        std::string bad = good.bytes;
        bad[good.central[3] + kNameStart] = 'X';
        REQUIRE_THROWS_AS(open(bad), FormatError);
        CHECK_THROWS_WITH(open(bad), Contains(name) && Contains("local header"));
    }
    SECTION("NUL in a name") {
        std::string bad = good.bytes;
        bad[good.central[3] + kNameStart + 3] = '\0';
        REQUIRE_THROWS_AS(open(bad), FormatError);
        CHECK_THROWS_WITH(open(bad), Contains(name) && Contains("NUL"));
    }
    SECTION("duplicate names") {
        auto dup = build_zip({{"archive/a", "1"}, {"archive/a", "2"}});
        REQUIRE_THROWS_AS(open(dup.bytes), FormatError);
        CHECK_THROWS_WITH(open(dup.bytes), Contains(name) && Contains("appears twice"));
    }
    SECTION("stored record with different sizes") {
        std::string bad = good.bytes;
        patch32(bad, good.central[2] + kSize, 999);
        REQUIRE_THROWS_AS(open(bad), FormatError);
    }
    SECTION("corrupted deflate stream") {
        std::string bad = good.bytes;
        bad[good.data[0]] = static_cast<char>(0xff);  // block type 3 does not exist
        ZipArchive zip = open(bad);
        REQUIRE_THROWS_AS(zip.read(zip.entries()[0]), FormatError);
        CHECK_THROWS_WITH(zip.read(zip.entries()[0]), Contains(name) && Contains("corrupted deflate stream"));
    }
    SECTION("truncated deflate stream") {
        std::string bad = good.bytes;
        const std::uint32_t shorter = static_cast<std::uint32_t>(good.data[1] - good.data[0]) / 2;
        patch32(bad, good.central[0] + kCompressed, shorter);
        ZipArchive zip = open(bad);
        REQUIRE_THROWS_AS(zip.read(zip.entries()[0]), FormatError);
        CHECK_THROWS_WITH(zip.read(zip.entries()[0]), Contains(name) && Contains("archive/data.pkl"));
    }
    SECTION("deflated record larger than recorded") {
        std::string bad = good.bytes;
        patch32(bad, good.central[0] + kSize, 100);
        ZipArchive zip = open(bad);
        REQUIRE_THROWS_AS(zip.read(zip.entries()[0]), FormatError);
        CHECK_THROWS_WITH(zip.read(zip.entries()[0]), Contains(name) && Contains("more than its recorded 100"));
    }
    SECTION("deflated record smaller than recorded") {
        std::string bad = good.bytes;
        patch32(bad, good.central[0] + kSize, static_cast<std::uint32_t>(records[0].data.size() + 1));
        ZipArchive zip = open(bad);
        REQUIRE_THROWS_AS(zip.read(zip.entries()[0]), FormatError);
        CHECK_THROWS_WITH(zip.read(zip.entries()[0]), Contains(name) && Contains("not its recorded"));
    }
    SECTION("size beyond what deflate can produce") {
        std::string bad = good.bytes;
        patch32(bad, good.central[0] + kSize, 0xfffffff0);
        ZipArchive zip = open(bad);
        REQUIRE_THROWS_AS(zip.read(zip.entries()[0]), FormatError);
    }
    SECTION("crc mismatch") {
        std::string bad = good.bytes;
        patch32(bad, good.central[0] + kCrc, crc(records[0].data) ^ 1);
        patch32(bad, good.central[2] + kCrc, crc(records[2].data) ^ 0x80000000u);
        ZipArchive zip = open(bad);
        REQUIRE_THROWS_AS(zip.read(zip.entries()[0]), FormatError);
        CHECK_THROWS_WITH(zip.read(zip.entries()[0]), Contains(name) && Contains("CRC"));
        REQUIRE_THROWS_AS(zip.read(zip.entries()[2]), FormatError);
        // The zero-copy view does not check (tensor data is verified elsewhere, lazily).
        CHECK(zip.stored_view(zip.entries()[2]).size() == records[2].data.size());
    }
    SECTION("unknown compression method") {
        std::string bad = good.bytes;
        patch16(bad, good.central[0] + kMethod, 12);  // bzip2
        ZipArchive zip = open(bad);
        REQUIRE_THROWS_AS(zip.read(zip.entries()[0]), FormatError);
        CHECK_THROWS_WITH(zip.read(zip.entries()[0]),
                          Contains(name) && Contains("archive/data.pkl") && Contains("method 12"));
        REQUIRE_THROWS_AS(zip.stored_view(zip.entries()[0]), FormatError);
    }
    SECTION("every truncation fails cleanly") {
        for (std::size_t len = 0; len < good.bytes.size(); len += 7) {
            INFO("length " << len);
            CHECK_THROWS_AS(open(good.bytes.substr(0, len)), FormatError);
        }
    }
    SECTION("single-byte corruptions never crash") {
        std::mt19937 rng(99);
        for (int i = 0; i < 300; ++i) {
            std::string bad = good.bytes;
            bad[rng() % bad.size()] = static_cast<char>(rng());
            try {
                ZipArchive zip = open(bad);
                for (const auto& e : zip.entries()) zip.read(e, 1 << 20);
            } catch (const FormatError& e) {
                CHECK_THAT(e.what(), Contains(name));
            }
        }
    }
}

namespace {

// Writes `bytes` at `offset` of an open file, growing it sparsely.
void write_at(int fd, std::uint64_t offset, const std::string& bytes) {
    REQUIRE(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)) == static_cast<ssize_t>(bytes.size()));
}

std::string local_header(const std::string& name, std::uint32_t crc_value, std::uint64_t size) {
    std::string h;
    put32(h, 0x04034b50);
    put16(h, 45);
    put16(h, 0);
    put16(h, 0);
    put32(h, 0);
    put32(h, crc_value);
    put32(h, 0xffffffff);
    put32(h, 0xffffffff);
    put16(h, static_cast<std::uint16_t>(name.size()));
    put16(h, 20);
    h += name;
    put16(h, 0x0001);
    put16(h, 16);
    put64(h, size);
    put64(h, size);
    return h;
}

}  // namespace

TEST_CASE("ZipArchive reads ZIP64 archives with records beyond 4 GiB") {
    TempDir dir;
    const auto path = dir / "big.pt";
    // Record A: 4.5 GiB of stored zeros (a hole in a sparse file) with a marker at its end;
    // record B: a few bytes whose local header lies past 4 GiB.
    const std::string name_a = "archive/data/0", name_b = "archive/data/1";
    const std::uint64_t size_a = 0x120000000ull;
    const std::string marker = "end of A", payload_b = "hello from beyond 4 GiB";
    const std::uint64_t data_a = 30 + name_a.size() + 20;
    const std::uint64_t header_b = data_a + size_a;
    const std::string local_b = local_header(name_b, crc(payload_b), payload_b.size());
    const std::uint64_t data_b = header_b + local_b.size();
    const std::uint64_t cd_offset = data_b + payload_b.size();

    std::string cd;
    auto central = [&](const std::string& name, std::uint32_t crc_value, std::uint32_t size32, std::uint32_t offset32,
                       const std::string& zip64) {
        put32(cd, 0x02014b50);
        put16(cd, 45);
        put16(cd, 45);
        put16(cd, 0);
        put16(cd, 0);
        put32(cd, 0);
        put32(cd, crc_value);
        put32(cd, size32);
        put32(cd, size32);
        put16(cd, static_cast<std::uint16_t>(name.size()));
        put16(cd, static_cast<std::uint16_t>(4 + zip64.size() + 8));
        put16(cd, 0);
        put16(cd, 0);
        put16(cd, 0);
        put32(cd, 0);
        put32(cd, offset32);
        cd += name;
        put16(cd, 0x5455);  // an unrelated extra field first, which the reader must skip
        put16(cd, 4);
        put32(cd, 0);
        put16(cd, 0x0001);
        put16(cd, static_cast<std::uint16_t>(zip64.size()));
        cd += zip64;
    };
    std::string zip64_a, zip64_b;
    put64(zip64_a, size_a);  // uncompressed, then compressed: the offset (0) fits in 32 bits
    put64(zip64_a, size_a);
    put64(zip64_b, header_b);  // only the offset is saturated
    central(name_a, 0, 0xffffffff, 0, zip64_a);
    central(name_b, crc(payload_b), static_cast<std::uint32_t>(payload_b.size()), 0xffffffff, zip64_b);

    const std::uint64_t eocd64_offset = cd_offset + cd.size();
    std::string tail = cd;
    put32(tail, 0x06064b50);
    put64(tail, 44);
    put16(tail, 45);
    put16(tail, 45);
    put32(tail, 0);
    put32(tail, 0);
    put64(tail, 2);
    put64(tail, 2);
    put64(tail, cd.size());
    put64(tail, cd_offset);
    put32(tail, 0x07064b50);
    put32(tail, 0);
    put64(tail, eocd64_offset);
    put32(tail, 1);
    put32(tail, 0x06054b50);
    put16(tail, 0);
    put16(tail, 0);
    put16(tail, 0xffff);
    put16(tail, 0xffff);
    put32(tail, 0xffffffff);
    put32(tail, 0xffffffff);
    put16(tail, 0);

    {
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        REQUIRE(fd >= 0);
        write_at(fd, 0, local_header(name_a, 0, size_a));
        write_at(fd, data_a + size_a - marker.size(), marker);
        write_at(fd, header_b, local_b);
        write_at(fd, data_b, payload_b);
        write_at(fd, cd_offset, tail);
        REQUIRE(::ftruncate(fd, static_cast<off_t>(cd_offset + tail.size())) == 0);
        ::close(fd);
    }

    auto file = std::make_shared<const MappedFile>(path);
    REQUIRE(file->size() > 0x100000000ull);
    CHECK(ZipArchive::looks_like_zip(*file));
    ZipArchive zip(file);
    REQUIRE(zip.entries().size() == 2);
    CHECK(zip.top_folder() == "archive");

    const ZipEntry* a = zip.find_in_top_folder("data/0");
    REQUIRE(a != nullptr);
    CHECK(a->size == size_a);
    CHECK(a->compressed_size == size_a);
    CHECK(a->local_header_offset == 0);
    CHECK(a->data_offset == data_a);
    auto view_a = zip.stored_view(*a);
    CHECK(view_a.size() == size_a);
    CHECK(text(view_a.subspan(0, 4)) == std::string(4, '\0'));
    CHECK(text(view_a.subspan(view_a.size() - marker.size())) == marker);
    CHECK_THROWS_WITH(zip.read(*a), Contains("big.pt") && Contains("limit"));

    const ZipEntry* b = zip.find_in_top_folder("data/1");
    REQUIRE(b != nullptr);
    CHECK(b->local_header_offset == header_b);
    CHECK(b->local_header_offset > 0x100000000ull);
    CHECK(b->data_offset == data_b);
    CHECK(b->size == payload_b.size());
    CHECK(text(zip.stored_view(*b)) == payload_b);
    CHECK(text(zip.read(*b)) == payload_b);
    file->release(0, file->size());
}
