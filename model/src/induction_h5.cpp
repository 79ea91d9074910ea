// Induction matrices as HDF5. analysis::H5Report only adds scan and timeline groups (no API to add
// other datasets to an open report), so `bitfsck induction --h5` writes its own file in the same
// spirit: one group per checkpoint, written to a temporary name and renamed when complete.
#include <hdf5.h>
#include <hdf5_hl.h>

#include <cmath>
#include <set>
#include <utility>

#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/model/induction.hpp"

namespace bitfsck::model {
namespace {

class Handle {
public:
    Handle(hid_t id, herr_t (*closer)(hid_t)) : id_(id), closer_(closer) {}
    ~Handle() {
        if (id_ >= 0) closer_(id_);
    }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    hid_t get() const { return id_; }

private:
    hid_t id_;
    herr_t (*closer_)(hid_t);
};

struct Writer {
    std::string file;
    void check(herr_t rc, const std::string& what) const {
        if (rc < 0) throw ModelError(file + ": HDF5: cannot write " + what);
    }
    void attr(hid_t loc, const char* obj, const std::string& name, const std::string& v) const {
        check(H5LTset_attribute_string(loc, obj, name.c_str(), v.c_str()), "attribute " + name);
    }
    void attr(hid_t loc, const char* obj, const std::string& name, double v) const {
        check(H5LTset_attribute_double(loc, obj, name.c_str(), &v, 1), "attribute " + name);
    }
    void attr(hid_t loc, const char* obj, const std::string& name, std::int64_t v) const {
        long long x = v;
        check(H5LTset_attribute_long_long(loc, obj, name.c_str(), &x, 1), "attribute " + name);
    }
};

std::string group_name(const InductionReport& r, std::set<std::string>& taken) {
    std::string base = std::filesystem::path(r.file).stem().string();
    if (base.empty()) base = "checkpoint";
    for (char& c : base)
        if (c == '/' || c == '.') c = '_';  // '/' would make a path, '.' is reserved in HDF5 names
    std::string name = base;
    for (int i = 2; taken.count(name); ++i) name = base + "_" + std::to_string(i);
    taken.insert(name);
    return name;
}

void write_report(const Writer& w, hid_t root, const std::string& name, const InductionReport& r) {
    Handle g(H5Gcreate2(root, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    if (g.get() < 0) w.check(-1, "group " + name);
    w.attr(g.get(), ".", "file", r.file);
    w.attr(g.get(), ".", "probe", std::string(probe_name(r.probe)));
    w.attr(g.get(), ".", "batch", r.batch);
    w.attr(g.get(), ".", "seq_len", r.seq_len);
    w.attr(g.get(), ".", "rows", r.windows);
    w.attr(g.get(), ".", "sequence_length", r.sequence_length);
    if (r.probe == Probe::RepeatedRandom) {
        w.attr(g.get(), ".", "seed", static_cast<std::int64_t>(r.seed));
        w.attr(g.get(), ".", "bos", std::int64_t(r.bos));
    } else {
        w.attr(g.get(), ".", "tokens_file", r.tokens_file);
        w.attr(g.get(), ".", "token_dtype", r.token_dtype);
    }
    w.attr(g.get(), ".", "eligible_positions", r.eligible_positions);
    w.attr(g.get(), ".", "previous_positions", r.previous_positions);
    w.attr(g.get(), ".", "specialist_threshold", r.specialist_threshold);
    w.attr(g.get(), ".", "specialist_heads", r.specialists);
    w.attr(g.get(), ".", "config", config_to_json(r.config).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));

    const hsize_t dims[2] = {static_cast<hsize_t>(r.layers), static_cast<hsize_t>(r.heads)};
    using Field = double HeadMetrics::*;
    for (auto [key, field] : std::initializer_list<std::pair<const char*, Field>>{
             {"ipmr", &HeadMetrics::ipmr}, {"induction", &HeadMetrics::induction},
             {"duplicate_token", &HeadMetrics::duplicate_token}, {"previous_token", &HeadMetrics::previous_token}}) {
        std::vector<double> v;
        for (const auto& layer : r.metrics)
            for (const auto& h : layer) v.push_back(h.*field);
        static const double dummy = 0;
        w.check(H5LTmake_dataset_double(g.get(), key, 2, dims, v.empty() ? &dummy : v.data()), std::string("dataset ") + key);
        w.attr(g.get(), key, "dims", std::string("layer, head"));
    }
    std::vector<long long> top;
    for (const auto& h : r.top) top.push_back(h.layer), top.push_back(h.head);
    const hsize_t tdims[2] = {r.top.size(), 2};
    static const long long dummy = 0;
    w.check(H5LTmake_dataset_long(g.get(), "top_heads", 2, tdims, reinterpret_cast<const long*>(top.empty() ? &dummy : top.data())),
            "dataset top_heads");
    w.attr(g.get(), "top_heads", "columns", std::string("layer, head; ranked by ipmr, then induction"));
}

}  // namespace

void write_induction_h5(const std::filesystem::path& path, const std::vector<InductionReport>& reports) {
    static_assert(sizeof(long) == sizeof(long long), "top_heads is written as native long");
    io::replace_atomically(path, [&](const std::filesystem::path& tmp) {
        Writer w{path.string()};
        Handle f(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
        if (f.get() < 0) w.check(-1, "the file");
        w.attr(f.get(), "/", "schema_version", std::int64_t(kInductionSchemaVersion));
        w.attr(f.get(), "/", "tool", std::string("bitfsck induction"));
        std::set<std::string> taken;
        for (const auto& r : reports) write_report(w, f.get(), group_name(r, taken), r);
    });
}

}  // namespace bitfsck::model
