#pragma once
// Writing pickles that PyTorch reads back: a small protocol-2 pickler for what a state dict or a
// checkpoint holds (plain values, containers, tensors and parameters by persistent id), and a
// re-emitter that copies an existing pickle op tree into a fresh pickle, optionally dropping
// top-level entries or rewriting legacy storage ids, without interpreting (or running) any of it.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bitfsck/io/dtype.hpp"

namespace bitfsck::io {

// A Python value to pickle. Dict keeps insertion order; OrderedDict is pickled as
// collections.OrderedDict (what nn.Module.state_dict() returns).
struct PyValue {
    enum class Kind : std::uint8_t { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, OrderedDict };
    Kind kind = Kind::None;
    bool boolean = false;
    std::int64_t integer = 0;
    double real = 0.0;
    std::string text;  // Str (UTF-8) or Bytes (raw)
    std::vector<PyValue> items;
    std::vector<std::pair<PyValue, PyValue>> entries;

    static PyValue none() { return {}; }
    static PyValue from_bool(bool b) { PyValue v; v.kind = Kind::Bool; v.boolean = b; return v; }
    static PyValue from_int(std::int64_t i) { PyValue v; v.kind = Kind::Int; v.integer = i; return v; }
    static PyValue from_float(double d) { PyValue v; v.kind = Kind::Float; v.real = d; return v; }
    static PyValue str(std::string s) { PyValue v; v.kind = Kind::Str; v.text = std::move(s); return v; }
    static PyValue bytes(std::string b) { PyValue v; v.kind = Kind::Bytes; v.text = std::move(b); return v; }
    static PyValue tuple(std::vector<PyValue> items) { PyValue v; v.kind = Kind::Tuple; v.items = std::move(items); return v; }
    static PyValue list(std::vector<PyValue> items) { PyValue v; v.kind = Kind::List; v.items = std::move(items); return v; }
    static PyValue dict(std::vector<std::pair<PyValue, PyValue>> e = {}) { PyValue v; v.kind = Kind::Dict; v.entries = std::move(e); return v; }
    static PyValue ordered_dict(std::vector<std::pair<PyValue, PyValue>> e = {}) {
        PyValue v; v.kind = Kind::OrderedDict; v.entries = std::move(e); return v;
    }
};

// One tensor as torch.save pickles it: a view (offset, shape, stride in elements) of a storage
// record `storage_key` holding `storage_numel` elements of `dtype`.
struct PickledTensor {
    std::string storage_key;
    DType dtype = DType::F32;
    std::int64_t storage_numel = 0;
    std::int64_t storage_offset = 0;
    std::vector<std::int64_t> shape;
    std::vector<std::int64_t> stride;
    bool parameter = false;      // wrapped in torch._utils._rebuild_parameter
    bool requires_grad = false;  // the parameter's flag (the inner tensor never requires grad, as torch writes it)
};

// The dtypes torch.save writes with a typed storage class (torch.<X>Storage); the others
// (uint16/32/64, float8) need torch ≥ 2.1's untyped-storage form and are refused.
bool pt_writable_dtype(DType t);

// Low-level protocol-2 emitter. Globals are memoized so each is written once.
class PickleWriter {
public:
    explicit PickleWriter(int protocol = 2);

    void none();
    void boolean(bool b);
    void integer(std::int64_t i);
    void real(double d);
    void str(std::string_view utf8);
    void bytes(std::string_view raw);  // protocol-2 style: _codecs.encode(latin-1 text, 'latin1')
    void global(std::string_view module, std::string_view name);
    void mark();
    void tuple_from_mark();
    void tuple(std::size_t n);  // the top n values (0..3 use the short opcodes)
    void empty_list();
    void appends_from_mark();
    void empty_dict();
    void setitems_from_mark();
    void reduce();
    void newobj();
    void build();
    void binpersid();
    void pop();
    std::uint32_t put();  // memoizes the top of the stack; returns its index
    void get(std::uint32_t index);
    void raw(std::string_view op_bytes);  // an already-encoded opcode with its argument

    void value(const PyValue& v);
    void tensor(const PickledTensor& t);

    std::string finish();  // appends STOP and returns the pickle

private:
    std::string out_;
    std::uint32_t next_memo_ = 0;
    std::map<std::string, std::uint32_t> global_memo_;
};

// A state dict (OrderedDict of name -> tensor) as torch.save pickles it, optionally as the value
// of `state_dict_key` in a top-level dict with `extra` entries after it.
struct PickledStateDict {
    std::vector<std::pair<std::string, PickledTensor>> tensors;
    std::string state_dict_key;  // empty: the state dict is the root
    std::vector<std::pair<std::string, PyValue>> extra;
};
std::string pickle_state_dict(const PickledStateDict& sd);

// ---- re-emitting an existing pickle ----

struct RepickleOptions {
    std::string source_name;  // for error messages ("ckpt.pt:archive/data.pkl")
    // Top-level dict entries with a str key for which this returns true are left out.
    std::function<bool(std::string_view key)> drop_top_level_key;
    // Legacy torch.save persistent ids carry a sixth element (view metadata): write the
    // five-element id the zip format uses. Views of storages are refused.
    bool legacy_storage_ids = false;
};

struct RepickleResult {
    std::string pickle;
    std::vector<std::string> dropped_keys;             // top-level keys left out
    std::vector<std::string> storage_keys;             // storage keys the new pickle references, first use first
    std::map<std::string, DType> storage_dtypes;        // their element types (from the storage class)
};

// Parses `pickle` (protocols 0-5) into an op tree without running anything and emits it again
// with a fresh memo: every global, call, BUILD state and container is carried over as written.
// Throws FormatError (naming options.source_name) for malformed input or ops it cannot carry
// (extension registry codes, out-of-band buffers).
RepickleResult repickle(std::span<const std::byte> pickle, const RepickleOptions& options);

}  // namespace bitfsck::io
