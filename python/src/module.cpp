// bitfsck._bitfsck: the C++ libraries (io/, analysis/) as a Python extension module.
//
// One thin layer: every statistic, verdict, format and JSON document comes from the libraries;
// this file only moves values across (paths and options in, reports and zero-copy array views
// out), releases the GIL around long work and turns bitfsck::Error into Python exceptions. The
// Python package (python/bitfsck/) gives it its public names and docstrings.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <chrono>
#include <cstring>
#include <future>
#include <thread>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bitfsck/io/error.hpp"  // before the analysis headers, which use bitfsck::Error
#include "bitfsck/analysis/diff.hpp"
#include "bitfsck/analysis/report_json.hpp"
#include "bitfsck/analysis/run.hpp"
#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/analysis/scan_tensors.hpp"
#include "bitfsck/analysis/selection.hpp"
#include "bitfsck/analysis/thresholds.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/json_document.hpp"
#include "bitfsck/io/progress.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace bitfsck::python {
namespace {

// ---------------------------------------------------------------------------------------------
// Errors: bitfsck::Error becomes the bitfsck.Error subclass of its kind (python/bitfsck/_errors.py),
// with the same one-line message and the kind, file and tensor as attributes.

void raise_bitfsck_error(const Error& e) {
    nb::object make = nb::module_::import_("bitfsck._errors").attr("_from_kind");
    nb::object exc = make(std::string(error_kind_name(e.kind())), std::string(e.what()), e.file(), e.tensor());
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
}

// ---------------------------------------------------------------------------------------------
// Progress and Ctrl-C. The libraries call the callback from their worker threads (never two at
// once); it takes the GIL only for the moment of the call. A Python exception raised by the
// callback, or a pending KeyboardInterrupt, stops the work (the callback returns false, the
// library throws Cancelled) and is raised again once the GIL is back.

struct CallState {
    nb::object callback;  // None: only Ctrl-C is checked
    std::optional<nb::python_error> error;
};

ProgressCallback progress_of(CallState* state) {
    // Captures a pointer, never a Python object: the libraries copy callbacks on their threads.
    return [state](const Progress& p) -> bool {
        nb::gil_scoped_acquire gil;
        if (state->error) return false;  // the callback raised, or Ctrl-C (without_gil)
        if (state->callback.is_none()) return true;
        try {
            nb::object r = state->callback(p.done, p.total, std::string(progress_unit_name(p.unit)), p.label);
            if (!r.is_none() && !nb::cast<bool>(r)) return false;
        } catch (nb::python_error& e) {
            state->error.emplace(std::move(e));
            return false;
        }
        return true;
    };
}

// Runs `work` on a thread of its own without the GIL, while the calling thread (the only one
// Python runs signal handlers on) looks for Ctrl-C every 50 ms: a KeyboardInterrupt is kept in
// `state`, the progress callback then asks the work to stop, and the interrupt is raised once the
// work has stopped. A Python error saved by the callback wins over the Cancelled it caused.
template <typename F>
auto without_gil(CallState& state, F&& work) {
    using R = decltype(work());
    std::packaged_task<R()> task(std::forward<F>(work));
    std::future<R> result = task.get_future();
    {
        nb::gil_scoped_release release;
        std::thread worker(std::move(task));
        while (result.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
            nb::gil_scoped_acquire gil;
            if (!state.error && PyErr_CheckSignals() != 0) state.error.emplace();  // takes the pending exception
        }
        worker.join();
    }
    try {
        auto r = result.get();
        // Work that finished before it saw the stop still raises what asked for it.
        if (state.error) throw std::move(*state.error);
        return r;
    } catch (const Cancelled&) {
        if (state.error) throw std::move(*state.error);
        throw;
    }
}

// ---------------------------------------------------------------------------------------------
// Options, as the CLI's scan flags build them (cli/scan_options.cpp), from plain values.

analysis::Quantizer quantizer_of(const std::string& name) {
    auto q = analysis::quantizer_from_name(name);
    if (!q) throw Error("unknown quantizer '" + name + "' (bitnet or distillix)", ErrorKind::Usage);
    return *q;
}

analysis::Thresholds thresholds_of(const std::string& overrides_json) {
    if (overrides_json.empty()) return {};
    try {
        return analysis::thresholds_from_json(nlohmann::json::parse(overrides_json));
    } catch (const Error& e) {
        throw Error(e.what(), ErrorKind::Usage);
    }
}

analysis::TensorSelection selection_of(const std::string& layers, const std::vector<std::string>& roles,
                                       const std::vector<std::string>& match) {
    analysis::TensorSelection s;
    try {
        if (!layers.empty()) s.layers = analysis::parse_layer_ranges(layers);
        analysis::check_role_names(roles);
    } catch (const Error& e) {
        throw Error(e.what(), ErrorKind::Usage);
    }
    s.roles = roles;
    s.match = match;
    return s;
}

io::OpenOptions open_options_of(const std::string& i2s_layout, const std::vector<std::string>& trusted) {
    io::OpenOptions o;
    auto layout = io::parse_i2s_layout(i2s_layout);
    if (!layout) throw Error("unknown I2_S layout '" + i2s_layout + "' (act-parallel, interleaved or arm)", ErrorKind::Usage);
    o.i2s_layout = *layout;
    o.pickle.trusted_globals.insert(trusted.begin(), trusted.end());
    return o;
}

struct Options {
    std::string quantizer = "bitnet";
    std::string thresholds;  // JSON object of overrides, "" for none
    unsigned threads = 0;
    std::string layers;
    std::vector<std::string> roles, match;
    bool content_hash = true;
    std::string i2s_layout = "act-parallel";
    std::vector<std::string> trusted;

    analysis::ScanOptions scan(CallState& state) const {
        analysis::ScanOptions o;
        o.analysis.quantizer = quantizer_of(quantizer);
        o.thresholds = thresholds_of(thresholds);
        o.threads = threads;
        o.selection = selection_of(layers, roles, match);
        o.content_hash = content_hash;
        o.progress = progress_of(&state);
        return o;
    }
};

// ---------------------------------------------------------------------------------------------
// Reports travel to Python as the libraries' JSON text (the same bytes the CLI prints), so a
// dict from Python is the CLI's document by construction.

struct ScanResult {
    analysis::ScanReport report;
    std::string json(bool histograms) const { return analysis::dump_json(analysis::to_json(report, histograms)); }
};

// A live run's reports, in the order they were taken, made into a timeline by the library's own
// rules (build_timeline: the cross-checkpoint gamma rule included). Used by bitfsck.watch.
struct ReportSeries {
    std::vector<analysis::ScanReport> reports;
    void add(const ScanResult& r) { reports.push_back(r.report); }
    std::size_t size() const { return reports.size(); }
    std::string timeline_json() const { return analysis::dump_json(analysis::to_json(analysis::build_timeline(reports))); }
};

// ---------------------------------------------------------------------------------------------
// Checkpoints and zero-copy tensor views.

std::optional<nb::dlpack::dtype> numpy_dtype(io::DType t) {
    using nb::dlpack::dtype_code;
    auto d = [](dtype_code c, int bits, int lanes = 1) {
        return nb::dlpack::dtype{static_cast<std::uint8_t>(c), static_cast<std::uint8_t>(bits), static_cast<std::uint16_t>(lanes)};
    };
    switch (t) {
        case io::DType::F64: return d(dtype_code::Float, 64);
        case io::DType::F32: return d(dtype_code::Float, 32);
        case io::DType::F16: return d(dtype_code::Float, 16);
        case io::DType::I64: return d(dtype_code::Int, 64);
        case io::DType::I32: return d(dtype_code::Int, 32);
        case io::DType::I16: return d(dtype_code::Int, 16);
        case io::DType::I8: return d(dtype_code::Int, 8);
        case io::DType::U8: return d(dtype_code::UInt, 8);
        case io::DType::U16: return d(dtype_code::UInt, 16);
        case io::DType::U32: return d(dtype_code::UInt, 32);
        case io::DType::U64: return d(dtype_code::UInt, 64);
        case io::DType::Bool: return d(dtype_code::Bool, 8);
        case io::DType::C64: return d(dtype_code::Complex, 64);
        case io::DType::C128: return d(dtype_code::Complex, 128);
        default: return std::nullopt;  // bfloat16, float8: NumPy has no such type
    }
}

nb::object value_to_python(const io::Value* v);

nb::object value_to_python(const io::Value* v) {
    using io::ValueKind;
    if (!v) return nb::none();
    switch (v->kind) {
        case ValueKind::None: return nb::none();
        case ValueKind::Bool: return nb::bool_(v->boolean);
        case ValueKind::Int: return nb::int_(v->integer);
        case ValueKind::BigInt: return nb::steal(PyLong_FromString(v->text.c_str(), nullptr, 10));
        case ValueKind::Float: return nb::float_(v->real);
        case ValueKind::String: return nb::str(v->text.data(), v->text.size());
        case ValueKind::Bytes: return nb::bytes(v->text.data(), v->text.size());
        case ValueKind::Tuple: {
            nb::list l;
            for (const io::Value* i : v->items) l.append(value_to_python(i));
            return nb::tuple(l);
        }
        case ValueKind::List:
        case ValueKind::Set: {
            nb::list l;
            for (const io::Value* i : v->items) l.append(value_to_python(i));
            return std::move(l);
        }
        case ValueKind::Dict: {
            nb::dict d;
            for (const auto& [k, val] : v->entries) {
                nb::object key = value_to_python(k);
                if (PyObject_Hash(key.ptr()) == -1) {  // a list or dict as a key: its text
                    PyErr_Clear();
                    key = nb::str(key);
                }
                d[key] = value_to_python(val);
            }
            return std::move(d);
        }
        case ValueKind::Tensor: {
            nb::dict d;
            d["__tensor__"] = std::string(io::dtype_name(v->dtype));
            d["shape"] = v->shape;
            return std::move(d);
        }
        case ValueKind::Storage: {
            nb::dict d;
            d["__storage__"] = v->text;
            d["dtype"] = std::string(io::dtype_name(v->dtype));
            return std::move(d);
        }
        case ValueKind::Global:
        case ValueKind::Object: {
            // Never imported or called: its name only.
            nb::dict d;
            d[v->kind == ValueKind::Global ? "__global__" : "__object__"] = v->qualified_name();
            return std::move(d);
        }
    }
    return nb::none();
}

struct PyCheckpoint {
    std::shared_ptr<const io::Checkpoint> c;

    const io::TensorEntry& entry(const std::string& name) const {
        const io::TensorEntry* e = c->find_tensor(name);
        if (!e) throw Error(c->path().string() + ": no tensor '" + name + "'", ErrorKind::Usage, c->path().string(), name);
        return *e;
    }

    std::vector<std::string> names(bool state_dict_only) const {
        std::vector<std::string> out;
        if (state_dict_only)
            for (const auto* e : c->state_dict_tensors()) out.push_back(e->name);
        else
            for (const auto& e : c->tensors()) out.push_back(e.name);
        return out;
    }

    nb::dict info(const std::string& name) const {
        const io::TensorEntry& e = entry(name);
        nb::dict d;
        d["name"] = e.name;
        d["path"] = e.path;
        d["dtype"] = std::string(io::dtype_name(e.dtype));
        d["shape"] = e.shape;
        d["stride"] = e.stride;
        d["encoding"] = std::string(io::encoding_name(e.encoding));
        d["in_state_dict"] = e.in_state_dict;
        d["requires_grad"] = e.requires_grad;
        d["is_parameter"] = e.is_parameter;
        d["shared_with"] = e.shared_with;
        d["nbytes"] = e.nbytes();
        d["stored_nbytes"] = e.stored_nbytes();
        d["shard"] = e.shard;
        d["viewable"] = e.encoding == io::TensorEncoding::Plain && numpy_dtype(e.dtype).has_value() && !e.is_broadcast_view();
        return d;
    }

    // The tensor's bytes in the memory map as a read-only NumPy array: no copy. Only for plain
    // tensors of a dtype NumPy has; the map stays alive as long as the array does.
    nb::object view(const std::string& name) const {
        const io::TensorEntry& e = entry(name);
        auto dt = numpy_dtype(e.dtype);
        if (e.encoding != io::TensorEncoding::Plain)
            throw Error(c->path().string() + ": tensor '" + name + "' is stored " + std::string(io::encoding_name(e.encoding)) +
                            ", not as plain elements: use decode() or codes()",
                        ErrorKind::Usage, c->path().string(), name);
        if (!dt)
            throw Error(c->path().string() + ": tensor '" + name + "' is " + std::string(io::dtype_name(e.dtype)) +
                            ", which NumPy has no type for: use decode() (float32)",
                        ErrorKind::Usage, c->path().string(), name);
        const io::MappedFile& file = c->file_of(e);
        const std::size_t elem = io::dtype_size(e.dtype);
        // The reader validated that every element the shape and strides reach lies in the storage.
        const std::byte* data = file.data() + e.storage_file_offset + static_cast<std::uint64_t>(e.storage_offset) * elem;
        auto* keep = new std::shared_ptr<const io::MappedFile>(c->shards().at(e.shard).file);
        nb::capsule owner(keep, [](void* p) noexcept { delete static_cast<std::shared_ptr<const io::MappedFile>*>(p); });
        std::vector<std::size_t> shape(e.shape.begin(), e.shape.end());
        nb::ndarray<nb::numpy, nb::ro> a(data, shape.size(), shape.data(), owner, e.stride.data(), *dt);
        return a.cast();
    }

    // Values converted to float32 (packed ternary decoded to code x scale, bfloat16 widened): a copy.
    nb::object decode(const std::string& name) const {
        const io::TensorEntry& e = entry(name);
        if (!io::dtype_is_floating(e.dtype) && e.encoding == io::TensorEncoding::Plain)
            throw Error(c->path().string() + ": tensor '" + name + "' is " + std::string(io::dtype_name(e.dtype)) +
                            ", not floating point: use view()",
                        ErrorKind::Usage, c->path().string(), name);
        io::TensorData data = c->data(e);
        auto* out = new float[static_cast<std::size_t>(std::max<std::int64_t>(data.numel(), 1))];
        nb::capsule owner(out, [](void* p) noexcept { delete[] static_cast<float*>(p); });
        {
            nb::gil_scoped_release release;
            data.read(0, data.numel(), out);
        }
        std::vector<std::size_t> shape(e.shape.begin(), e.shape.end());
        return nb::ndarray<nb::numpy, float>(out, shape.size(), shape.data(), owner).cast();
    }

    // Ternary codes (-1, 0, +1) of a packed tensor, as int8.
    nb::object codes(const std::string& name) const {
        const io::TensorEntry& e = entry(name);
        io::TensorData data = c->data(e);
        auto* out = new std::int8_t[static_cast<std::size_t>(std::max<std::int64_t>(data.numel(), 1))];
        nb::capsule owner(out, [](void* p) noexcept { delete[] static_cast<std::int8_t*>(p); });
        {
            nb::gil_scoped_release release;
            data.read_codes(0, data.numel(), out);
        }
        std::vector<std::size_t> shape(e.shape.begin(), e.shape.end());
        return nb::ndarray<nb::numpy, std::int8_t>(out, shape.size(), shape.data(), owner).cast();
    }

    nb::list findings() const {
        nb::list l;
        for (const auto& f : c->findings()) {
            nb::dict d;
            d["global"] = f.global;
            d["severity"] = f.severity == io::Severity::Critical ? "critical" : "warning";
            d["offset"] = f.offset;
            d["called"] = f.called;
            d["reason"] = f.reason;
            l.append(d);
        }
        return l;
    }
};

// ---------------------------------------------------------------------------------------------
// In-memory tensors: (name, array) pairs from Python, any C-contiguous CPU array (NumPy through
// the buffer protocol, torch through DLPack), viewed without a copy for the scan.

using AnyArray = nb::ndarray<nb::ro, nb::c_contig, nb::device::cpu>;

std::optional<io::DType> dtype_of(const nb::dlpack::dtype& d) {
    using nb::dlpack::dtype_code;
    const auto code = static_cast<dtype_code>(d.code);
    if (d.lanes != 1) return std::nullopt;
    if (code == dtype_code::Float) return d.bits == 64 ? io::DType::F64 : d.bits == 32 ? io::DType::F32 : d.bits == 16 ? std::optional(io::DType::F16) : std::nullopt;
    if (code == dtype_code::Bfloat && d.bits == 16) return io::DType::BF16;
    if (code == dtype_code::Int)
        return d.bits == 64 ? io::DType::I64 : d.bits == 32 ? io::DType::I32 : d.bits == 16 ? io::DType::I16 : d.bits == 8 ? std::optional(io::DType::I8) : std::nullopt;
    if (code == dtype_code::UInt)
        return d.bits == 8 ? io::DType::U8 : d.bits == 16 ? io::DType::U16 : d.bits == 32 ? io::DType::U32 : d.bits == 64 ? std::optional(io::DType::U64) : std::nullopt;
    if (code == dtype_code::Bool) return io::DType::Bool;
    return std::nullopt;
}

ScanResult scan_arrays(const std::vector<std::pair<std::string, AnyArray>>& arrays, const Options& options,
                       const std::string& label, std::optional<std::int64_t> step, nb::object progress) {
    CallState state{std::move(progress)};
    analysis::ScanOptions so = options.scan(state);
    std::vector<analysis::NamedTensor> tensors;
    tensors.reserve(arrays.size());
    for (const auto& [name, a] : arrays) {
        auto dt = dtype_of(a.dtype());
        if (!dt) continue;  // complex and other types: the scan would leave them out too
        std::vector<std::int64_t> shape;
        for (std::size_t i = 0; i < a.ndim(); ++i) shape.push_back(static_cast<std::int64_t>(a.shape(i)));
        const auto* bytes = static_cast<const std::byte*>(a.data());
        tensors.push_back({name, io::TensorData(std::span<const std::byte>(bytes, a.nbytes()), *dt, std::move(shape))});
    }
    analysis::MemoryScanInfo info{label, step};
    return ScanResult{without_gil(state, [&] { return analysis::scan_tensors(tensors, so, info); })};
}

}  // namespace
}  // namespace bitfsck::python

NB_MODULE(_bitfsck, m) {
    using namespace bitfsck;
    using namespace bitfsck::python;
    m.doc() = "bitfsck's C++ libraries (io/, analysis/); use the bitfsck package, not this module.";

    nb::register_exception_translator([](const std::exception_ptr& p, void*) {
        try {
            std::rethrow_exception(p);
        } catch (const Error& e) {
            raise_bitfsck_error(e);
        } catch (const nlohmann::json::exception& e) {
            raise_bitfsck_error(Error(std::string("JSON: ") + e.what(), ErrorKind::Usage));
        }
    });

    m.attr("__version__") = std::string(tool_version());
    m.attr("JSON_SCHEMA_VERSION") = analysis::kJsonSchemaVersion;

    nb::class_<Options>(m, "Options")
        .def(nb::init<>())
        .def_rw("quantizer", &Options::quantizer)
        .def_rw("thresholds", &Options::thresholds)
        .def_rw("threads", &Options::threads)
        .def_rw("layers", &Options::layers)
        .def_rw("roles", &Options::roles)
        .def_rw("match", &Options::match)
        .def_rw("content_hash", &Options::content_hash)
        .def_rw("i2s_layout", &Options::i2s_layout)
        .def_rw("trusted", &Options::trusted);

    nb::class_<ScanResult>(m, "ScanResult")
        .def("json", &ScanResult::json, "histograms"_a = true, "The report as the CLI's scan --json prints it.")
        .def_prop_ro("verdict", [](const ScanResult& r) { return std::string(analysis::verdict_name(r.report.verdict)); })
        .def_prop_ro("file", [](const ScanResult& r) { return r.report.file; })
        .def_prop_ro("step", [](const ScanResult& r) { return r.report.step; });

    nb::class_<ReportSeries>(m, "ReportSeries")
        .def(nb::init<>())
        .def("add", &ReportSeries::add)
        .def("__len__", &ReportSeries::size)
        .def("timeline_json", &ReportSeries::timeline_json);

    nb::class_<PyCheckpoint>(m, "Checkpoint")
        .def_prop_ro("path", [](const PyCheckpoint& p) { return p.c->path().string(); })
        .def_prop_ro("format", [](const PyCheckpoint& p) { return std::string(io::format_name(p.c->format())); })
        .def_prop_ro("sharded", [](const PyCheckpoint& p) { return p.c->sharded(); })
        .def_prop_ro("shards", [](const PyCheckpoint& p) {
            std::vector<std::string> out;
            for (const auto& s : p.c->shards()) out.push_back(s.path.string());
            return out;
        })
        .def_prop_ro("size", [](const PyCheckpoint& p) { return p.c->total_size(); })
        .def_prop_ro("state_dict_path", [](const PyCheckpoint& p) { return p.c->state_dict_path(); })
        .def_prop_ro("step", [](const PyCheckpoint& p) { return p.c->step(); })
        .def_prop_ro("pickle_protocol", [](const PyCheckpoint& p) { return p.c->pickle_protocol(); })
        .def_prop_ro("notes", [](const PyCheckpoint& p) { return p.c->notes(); })
        .def_prop_ro("warnings", [](const PyCheckpoint& p) { return p.c->warnings(); })
        .def_prop_ro("metadata", [](const PyCheckpoint& p) { return p.c->metadata(); })
        .def_prop_ro("findings", &PyCheckpoint::findings)
        .def_prop_ro("tree", [](const PyCheckpoint& p) { return value_to_python(p.c->root()); })
        .def("names", &PyCheckpoint::names, "state_dict_only"_a = true)
        .def("info", &PyCheckpoint::info, "name"_a)
        .def("view", &PyCheckpoint::view, "name"_a)
        .def("decode", &PyCheckpoint::decode, "name"_a)
        .def("codes", &PyCheckpoint::codes, "name"_a);

    m.def(
        "open",
        [](const std::string& path, const std::string& i2s_layout, const std::vector<std::string>& trusted) {
            io::OpenOptions o = open_options_of(i2s_layout, trusted);
            nb::gil_scoped_release release;
            return PyCheckpoint{std::make_shared<const io::Checkpoint>(io::Checkpoint::open(path, o))};
        },
        "path"_a, "i2s_layout"_a = "act-parallel", "trusted"_a = std::vector<std::string>{});

    // One input, scanned as `bitfsck scan` scans it (analysis::scan_run), or a list of them.
    m.def(
        "scan_paths",
        [](const std::vector<std::string>& inputs, const Options& options, nb::object progress) {
            CallState state{std::move(progress)};
            analysis::RunScanOptions ro;
            ro.scan = options.scan(state);
            ro.open = open_options_of(options.i2s_layout, options.trusted);
            std::vector<analysis::RunMember> members = without_gil(state, [&] { return analysis::scan_run(inputs, ro); });
            std::vector<ScanResult> out;
            for (auto& mem : members) {
                if (!mem.report) throw Error(mem.error, mem.error_kind, mem.input.string());
                out.push_back(ScanResult{std::move(*mem.report)});
            }
            return out;
        },
        "inputs"_a, "options"_a, "progress"_a = nb::none());

    m.def(
        "scan_checkpoint",
        [](const PyCheckpoint& ckpt, const Options& options, nb::object progress) {
            CallState state{std::move(progress)};
            analysis::ScanOptions so = options.scan(state);
            return ScanResult{without_gil(state, [&] { return analysis::scan_checkpoint(*ckpt.c, so); })};
        },
        "checkpoint"_a, "options"_a, "progress"_a = nb::none());

    m.def("scan_arrays", &scan_arrays, "arrays"_a, "options"_a, "label"_a = "<memory>", "step"_a = nb::none(),
          "progress"_a = nb::none());

    m.def(
        "timeline",
        [](const std::vector<std::string>& inputs, const Options& options, nb::object progress) {
            CallState state{std::move(progress)};
            analysis::RunScanOptions ro;
            ro.scan = options.scan(state);
            ro.open = open_options_of(options.i2s_layout, options.trusted);
            return without_gil(state, [&] {
                const auto members = analysis::scan_run(inputs, ro);
                return analysis::dump_json(analysis::to_json(analysis::timeline_of(members)));
            });
        },
        "inputs"_a, "options"_a, "progress"_a = nb::none());

    m.def(
        "diff",
        [](const std::string& a, const std::string& b, const Options& options, nb::object progress) {
            CallState state{std::move(progress)};
            const auto q = quantizer_of(options.quantizer);
            const auto sel = selection_of(options.layers, options.roles, options.match);
            const io::OpenOptions o = open_options_of(options.i2s_layout, options.trusted);
            const ProgressCallback cb = progress_of(&state);
            return without_gil(state, [&] {
                const io::Checkpoint ca = io::Checkpoint::open(a, o), cb_ = io::Checkpoint::open(b, o);
                return analysis::dump_json(analysis::to_json(analysis::diff_checkpoints(ca, cb_, q, options.threads, cb, sel)));
            });
        },
        "a"_a, "b"_a, "options"_a, "progress"_a = nb::none());

    m.def(
        "step_from_file_name", [](const std::string& file) { return analysis::step_from_file_name(file); }, "file"_a);
}
