#include <catch2/catch.hpp>

// bitfsck_analysis links HDF5 privately, so its include folder is not on this test's path; the
// Debian layout puts the serial headers here, and they include each other with quotes.
#include <hdf5/serial/hdf5.h>
#include <hdf5/serial/hdf5_hl.h>

#include <cmath>
#include <filesystem>

#include "bitfsck/analysis/h5_report.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "support.hpp"

using namespace bitfsck;
using namespace bitfsck::analysis;
namespace fs = std::filesystem;

namespace {

TensorStats tensor(const std::string& name, double std, double lo, double hi, std::vector<std::uint64_t> counts) {
    TensorStats t;
    t.name = name;
    t.dtype = "float32";
    t.shape = {8, 4};
    t.count = 32;
    t.std = std;
    t.mean = std / 10;
    t.absmean = std * 0.8;
    t.zero_frac = 0.125;
    t.ternary = {Quantizer::BitNet, t.absmean, 0.25, 0.5, 0.25};
    t.values = {lo, hi, std::move(counts)};
    t.log_magnitude = {-12, 4, {1, 2, 3, 4, 5, 6, 7, 8}};
    t.dead = {8, 4, 3, 0, false};
    return t;
}

ScanReport report(const std::string& file, std::int64_t step, double mlp_std) {
    ScanReport r;
    r.file = file;
    r.file_size = 4096;
    r.content_hash = "xxh3-128:0123456789abcdef0123456789abcdef";
    r.format = "torch_zip";
    r.step = step;
    r.quantizer = Quantizer::Distillix;
    r.thresholds.collapsed_std = 2e-3;
    r.tensors.push_back(tensor("layers.0.self_attn.q_proj.weight", 0.02, -0.1, 0.1, {1, 2, 3, 4}));
    r.tensors.push_back(tensor("layers.0.mlp.up_proj.weight", mlp_std, -0.5, 0.5, {4, 3, 2, 1}));
    for (Role role : {Role::AttnQ, Role::MlpUp}) {
        LayerRoleStats l;
        l.layer = 0;
        l.role = role;
        l.tensors = {role == Role::AttnQ ? r.tensors[0].name : r.tensors[1].name};
        l.count = 32;
        l.std = role == Role::AttnQ ? 0.02 : mlp_std;
        l.absmean = l.std * 0.8;
        l.zero = 0.5;
        l.dead_rows = 3;
        l.rows = 8;
        l.verdict = role == Role::MlpUp && mlp_std < 1e-3 ? Verdict::Collapsed : Verdict::Healthy;
        r.layers.push_back(l);
    }
    if (mlp_std < 1e-3) {
        r.findings.push_back({Verdict::Collapsed, "std_below", r.tensors[1].name, "std below"});
        r.verdict = Verdict::Collapsed;
    }
    return r;
}

struct File {
    hid_t id;
    explicit File(const fs::path& p) : id(H5Fopen(p.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)) {}
    ~File() {
        if (id >= 0) H5Fclose(id);
    }
};

std::string string_attr(hid_t f, const std::string& obj, const std::string& name) {
    hsize_t dims = 0;
    H5T_class_t cls;
    size_t size = 0;
    REQUIRE(H5LTget_attribute_info(f, obj.c_str(), name.c_str(), &dims, &cls, &size) >= 0);
    std::string s(size, '\0');
    REQUIRE(H5LTget_attribute_string(f, obj.c_str(), name.c_str(), s.data()) >= 0);
    s.resize(std::strlen(s.c_str()));
    return s;
}

double double_attr(hid_t f, const std::string& obj, const std::string& name) {
    double v = NAN;
    REQUIRE(H5LTget_attribute_double(f, obj.c_str(), name.c_str(), &v) >= 0);
    return v;
}

long long int_attr(hid_t f, const std::string& obj, const std::string& name) {
    long long v = -1;
    REQUIRE(H5LTget_attribute_long_long(f, obj.c_str(), name.c_str(), &v) >= 0);
    return v;
}

std::vector<hsize_t> shape(hid_t f, const std::string& path) {
    int rank = 0;
    REQUIRE(H5LTget_dataset_ndims(f, path.c_str(), &rank) >= 0);
    std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
    REQUIRE(H5LTget_dataset_info(f, path.c_str(), dims.data(), nullptr, nullptr) >= 0);
    return dims;
}

std::vector<double> doubles(hid_t f, const std::string& path) {
    std::size_t n = 1;
    for (auto d : shape(f, path)) n *= d;
    std::vector<double> v(n);
    REQUIRE(H5LTread_dataset_double(f, path.c_str(), v.data()) >= 0);
    return v;
}

template <typename T>
std::vector<T> numbers(hid_t f, const std::string& path, hid_t type) {
    std::size_t n = 1;
    for (auto d : shape(f, path)) n *= d;
    std::vector<T> v(n);
    REQUIRE(H5LTread_dataset(f, path.c_str(), type, v.data()) >= 0);
    return v;
}

std::vector<std::string> strings(hid_t f, const std::string& path) {
    hid_t ds = H5Dopen2(f, path.c_str(), H5P_DEFAULT);
    REQUIRE(ds >= 0);
    hid_t type = H5Dget_type(ds);
    CHECK(H5Tis_variable_str(type) > 0);
    hid_t space = H5Dget_space(ds);
    hssize_t n = H5Sget_simple_extent_npoints(space);
    std::vector<char*> raw(static_cast<std::size_t>(n));
    std::vector<std::string> out;
    if (n > 0 && H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()) >= 0) {
        for (char* s : raw) out.emplace_back(s ? s : "");
        H5Dvlen_reclaim(type, space, H5P_DEFAULT, raw.data());
    }
    H5Sclose(space);
    H5Tclose(type);
    H5Dclose(ds);
    return out;
}

bool is_group(hid_t f, const std::string& path) {
    H5O_info_t info;
    return H5Oget_info_by_name(f, path.c_str(), &info, H5P_DEFAULT) >= 0 && info.type == H5O_TYPE_GROUP;
}

int scales_on(hid_t f, const std::string& path, unsigned dim) {
    hid_t ds = H5Dopen2(f, path.c_str(), H5P_DEFAULT);
    int n = H5DSget_num_scales(ds, dim);
    H5Dclose(ds);
    return n;
}

}  // namespace

TEST_CASE("an HDF5 report holds one group per scan with attributes and tables", "[h5]") {
    test::TempDir tmp;
    const fs::path out = tmp / "report.h5";
    std::string g1, g2;
    {
        H5Report h5(out, "1.2.3");
        g1 = h5.add_scan(report("/run/a/step_000100.pt", 100, 0.02));
        g2 = h5.add_scan(report("/run/b/step_000100.pt", 200, 1e-5));
        // Nothing on disk until closed (the report is built in memory), nothing left beside it after.
        CHECK(fs::is_empty(tmp.path()));
        h5.close();
        CHECK_FALSE(h5.is_open());
        for (const auto& e : fs::directory_iterator(tmp.path())) CHECK(e.path().filename() == "report.h5");
    }
    CHECK(g1 == "step_000100");
    CHECK(g2 == "step_000100_2");
    REQUIRE(fs::exists(out));

    File f(out);
    REQUIRE(f.id >= 0);
    CHECK(int_attr(f.id, "/", "schema_version") == 1);
    CHECK(string_attr(f.id, "/", "tool_version") == "1.2.3");
    CHECK(is_group(f.id, "/step_000100"));
    CHECK(is_group(f.id, "/step_000100_2/tensors"));

    const std::string g = "/step_000100_2";
    CHECK(string_attr(f.id, g, "file") == "/run/b/step_000100.pt");
    CHECK(string_attr(f.id, g, "verdict") == "collapsed");
    CHECK(string_attr(f.id, g, "quantizer") == "distillix");
    CHECK(string_attr(f.id, g, "content_hash") == "xxh3-128:0123456789abcdef0123456789abcdef");
    CHECK(int_attr(f.id, g, "step") == 200);
    CHECK(int_attr(f.id, g, "file_size") == 4096);
    CHECK(double_attr(f.id, g, "threshold.collapsed_std") == Approx(2e-3));
    CHECK(int_attr(f.id, g, "threshold.min_elements") == 256);
    CHECK(nlohmann::json::parse(string_attr(f.id, g, "thresholds"))["collapsed_std"] == Approx(2e-3));

    CHECK(strings(f.id, g + "/tensors/name") == std::vector<std::string>{"layers.0.self_attn.q_proj.weight", "layers.0.mlp.up_proj.weight"});
    CHECK(shape(f.id, g + "/tensors/std") == std::vector<hsize_t>{2});
    auto std_ = doubles(f.id, g + "/tensors/std");
    CHECK(std_[0] == Approx(0.02));
    CHECK(std_[1] == Approx(1e-5));
    CHECK(doubles(f.id, g + "/tensors/zero")[1] == Approx(0.5));
    CHECK(numbers<std::int64_t>(f.id, g + "/tensors/dead_rows", H5T_NATIVE_INT64) == std::vector<std::int64_t>{3, 3});
    CHECK(strings(f.id, g + "/tensors/verdict") == std::vector<std::string>{"healthy", "collapsed"});
    CHECK(scales_on(f.id, g + "/tensors/std", 0) == 1);

    CHECK(strings(f.id, g + "/layers/label") == std::vector<std::string>{"layers.0.attn_q", "layers.0.mlp_up"});
    CHECK(strings(f.id, g + "/layers/role") == std::vector<std::string>{"attn_q", "mlp_up"});
    CHECK(numbers<std::int64_t>(f.id, g + "/layers/layer", H5T_NATIVE_INT64) == std::vector<std::int64_t>{0, 0});
    CHECK(strings(f.id, g + "/layers/verdict") == std::vector<std::string>{"healthy", "collapsed"});
    CHECK(strings(f.id, g + "/findings/rule") == std::vector<std::string>{"std_below"});
    CHECK(shape(f.id, g + "/security/global") == std::vector<hsize_t>{0});

    // Value histograms: [tensors x bins] with lo/hi per row and fractional lower edges per bin,
    // since the rows' ranges differ; log-magnitude rows share [-12, 4), so real edges.
    CHECK(shape(f.id, g + "/histograms/values_counts") == std::vector<hsize_t>{2, 4});
    CHECK(numbers<std::uint64_t>(f.id, g + "/histograms/values_counts", H5T_NATIVE_UINT64) ==
          std::vector<std::uint64_t>{1, 2, 3, 4, 4, 3, 2, 1});
    CHECK(doubles(f.id, g + "/histograms/values_hi") == std::vector<double>{0.1, 0.5});
    CHECK(doubles(f.id, g + "/histograms/values_bin_lower") == std::vector<double>{0, 0.25, 0.5, 0.75});
    CHECK(string_attr(f.id, g + "/histograms/values_bin_lower", "units").find("fraction") != std::string::npos);
    CHECK(doubles(f.id, g + "/histograms/log_magnitude_bin_lower") == std::vector<double>{-12, -10, -8, -6, -4, -2, 0, 2});
    CHECK(scales_on(f.id, g + "/histograms/values_counts", 0) == 3);  // tensor, lo, hi
    CHECK(scales_on(f.id, g + "/histograms/values_counts", 1) == 1);
    {
        hid_t counts = H5Dopen2(f.id, (g + "/histograms/values_counts").c_str(), H5P_DEFAULT);
        hid_t edges = H5Dopen2(f.id, (g + "/histograms/values_bin_lower").c_str(), H5P_DEFAULT);
        CHECK(H5DSis_scale(edges) > 0);
        CHECK(H5DSis_attached(counts, edges, 1) > 0);
        H5Dclose(edges);
        H5Dclose(counts);
    }
}

TEST_CASE("an HDF5 report holds the timeline as step x layer-role matrices", "[h5]") {
    test::TempDir tmp;
    const fs::path out = tmp / "t.h5";
    Timeline t = build_timeline({report("step_100.pt", 100, 0.02), report("step_200.pt", 200, 1e-5), report("step_300.pt", 300, 1e-6)});
    {
        H5Report h5(out);
        CHECK(h5.add_timeline(t) == "timeline");
        CHECK(h5.add_timeline(t) == "timeline_2");
        h5.close();
    }
    File f(out);
    REQUIRE(f.id >= 0);
    CHECK(int_attr(f.id, "/timeline", "onset_step") == 200);
    CHECK(int_attr(f.id, "/timeline", "last_healthy_step") == 100);
    CHECK(string_attr(f.id, "/timeline", "last_healthy_file") == "step_100.pt");
    CHECK(string_attr(f.id, "/timeline", "final_verdict") == "collapsed");
    CHECK(numbers<std::int64_t>(f.id, "/timeline/step", H5T_NATIVE_INT64) == std::vector<std::int64_t>{100, 200, 300});
    CHECK(strings(f.id, "/timeline/verdict") == std::vector<std::string>{"healthy", "collapsed", "collapsed"});
    CHECK(strings(f.id, "/timeline/label") == std::vector<std::string>{"layers.0.attn_q", "layers.0.mlp_up"});
    CHECK(shape(f.id, "/timeline/std") == std::vector<hsize_t>{3, 2});
    auto std_ = doubles(f.id, "/timeline/std");
    CHECK(std_[0] == Approx(0.02));
    CHECK(std_[3] == Approx(1e-5));
    CHECK(numbers<std::int8_t>(f.id, "/timeline/verdict_code", H5T_NATIVE_INT8) == std::vector<std::int8_t>{0, 0, 0, 2, 0, 2});
    CHECK(scales_on(f.id, "/timeline/std", 0) == 1);
    CHECK(scales_on(f.id, "/timeline/std", 1) == 1);
    CHECK(strings(f.id, "/timeline/onsets/label") == std::vector<std::string>{"layers.0.mlp_up"});
}

TEST_CASE("an unclosed HDF5 report leaves nothing behind", "[h5]") {
    test::TempDir tmp;
    const fs::path out = tmp / "r.h5";
    {
        H5Report h5(out);
        h5.add_scan(report("a.pt", 1, 0.02));
    }
    CHECK_FALSE(fs::exists(out));
    CHECK(fs::is_empty(tmp.path()));
}

TEST_CASE("an HDF5 report can be moved and keeps its file", "[h5]") {
    test::TempDir tmp;
    const fs::path out = tmp / "m.h5";
    H5Report a(out);
    a.add_scan(report("x.pt", 1, 0.02));
    H5Report b(std::move(a));
    CHECK_FALSE(a.is_open());
    CHECK(b.is_open());
    CHECK(b.add_scan(report("x.pt", 2, 0.02)) == "x_2");  // names taken before the move still count
    H5Report c(tmp / "other.h5");
    c = std::move(b);
    c.close();
    CHECK(fs::exists(out));
    CHECK_FALSE(fs::exists(tmp / "other.h5"));
    CHECK_THROWS_AS(c.add_scan(report("y.pt", 3, 0.02)), H5ReportError);
}

TEST_CASE("an HDF5 report that cannot be created throws naming the file", "[h5]") {
    test::TempDir tmp;
    const fs::path out = tmp / "no" / "such" / "dir" / "r.h5";
    CHECK_THROWS_WITH(H5Report(out), Catch::Contains(out.string()));
}
