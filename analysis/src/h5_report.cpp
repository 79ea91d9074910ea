#include "bitfsck/analysis/h5_report.hpp"

#include <hdf5.h>
#include <hdf5_hl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <type_traits>
#include <utility>
#include <vector>

#include "bitfsck/analysis/report_json.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "bitfsck/io/atomic_write.hpp"

namespace bitfsck::analysis {

static_assert(std::is_same_v<hid_t, std::int64_t>, "H5Report stores hid_t as int64_t");

namespace {

// Owns one HDF5 identifier and closes it with the matching H5?close.
class Handle {
public:
    Handle(hid_t id, herr_t (*closer)(hid_t)) : id_(id), closer_(closer) {}
    ~Handle() {
        if (id_ >= 0) closer_(id_);
    }
    Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, -1)), closer_(o.closer_) {}
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    Handle& operator=(Handle&&) = delete;
    hid_t get() const { return id_; }
    bool ok() const { return id_ >= 0; }

private:
    hid_t id_;
    herr_t (*closer_)(hid_t);
};

// Everything below throws with the report's file name and what was being written.
struct Writer {
    std::string file;

    [[noreturn]] void fail(const std::string& what) const { throw H5ReportError(file + ": HDF5: cannot write " + what); }
    void check(herr_t rc, const std::string& what) const {
        if (rc < 0) fail(what);
    }
    Handle checked(Handle h, const std::string& what) const {
        if (!h.ok()) fail(what);
        return h;
    }

    Handle group(hid_t loc, const std::string& name) const {
        return checked(Handle(H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose),
                       "group " + name);
    }
    Handle open_dataset(hid_t loc, const std::string& name) const {
        return checked(Handle(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), H5Dclose), "dataset " + name);
    }

    // Numeric datasets through the HL helper; HDF5 wants a non-null buffer even for no elements.
    template <typename T>
    void numbers(hid_t loc, const std::string& name, const std::vector<T>& v, std::vector<hsize_t> dims = {}) const {
        if (dims.empty()) dims = {static_cast<hsize_t>(v.size())};
        static const T dummy{};
        const T* data = v.empty() ? &dummy : v.data();
        hid_t type;
        if constexpr (std::is_same_v<T, double>) type = H5T_NATIVE_DOUBLE;
        else if constexpr (std::is_same_v<T, std::int64_t>) type = H5T_NATIVE_INT64;
        else if constexpr (std::is_same_v<T, std::uint64_t>) type = H5T_NATIVE_UINT64;
        else if constexpr (std::is_same_v<T, std::int8_t>) type = H5T_NATIVE_INT8;
        else static_assert(sizeof(T) == 0, "unsupported element type");
        check(H5LTmake_dataset(loc, name.c_str(), static_cast<int>(dims.size()), dims.data(), type, data), "dataset " + name);
    }

    // Variable-length UTF-8 strings: tensor names have no length bound worth fixing.
    void strings(hid_t loc, const std::string& name, const std::vector<std::string>& v) const {
        Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
        check(H5Tset_size(type.get(), H5T_VARIABLE), "string type");
        check(H5Tset_cset(type.get(), H5T_CSET_UTF8), "string type");
        hsize_t dims[1] = {static_cast<hsize_t>(v.size())};
        Handle space = checked(Handle(H5Screate_simple(1, dims, nullptr), H5Sclose), "dataspace " + name);
        Handle ds = checked(Handle(H5Dcreate2(loc, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose),
                            "dataset " + name);
        if (v.empty()) return;
        std::vector<const char*> ptrs;
        ptrs.reserve(v.size());
        for (const auto& s : v) ptrs.push_back(s.c_str());
        check(H5Dwrite(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()), "dataset " + name);
    }

    void attr(hid_t loc, const std::string& name, const std::string& value) const {
        check(H5LTset_attribute_string(loc, ".", name.c_str(), value.c_str()), "attribute " + name);
    }
    void attr(hid_t loc, const std::string& name, double value) const {
        check(H5LTset_attribute_double(loc, ".", name.c_str(), &value, 1), "attribute " + name);
    }
    void attr(hid_t loc, const std::string& name, std::int64_t value) const {
        long long v = value;
        check(H5LTset_attribute_long_long(loc, ".", name.c_str(), &v, 1), "attribute " + name);
    }

    void make_scale(hid_t loc, const std::string& name) const {
        Handle ds = open_dataset(loc, name);
        check(H5DSset_scale(ds.get(), name.c_str()), "dimension scale " + name);
    }
    void attach(hid_t loc, const std::string& dataset, const std::string& scale, unsigned dim) const {
        Handle ds = open_dataset(loc, dataset);
        Handle sc = open_dataset(loc, scale);
        check(H5DSattach_scale(ds.get(), sc.get(), dim), "dimension scale " + scale + " of " + dataset);
    }
};

template <typename Row, typename F>
auto collect(const std::vector<Row>& rows, F f) {
    std::vector<std::decay_t<decltype(f(rows.front()))>> out;
    out.reserve(rows.size());
    for (const auto& r : rows) out.push_back(f(r));
    return out;
}

std::string sanitize(std::string name) {
    // '/' separates HDF5 path components and "." names the current group.
    std::replace(name.begin(), name.end(), '/', '_');
    if (name.empty() || name == "." || name == "..") name = "checkpoint";
    return name;
}

void write_histograms(const Writer& w, hid_t loc, const std::vector<TensorStats>& tensors, const std::string& kind,
                      const Histogram TensorStats::*member, const char* shared_units) {
    const std::size_t n = tensors.size();
    std::size_t bins = 0;
    for (const auto& t : tensors) bins = std::max(bins, (t.*member).counts.size());
    std::vector<std::uint64_t> counts(n * bins, 0);
    std::vector<double> lo(n), hi(n);
    bool shared = n > 0;
    for (std::size_t i = 0; i < n; ++i) {
        const Histogram& h = tensors[i].*member;
        std::copy(h.counts.begin(), h.counts.end(), counts.begin() + static_cast<std::ptrdiff_t>(i * bins));
        lo[i] = h.lo;
        hi[i] = h.hi;
        shared = shared && h.counts.size() == bins && h.lo == (tensors[0].*member).lo && h.hi == (tensors[0].*member).hi;
    }
    // A dimension scale is one vector per dimension, so real edges only exist when every row
    // shares its range (log-magnitude histograms use a fixed range); otherwise the scale holds
    // lower edges as fractions of each row's [lo, hi], which the lo/hi scales turn into values.
    std::vector<double> lower(bins);
    for (std::size_t b = 0; b < bins; ++b) {
        double f = static_cast<double>(b) / static_cast<double>(bins);
        lower[b] = shared ? lo[0] + f * (hi[0] - lo[0]) : f;
    }
    const std::string c = kind + "_counts", l = kind + "_lo", h = kind + "_hi", e = kind + "_bin_lower";
    w.numbers(loc, c, counts, {static_cast<hsize_t>(n), static_cast<hsize_t>(bins)});
    w.numbers(loc, l, lo);
    w.numbers(loc, h, hi);
    w.numbers(loc, e, lower);
    {
        Handle ds = w.open_dataset(loc, e);
        w.attr(ds.get(), "units", std::string(shared ? shared_units : "fraction of the row's [lo, hi]"));
    }
    for (const auto& s : {l, h, e}) w.make_scale(loc, s);
    w.attach(loc, c, "tensor", 0);
    w.attach(loc, c, l, 0);
    w.attach(loc, c, h, 0);
    w.attach(loc, c, e, 1);
}

}  // namespace

H5Report::H5Report(std::filesystem::path path, std::string tool_version) : path_(std::move(path)) {
    // Errors are reported as exceptions naming the file; HDF5's own stack dump on stderr would
    // only duplicate them in a less readable form.
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    // Where the report will go is checked now, before any work is done for it.
    std::error_code ec;
    if (std::filesystem::is_directory(path_, ec))
        throw H5ReportError(path_.string() + ": is a folder; name the HDF5 report's file", path_.string());
    const std::filesystem::path folder = path_.parent_path().empty() ? std::filesystem::path(".") : path_.parent_path();
    if (!std::filesystem::is_directory(folder, ec))
        throw H5ReportError(path_.string() + ": cannot write the report: the folder " + folder.string() + " does not exist", path_.string());
    if (::access(folder.c_str(), W_OK) != 0)
        throw H5ReportError(path_.string() + ": cannot write the report: the folder " + folder.string() + " is not writable", path_.string());
    // In memory, grown 1 MB at a time, never backed by a file: close() writes the image.
    Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    if (!fapl.ok() || H5Pset_fapl_core(fapl.get(), 1 << 20, 0) < 0 || H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG) < 0)
        throw H5ReportError(path_.string() + ": HDF5: cannot set up an in-memory file", path_.string());
    file_ = H5Fcreate(path_.filename().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get());
    if (file_ < 0) throw H5ReportError(path_.string() + ": HDF5: cannot create the report in memory", path_.string());
    try {
        Writer w{path_.string()};
        w.attr(file_, "schema_version", std::int64_t{kJsonSchemaVersion});
        w.attr(file_, "tool", std::string(kToolName));
        w.attr(file_, "tool_version", tool_version.empty() ? std::string(bitfsck::tool_version()) : tool_version);
    } catch (...) {
        abandon();
        throw;
    }
}

H5Report::~H5Report() { abandon(); }

H5Report::H5Report(H5Report&& other) noexcept
    : path_(std::move(other.path_)), file_(std::exchange(other.file_, -1)), names_(std::move(other.names_)) {}

H5Report& H5Report::operator=(H5Report&& other) noexcept {
    if (this != &other) {
        abandon();
        path_ = std::move(other.path_);
        file_ = std::exchange(other.file_, -1);
        names_ = std::move(other.names_);
    }
    return *this;
}

void H5Report::abandon() noexcept {
    if (file_ < 0) return;
    H5Fclose(file_);  // an in-memory file: nothing reaches the disk
    file_ = -1;
}

std::string H5Report::unique_name(std::string base) {
    base = sanitize(std::move(base));
    std::string name = base;
    for (int i = 2; names_.count(name); ++i) name = base + "_" + std::to_string(i);
    names_.insert(name);
    return name;
}

void H5Report::close() {
    if (file_ < 0) return;
    hid_t f = std::exchange(file_, -1);
    const bool flushed = H5Fflush(f, H5F_SCOPE_GLOBAL) >= 0;
    const ssize_t size = flushed ? H5Fget_file_image(f, nullptr, 0) : -1;
    std::string image(size > 0 ? static_cast<std::size_t>(size) : 0, '\0');
    const bool copied = size > 0 && H5Fget_file_image(f, image.data(), image.size()) == size;
    H5Fclose(f);
    if (!copied) throw H5ReportError(path_.string() + ": HDF5: cannot finish the report", path_.string());
    try {
        io::write_file_atomically(path_, image);
    } catch (const Error& e) {
        throw H5ReportError(e.what(), path_.string());
    }
}

std::string H5Report::add_scan(const ScanReport& r) {
    if (file_ < 0) throw H5ReportError(path_.string() + ": report already closed");
    Writer w{path_.string()};
    const std::string name = unique_name(std::filesystem::path(r.file).stem().string());
    Handle g = w.group(file_, name);
    hid_t gid = g.get();

    w.attr(gid, "file", r.file);
    w.attr(gid, "file_size", static_cast<std::int64_t>(r.file_size));
    w.attr(gid, "content_hash", r.content_hash);
    w.attr(gid, "format", r.format);
    if (r.state_dict_path) w.attr(gid, "state_dict_path", *r.state_dict_path);
    if (r.step) w.attr(gid, "step", *r.step);
    w.attr(gid, "quantizer", std::string(quantizer_name(r.quantizer)));
    w.attr(gid, "verdict", std::string(verdict_name(r.verdict)));
    const auto thresholds = thresholds_to_json(r.thresholds);
    w.attr(gid, "thresholds", thresholds.dump());
    for (const auto& [key, value] : thresholds.items()) {
        if (value.is_number_integer()) w.attr(gid, "threshold." + key, value.get<std::int64_t>());
        else if (value.is_number()) w.attr(gid, "threshold." + key, value.get<double>());
    }

    {
        const auto& t = r.tensors;
        Handle tg = w.group(gid, "tensors");
        hid_t l = tg.get();
        w.strings(l, "name", collect(t, [](const TensorStats& s) { return s.name; }));
        w.strings(l, "dtype", collect(t, [](const TensorStats& s) { return s.dtype; }));
        w.numbers(l, "count", collect(t, [](const TensorStats& s) { return s.count; }));
        w.numbers(l, "mean", collect(t, [](const TensorStats& s) { return s.mean; }));
        w.numbers(l, "std", collect(t, [](const TensorStats& s) { return s.std; }));
        w.numbers(l, "min", collect(t, [](const TensorStats& s) { return s.min; }));
        w.numbers(l, "max", collect(t, [](const TensorStats& s) { return s.max; }));
        w.numbers(l, "absmean", collect(t, [](const TensorStats& s) { return s.absmean; }));
        w.numbers(l, "zero_frac", collect(t, [](const TensorStats& s) { return s.zero_frac; }));
        w.numbers(l, "neg", collect(t, [](const TensorStats& s) { return s.ternary.neg; }));
        w.numbers(l, "zero", collect(t, [](const TensorStats& s) { return s.ternary.zero; }));
        w.numbers(l, "pos", collect(t, [](const TensorStats& s) { return s.ternary.pos; }));
        w.numbers(l, "nan_count", collect(t, [](const TensorStats& s) { return s.nan_count; }));
        w.numbers(l, "inf_count", collect(t, [](const TensorStats& s) { return s.inf_count; }));
        w.numbers(l, "dead_rows", collect(t, [](const TensorStats& s) { return std::int64_t{s.dead.dead_rows}; }));
        w.numbers(l, "rows", collect(t, [](const TensorStats& s) { return std::int64_t{s.dead.rows}; }));
        w.strings(l, "verdict", collect(t, [&](const TensorStats& s) { return std::string(verdict_name(verdict_of_subject(r, s.name))); }));
        // The name column labels every row, so tools that follow dimension scales show names.
        w.make_scale(l, "name");
        for (const char* c : {"dtype", "count", "mean", "std", "min", "max", "absmean", "zero_frac", "neg", "zero", "pos",
                              "nan_count", "inf_count", "dead_rows", "rows", "verdict"})
            w.attach(l, c, "name", 0);
    }
    {
        const auto& v = r.layers;
        Handle lg = w.group(gid, "layers");
        hid_t l = lg.get();
        w.strings(l, "label", collect(v, [](const LayerRoleStats& s) { return layer_role_label(s.layer, s.role); }));
        w.numbers(l, "layer", collect(v, [](const LayerRoleStats& s) { return std::int64_t{s.layer.value_or(-1)}; }));
        w.strings(l, "role", collect(v, [](const LayerRoleStats& s) { return std::string(role_name(s.role)); }));
        w.numbers(l, "count", collect(v, [](const LayerRoleStats& s) { return s.count; }));
        w.numbers(l, "std", collect(v, [](const LayerRoleStats& s) { return s.std; }));
        w.numbers(l, "absmean", collect(v, [](const LayerRoleStats& s) { return s.absmean; }));
        w.numbers(l, "zero_frac", collect(v, [](const LayerRoleStats& s) { return s.zero_frac; }));
        w.numbers(l, "neg", collect(v, [](const LayerRoleStats& s) { return s.neg; }));
        w.numbers(l, "zero", collect(v, [](const LayerRoleStats& s) { return s.zero; }));
        w.numbers(l, "pos", collect(v, [](const LayerRoleStats& s) { return s.pos; }));
        w.numbers(l, "dead_rows", collect(v, [](const LayerRoleStats& s) { return s.dead_rows; }));
        w.numbers(l, "rows", collect(v, [](const LayerRoleStats& s) { return s.rows; }));
        w.strings(l, "verdict", collect(v, [](const LayerRoleStats& s) { return std::string(verdict_name(s.verdict)); }));
        w.make_scale(l, "label");
        for (const char* c : {"layer", "role", "count", "std", "absmean", "zero_frac", "neg", "zero", "pos", "dead_rows", "rows", "verdict"})
            w.attach(l, c, "label", 0);
    }
    {
        const auto& f = r.findings;
        Handle fg = w.group(gid, "findings");
        w.strings(fg.get(), "severity", collect(f, [](const Finding& s) { return std::string(verdict_name(s.severity)); }));
        w.strings(fg.get(), "rule", collect(f, [](const Finding& s) { return s.rule; }));
        w.strings(fg.get(), "subject", collect(f, [](const Finding& s) { return s.subject; }));
        w.strings(fg.get(), "message", collect(f, [](const Finding& s) { return s.message; }));
    }
    {
        const auto& s = r.security;
        Handle sg = w.group(gid, "security");
        w.strings(sg.get(), "global", collect(s, [](const SecuritySummary& x) { return x.global; }));
        w.strings(sg.get(), "severity", collect(s, [](const SecuritySummary& x) { return x.severity; }));
        w.numbers(sg.get(), "offset", collect(s, [](const SecuritySummary& x) { return std::uint64_t{x.offset}; }));
        w.numbers(sg.get(), "called", collect(s, [](const SecuritySummary& x) { return std::int8_t{x.called}; }));
        w.strings(sg.get(), "reason", collect(s, [](const SecuritySummary& x) { return x.reason; }));
    }
    {
        Handle hg = w.group(gid, "histograms");
        w.strings(hg.get(), "tensor", collect(r.tensors, [](const TensorStats& s) { return s.name; }));
        w.make_scale(hg.get(), "tensor");
        write_histograms(w, hg.get(), r.tensors, "values", &TensorStats::values, "value");
        write_histograms(w, hg.get(), r.tensors, "log_magnitude", &TensorStats::log_magnitude, "log10|w|");
    }
    return name;
}

std::string H5Report::add_timeline(const Timeline& t) {
    if (file_ < 0) throw H5ReportError(path_.string() + ": report already closed");
    Writer w{path_.string()};
    const std::string name = unique_name("timeline");
    Handle g = w.group(file_, name);
    hid_t gid = g.get();

    w.attr(gid, "quantizer", std::string(quantizer_name(t.quantizer)));
    w.attr(gid, "final_verdict", std::string(verdict_name(t.final_verdict)));
    w.attr(gid, "thresholds", thresholds_to_json(t.thresholds).dump());
    if (t.onset_step) {
        w.attr(gid, "onset_step", *t.onset_step);
        w.attr(gid, "onset_file", t.onset_file);
    }
    if (t.collapsed_step) w.attr(gid, "collapsed_step", *t.collapsed_step);
    if (t.last_healthy_step) {
        w.attr(gid, "last_healthy_step", *t.last_healthy_step);
        w.attr(gid, "last_healthy_file", t.last_healthy_file);
    }
    if (t.last_before_collapse_step) {
        w.attr(gid, "last_before_collapse_step", *t.last_before_collapse_step);
        w.attr(gid, "last_before_collapse_file", t.last_before_collapse_file);
    }

    const auto& p = t.points;
    w.numbers(gid, "step", collect(p, [](const TimelinePoint& x) { return std::int64_t{x.step}; }));
    w.strings(gid, "file", collect(p, [](const TimelinePoint& x) { return x.file; }));
    w.strings(gid, "verdict", collect(p, [](const TimelinePoint& x) { return std::string(verdict_name(x.verdict)); }));
    w.strings(gid, "scan_verdict", collect(p, [](const TimelinePoint& x) { return std::string(verdict_name(x.scan_verdict)); }));

    // Columns: every layer-role seen at any step, ordered by layer then role.
    std::map<std::pair<int, int>, std::size_t> index;
    std::vector<std::string> labels;
    for (const auto& x : p)
        for (const auto& l : x.layers) index.emplace(std::make_pair(l.layer.value_or(-1), static_cast<int>(l.role)), 0);
    for (auto& [key, col] : index) {
        col = labels.size();
        labels.push_back(layer_role_label(key.first < 0 ? std::nullopt : std::optional<int>(key.first), static_cast<Role>(key.second)));
    }
    const std::size_t rows = p.size(), cols = labels.size();
    std::vector<double> std_(rows * cols, NAN), absmean(rows * cols, NAN), zero(rows * cols, NAN), zero_frac(rows * cols, NAN);
    std::vector<std::int64_t> dead(rows * cols, -1);
    std::vector<std::int8_t> code(rows * cols, -1);
    for (std::size_t i = 0; i < rows; ++i)
        for (const auto& l : p[i].layers) {
            std::size_t k = i * cols + index.at({l.layer.value_or(-1), static_cast<int>(l.role)});
            std_[k] = l.std;
            absmean[k] = l.absmean;
            zero[k] = l.zero;
            zero_frac[k] = l.zero_frac;
            dead[k] = l.dead_rows;
            code[k] = static_cast<std::int8_t>(l.verdict);
        }
    w.strings(gid, "label", labels);
    const std::vector<hsize_t> dims{static_cast<hsize_t>(rows), static_cast<hsize_t>(cols)};
    w.numbers(gid, "std", std_, dims);
    w.numbers(gid, "absmean", absmean, dims);
    w.numbers(gid, "zero", zero, dims);
    w.numbers(gid, "zero_frac", zero_frac, dims);
    w.numbers(gid, "dead_rows", dead, dims);
    w.numbers(gid, "verdict_code", code, dims);
    w.make_scale(gid, "step");
    w.make_scale(gid, "label");
    for (const char* c : {"file", "verdict", "scan_verdict"}) w.attach(gid, c, "step", 0);
    for (const char* c : {"std", "absmean", "zero", "zero_frac", "dead_rows", "verdict_code"}) {
        w.attach(gid, c, "step", 0);
        w.attach(gid, c, "label", 1);
    }

    Handle og = w.group(gid, "onsets");
    const auto& o = t.role_onsets;
    w.strings(og.get(), "label", collect(o, [](const RoleOnset& x) { return layer_role_label(x.layer, x.role); }));
    w.numbers(og.get(), "step", collect(o, [](const RoleOnset& x) { return std::int64_t{x.step}; }));
    w.strings(og.get(), "verdict", collect(o, [](const RoleOnset& x) { return std::string(verdict_name(x.verdict)); }));
    return name;
}

}  // namespace bitfsck::analysis
