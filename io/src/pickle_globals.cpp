// The allow-list of globals and what calling each one means. The list is what torch.save itself
// writes (tensor rebuild functions, storage classes, OrderedDict) plus the plain containers and
// value types that training checkpoints carry; every other global stays an opaque object and is
// reported. Nothing here imports or runs anything: each meaning is computed from the arguments.
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "bitfsck/io/dtype.hpp"
#include "bitfsck/io/pickle.hpp"
#include "pickle_machine.hpp"

namespace bitfsck::io {
namespace detail {
namespace {

enum class Meaning : std::uint8_t {
    None,           // not allowed
    Opaque,         // allowed, kept as an Object (argparse.Namespace, numpy.dtype, complex, ...)
    ReferenceOnly,  // allowed as an argument (storage classes, dtypes, object); calling it is reported
    OrderedDict, Dict, List, Tuple, Set, Slice, Bytes, CodecsEncode,
    Reconstructor, NewObj, NewObjEx,
    RebuildTensor, RebuildParameter, RebuildFromType, Parameter, Device, Size,
    NumpyScalar,
    DefaultDict, Counter, DateTime, Path,  // standard-library data types (pickle_stdlib.cpp)
};

struct Entry {
    std::string_view module, name;
    Meaning meaning;
};

constexpr std::array kAllowed = {
    Entry{"collections", "OrderedDict", Meaning::OrderedDict},
    Entry{"torch._utils", "_rebuild_tensor", Meaning::RebuildTensor},
    Entry{"torch._utils", "_rebuild_tensor_v2", Meaning::RebuildTensor},
    Entry{"torch._utils", "_rebuild_tensor_v3", Meaning::RebuildTensor},
    Entry{"torch._utils", "_rebuild_parameter", Meaning::RebuildParameter},
    Entry{"torch._utils", "_rebuild_parameter_with_state", Meaning::RebuildParameter},
    Entry{"torch._tensor", "_rebuild_from_type_v2", Meaning::RebuildFromType},
    Entry{"torch._tensor", "_rebuild_from_type", Meaning::RebuildFromType},
    Entry{"torch.nn.parameter", "Parameter", Meaning::Parameter},
    Entry{"torch", "device", Meaning::Device},
    Entry{"torch", "Size", Meaning::Size},
    Entry{"torch", "Tensor", Meaning::ReferenceOnly},
    Entry{"torch.storage", "UntypedStorage", Meaning::ReferenceOnly},
    Entry{"torch", "UntypedStorage", Meaning::ReferenceOnly},
    Entry{"_codecs", "encode", Meaning::CodecsEncode},
    Entry{"builtins", "set", Meaning::Set},
    Entry{"builtins", "frozenset", Meaning::Set},
    Entry{"builtins", "slice", Meaning::Slice},
    Entry{"builtins", "complex", Meaning::Opaque},
    Entry{"builtins", "bytearray", Meaning::Bytes},
    Entry{"builtins", "bytes", Meaning::Bytes},
    Entry{"builtins", "list", Meaning::List},
    Entry{"builtins", "tuple", Meaning::Tuple},
    Entry{"builtins", "dict", Meaning::Dict},
    Entry{"builtins", "object", Meaning::ReferenceOnly},
    Entry{"copyreg", "_reconstructor", Meaning::Reconstructor},
    Entry{"copyreg", "__newobj__", Meaning::NewObj},
    Entry{"copyreg", "__newobj_ex__", Meaning::NewObjEx},
    Entry{"numpy.core.multiarray", "scalar", Meaning::NumpyScalar},
    Entry{"numpy._core.multiarray", "scalar", Meaning::NumpyScalar},
    Entry{"numpy.core.multiarray", "_reconstruct", Meaning::Opaque},
    Entry{"numpy._core.multiarray", "_reconstruct", Meaning::Opaque},
    Entry{"numpy", "ndarray", Meaning::Opaque},
    Entry{"numpy", "dtype", Meaning::Opaque},
    Entry{"argparse", "Namespace", Meaning::Opaque},
    // Builtin types: referenced as a defaultdict's factory or a config value; never called by pickle.
    Entry{"builtins", "int", Meaning::ReferenceOnly},
    Entry{"builtins", "float", Meaning::ReferenceOnly},
    Entry{"builtins", "str", Meaning::ReferenceOnly},
    Entry{"builtins", "bool", Meaning::ReferenceOnly},
    // Standard-library data types that training scripts save (docs/allow-list.md).
    Entry{"collections", "defaultdict", Meaning::DefaultDict},
    Entry{"collections", "Counter", Meaning::Counter},
    Entry{"datetime", "datetime", Meaning::DateTime},
    Entry{"datetime", "date", Meaning::DateTime},
    Entry{"datetime", "time", Meaning::DateTime},
    Entry{"datetime", "timedelta", Meaning::DateTime},
    Entry{"datetime", "timezone", Meaning::DateTime},
    Entry{"pathlib", "Path", Meaning::Path},
    Entry{"pathlib", "PosixPath", Meaning::Path},
    Entry{"pathlib", "WindowsPath", Meaning::Path},
    Entry{"pathlib", "PurePath", Meaning::Path},
    Entry{"pathlib", "PurePosixPath", Meaning::Path},
    Entry{"pathlib", "PureWindowsPath", Meaning::Path},
    // Python 3.13 moved the classes to pathlib._local (their __module__, which pickle writes).
    Entry{"pathlib._local", "Path", Meaning::Path},
    Entry{"pathlib._local", "PosixPath", Meaning::Path},
    Entry{"pathlib._local", "WindowsPath", Meaning::Path},
    Entry{"pathlib._local", "PurePath", Meaning::Path},
    Entry{"pathlib._local", "PurePosixPath", Meaning::Path},
    Entry{"pathlib._local", "PureWindowsPath", Meaning::Path},
};

Meaning meaning_of(std::string_view module, std::string_view name) {
    for (const auto& e : kAllowed)
        if (e.module == module && e.name == name) return e.meaning;
    // torch.FloatStorage & co. and torch.float32 & co.: the names dtype.hpp knows.
    if (module == "torch" && (dtype_from_storage_class(name) || dtype_from_torch_name(name)))
        return Meaning::ReferenceOnly;
    return Meaning::None;
}

bool in_module(std::string_view module, std::string_view root) {
    return module == root || (module.size() > root.size() && module.starts_with(root) && module[root.size()] == '.');
}

constexpr std::int64_t kMaxZeroBytes = 1 << 20;

std::string at_offset(std::uint64_t at) { return " at pickle offset " + std::to_string(at); }

bool truthy(const Value* v) {
    switch (v->kind) {
        case ValueKind::None: return false;
        case ValueKind::Bool: return v->boolean;
        case ValueKind::Int: return v->integer != 0;
        case ValueKind::Float: return v->real != 0.0;
        case ValueKind::String:
        case ValueKind::Bytes: return !v->text.empty();
        case ValueKind::Tuple:
        case ValueKind::List:
        case ValueKind::Set: return !v->items.empty();
        case ValueKind::Dict: return !v->entries.empty();
        default: return true;
    }
}

// BUILD states that say nothing: None, {}, or (None/{} , None/{}) as (state, slotstate).
bool trivial_state(const Value* s) {
    if (s->kind == ValueKind::None) return true;
    if (s->kind == ValueKind::Dict) return s->entries.empty();
    if (s->kind == ValueKind::Tuple && s->items.size() == 2)
        return trivial_state(s->items[0]) && trivial_state(s->items[1]);
    return false;
}

}  // namespace

Value* opaque(PickleMachine& m, const Value* callee, Value* args, std::uint64_t at) {
    Value* obj = m.make(ValueKind::Object, at);
    obj->module = callee->module;
    obj->name = callee->name;
    obj->args = args;
    m.nest(obj, args);
    return obj;
}

namespace {

// The items of an iterable argument (list(x), set(x), torch.Size(x)...): lists, tuples, sets, dict keys.
std::vector<Value*> items_of(PickleMachine& m, const Value* v, const std::string& what, std::uint64_t at) {
    switch (v->kind) {
        case ValueKind::List:
        case ValueKind::Tuple:
        case ValueKind::Set: return v->items;
        case ValueKind::Dict: {
            std::vector<Value*> keys;
            for (const auto& e : v->entries) keys.push_back(e.first);
            return keys;
        }
        default: m.fail(what + at_offset(at) + " cannot iterate over " + a_kind(v));
    }
}

Value* container(PickleMachine& m, ValueKind kind, std::vector<Value*> items, std::uint64_t at) {
    Value* v = m.make(kind, at);
    for (Value* item : items) m.nest(v, item);
    v->items = std::move(items);
    return v;
}

void fill_dict(PickleMachine& m, Value* d, const Value* source, const std::string& what, std::uint64_t at) {
    if (source->kind == ValueKind::Dict) {
        for (const auto& [k, v] : source->entries) m.dict_set(d, k, v);
        return;
    }
    for (Value* pair : items_of(m, source, what, at)) {
        if ((pair->kind != ValueKind::Tuple && pair->kind != ValueKind::List) || pair->items.size() != 2)
            m.fail(what + at_offset(at) + ": a dict item is " + a_kind(pair) + ", not a pair");
        m.dict_set(d, pair->items[0], pair->items[1]);
    }
}

std::int64_t int_arg(PickleMachine& m, const Value* v, const std::string& what, std::uint64_t at) {
    if (v->kind != ValueKind::Int) m.fail(what + at_offset(at) + " is " + a_kind(v) + ", not an int");
    return v->integer;
}

std::vector<std::int64_t> int_list(PickleMachine& m, const Value* v, const std::string& what, std::uint64_t at) {
    if (v->kind != ValueKind::Tuple && v->kind != ValueKind::List)
        m.fail(what + at_offset(at) + " is " + a_kind(v) + ", not a tuple of ints");
    std::vector<std::int64_t> out;
    out.reserve(v->items.size());
    for (const Value* item : v->items) out.push_back(int_arg(m, item, what, at));
    return out;
}

Value* make_bytes(PickleMachine& m, std::string bytes, std::uint64_t at) {
    m.add_bytes(bytes.size());
    Value* v = m.make(ValueKind::Bytes, at);
    v->text = std::move(bytes);
    return v;
}

// codecs.encode(text, encoding) for the encodings pickles use for bytes (protocol 0-2 writes
// bytes as _codecs.encode(latin-1 text, 'latin1')).
Value* encode_text(PickleMachine& m, const Value* text, const Value* encoding, const std::string& what,
                   std::uint64_t at) {
    if (text->kind != ValueKind::String)
        m.fail(what + at_offset(at) + " encodes " + a_kind(text) + ", not a str");
    std::string codec = "utf-8";
    if (encoding) {
        if (encoding->kind != ValueKind::String) m.fail(what + at_offset(at) + ": the encoding is not a str");
        codec = encoding->text;
    }
    std::transform(codec.begin(), codec.end(), codec.begin(),
                   [](char c) { return c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
    std::string out;
    if (codec == "latin1" || codec == "latin-1" || codec == "iso-8859-1" || codec == "iso8859-1" || codec == "l1") {
        if (!latin1_encode(text->text, out))
            m.fail(what + at_offset(at) + ": the text has characters beyond Latin-1");
    } else if (codec == "utf-8" || codec == "utf8") {
        out = text->text;
    } else if (codec == "ascii" || codec == "us-ascii") {
        if (!std::all_of(text->text.begin(), text->text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }))
            m.fail(what + at_offset(at) + ": the text is not ASCII");
        out = text->text;
    } else {
        m.fail(what + at_offset(at) + ": unsupported codec '" + encoding->text + "'");
    }
    return make_bytes(m, std::move(out), at);
}

// bytes(...) and bytearray(...): (), (bytes), (str, encoding), (iterable of ints), (count).
Value* make_bytes_from(PickleMachine& m, const std::vector<Value*>& a, const std::string& what, std::uint64_t at) {
    if (a.empty()) return make_bytes(m, {}, at);
    const Value* src = a[0];
    switch (src->kind) {
        case ValueKind::Bytes: return make_bytes(m, src->text, at);
        case ValueKind::String: return encode_text(m, src, a.size() > 1 ? a[1] : nullptr, what, at);
        case ValueKind::Int: {
            // bytes(n) is n zero bytes that the pickle does not contain: a few bytes of pickle could
            // claim gigabytes, and no checkpoint writer produces this form.
            if (src->integer < 0 || src->integer > kMaxZeroBytes)
                m.fail(what + at_offset(at) + ": a count of " + std::to_string(src->integer) +
                       " zero bytes is outside 0.." + std::to_string(kMaxZeroBytes));
            m.add_bytes(static_cast<std::uint64_t>(src->integer));
            Value* v = m.make(ValueKind::Bytes, at);
            v->text.assign(static_cast<std::size_t>(src->integer), '\0');
            return v;
        }
        default: {
            std::string out;
            for (const Value* item : items_of(m, src, what, at)) {
                if (item->kind != ValueKind::Int || item->integer < 0 || item->integer > 255)
                    m.fail(what + at_offset(at) + ": a byte value is not an int in 0..255");
                out += static_cast<char>(item->integer);
            }
            return make_bytes(m, std::move(out), at);
        }
    }
}

Value* rebuild_tensor(PickleMachine& m, const Value* callee, const std::vector<Value*>& a, std::uint64_t at) {
    const std::string fn = callee->qualified_name();
    if (a.size() < 4)
        m.fail(fn + at_offset(at) + " has " + std::to_string(a.size()) + " arguments, expected at least 4");
    Value* storage = a[0];
    if (storage->kind != ValueKind::Storage)
        m.fail(fn + at_offset(at) + ": the storage argument is " + a_kind(storage));
    const std::int64_t offset = int_arg(m, a[1], fn + " storage_offset", at);
    auto shape = int_list(m, a[2], fn + " size", at);
    auto stride = int_list(m, a[3], fn + " stride", at);
    if (shape.size() != stride.size())
        m.fail(fn + at_offset(at) + ": size has " + std::to_string(shape.size()) + " dimensions but stride has " +
               std::to_string(stride.size()));
    if (offset < 0 || std::any_of(shape.begin(), shape.end(), [](std::int64_t n) { return n < 0; }))
        m.fail(fn + at_offset(at) + ": negative storage offset or size");
    Value* t = m.make(ValueKind::Tensor, at);
    t->dtype = storage->dtype;
    if (callee->name == "_rebuild_tensor_v3" && a.size() > 6 && a[6]->kind == ValueKind::Global) {
        // v3 carries the tensor's dtype explicitly (its storage is untyped).
        auto d = dtype_from_torch_name(a[6]->name);
        if (!d) m.fail(fn + at_offset(at) + ": unknown dtype " + a[6]->qualified_name());
        t->dtype = *d;
    }
    if (__builtin_add_overflow(offset, storage->storage_offset, &t->storage_offset))
        m.fail(fn + at_offset(at) + ": storage offset overflows");
    t->shape = std::move(shape);
    t->stride = std::move(stride);
    t->requires_grad = a.size() > 4 && truthy(a[4]);
    t->storage = storage;
    return t;
}

Value* as_parameter(PickleMachine& m, const Value* tensor, bool requires_grad, std::uint64_t at) {
    Value* p = m.make(ValueKind::Tensor, at);
    const std::uint64_t offset = p->offset;
    *p = *tensor;  // a copy: the memo may share the plain tensor elsewhere
    p->offset = offset;
    p->is_parameter = true;
    p->requires_grad = requires_grad;
    return p;
}

double half_to_double(std::uint16_t h) {
    const int exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
    double v;
    if (exponent == 0) v = std::ldexp(mantissa, -24);
    else if (exponent == 31) v = mantissa ? std::numeric_limits<double>::quiet_NaN() : HUGE_VAL;
    else v = std::ldexp(mantissa + 1024, exponent - 25);
    return (h & 0x8000) ? -v : v;
}

// numpy.core.multiarray.scalar(dtype, raw bytes): a numpy scalar (a float64 learning rate, an
// int64 step). The dtype object is numpy.dtype(code, False, True) with BUILD state
// (version, byte order, ...). Returns nullptr for dtypes bitfsck does not decode.
Value* numpy_scalar(PickleMachine& m, const std::vector<Value*>& a, std::uint64_t at) {
    if (a.size() < 2) return nullptr;
    const Value* dtype = a[0];
    const Value* raw = a[1];
    if (dtype->kind != ValueKind::Object || dtype->qualified_name() != "numpy.dtype" || !dtype->args ||
        dtype->args->items.empty() || dtype->args->items[0]->kind != ValueKind::String ||
        (raw->kind != ValueKind::Bytes && raw->kind != ValueKind::String))
        return nullptr;
    const std::string& code = dtype->args->items[0]->text;
    if (code.size() != 2 || !std::strchr("fiub", code[0]) || code[1] < '1' || code[1] > '8') return nullptr;
    const char kind = code[0];
    const std::size_t size = static_cast<std::size_t>(code[1] - '0');
    const bool valid = (kind == 'f' && (size == 2 || size == 4 || size == 8)) || (kind == 'b' && size == 1) ||
                       ((kind == 'i' || kind == 'u') && (size == 1 || size == 2 || size == 4 || size == 8));
    if (!valid) return nullptr;
    if (raw->text.size() != size)
        m.fail("numpy scalar" + at_offset(at) + " has " + std::to_string(raw->text.size()) + " bytes for dtype '" +
               code + "'");
    bool big_endian = false;
    if (dtype->state && dtype->state->kind == ValueKind::Tuple && dtype->state->items.size() > 1 &&
        dtype->state->items[1]->kind == ValueKind::String)
        big_endian = dtype->state->items[1]->text == ">";
    std::uint64_t bits = 0;
    for (std::size_t i = 0; i < size; ++i) {
        const auto byte = static_cast<std::uint64_t>(static_cast<unsigned char>(raw->text[big_endian ? i : size - 1 - i]));
        bits = (bits << 8) | byte;
    }
    Value* v = m.make(ValueKind::Int, at);
    if (kind == 'b') {
        v->kind = ValueKind::Bool;
        v->boolean = bits != 0;
    } else if (kind == 'f') {
        v->kind = ValueKind::Float;
        v->real = size == 2 ? half_to_double(static_cast<std::uint16_t>(bits))
                : size == 4 ? static_cast<double>(std::bit_cast<float>(static_cast<std::uint32_t>(bits)))
                            : std::bit_cast<double>(bits);
    } else if (kind == 'i') {
        const unsigned shift = static_cast<unsigned>(64 - 8 * size);
        v->integer = static_cast<std::int64_t>(bits << shift) >> shift;  // sign-extend
    } else if (bits > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        v->kind = ValueKind::BigInt;
        v->text = std::to_string(bits);
    } else {
        v->integer = static_cast<std::int64_t>(bits);
    }
    return v;
}

}  // namespace

std::pair<std::string, std::string> canonical_global(std::string_view module, std::string_view name) {
    // CPython's Lib/_compat_pickle.py: the NAME_MAPPING entries of __builtin__ first (protocol 2
    // writes int as __builtin__.long), then the IMPORT_MAPPING entries whose modules run code or
    // hold classes the allow-list knows (the GUI and network modules keep their Python 2 names:
    // they are findings either way).
    static constexpr std::array<std::array<std::string_view, 3>, 7> builtin_names = {{
        {"long", "builtins", "int"}, {"unicode", "builtins", "str"}, {"basestring", "builtins", "str"},
        {"xrange", "builtins", "range"}, {"unichr", "builtins", "chr"}, {"reduce", "functools", "reduce"},
        {"intern", "sys", "intern"},
    }};
    if (module == "__builtin__")
        for (const auto& [from, to_module, to_name] : builtin_names)
            if (name == from) return {std::string(to_module), std::string(to_name)};
    static constexpr std::array<std::array<std::string_view, 2>, 9> modules = {{
        {"__builtin__", "builtins"}, {"copy_reg", "copyreg"}, {"commands", "subprocess"}, {"cPickle", "pickle"},
        {"UserDict", "collections"}, {"UserList", "collections"}, {"UserString", "collections"}, {"thread", "_thread"},
        {"exceptions", "builtins"},
    }};
    for (const auto& [from, to] : modules)
        if (module == from) return {std::string(to), module == "UserDict" && name == "IterableUserDict" ? "UserDict" : std::string(name)};
    return {std::string(module), std::string(name)};
}

std::pair<Severity, std::string> classify_global(std::string_view module, std::string_view name) {
    using S = Severity;
    if (in_module(module, "os") || in_module(module, "posix") || in_module(module, "nt")) {
        static constexpr std::array shell = {"system", "popen", "execl", "execle", "execlp", "execlpe", "execv",
                                             "execve", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp",
                                             "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "posix_spawn",
                                             "posix_spawnp", "startfile", "fork", "forkpty"};
        if (std::find(shell.begin(), shell.end(), name) != shell.end()) return {S::Critical, "run a shell command"};
        return {S::Critical, "call an operating-system function (files, processes, environment)"};
    }
    if (in_module(module, "subprocess") || in_module(module, "_posixsubprocess") || in_module(module, "pty"))
        return {S::Critical, "start a process"};
    if (in_module(module, "sys")) return {S::Critical, "change the Python interpreter's state"};
    if (in_module(module, "shutil")) return {S::Critical, "copy, move or delete files"};
    if (in_module(module, "socket")) return {S::Critical, "open a network connection"};
    if (in_module(module, "importlib") || in_module(module, "runpy")) return {S::Critical, "import or run any module"};
    if (in_module(module, "ctypes")) return {S::Critical, "call native code"};
    if (in_module(module, "pickle") || in_module(module, "_pickle") || in_module(module, "marshal"))
        return {S::Critical, "unpickle nested data, which can run code"};
    if (in_module(module, "code")) return {S::Critical, "run arbitrary Python code"};
    if (in_module(module, "webbrowser")) return {S::Critical, "open a web browser"};
    // The path classes are data (allowed); their methods (Path.unlink, Path.write_text, ...) act on files.
    if (in_module(module, "pathlib")) return {S::Critical, "read, write or delete files"};
    if (module == "builtins") {
        if (name == "eval" || name == "exec" || name == "compile" || name == "execfile" || name == "apply")
            return {S::Critical, "run arbitrary Python code"};
        if (name == "open") return {S::Critical, "open a file"};
        if (name == "getattr" || name == "setattr" || name == "delattr")
            return {S::Critical, "reach any attribute of any object (a step towards running code)"};
        if (name == "__import__") return {S::Critical, "import any module"};
        if (name == "globals" || name == "locals" || name == "vars")
            return {S::Critical, "expose or change the interpreter's variables"};
        if (name == "input" || name == "breakpoint") return {S::Critical, "stop and read from the terminal"};
    }
    if (module == "torch" && name == "load") return {S::Critical, "load another pickle, which can run code"};
    if (in_module(module, "torch.jit")) return {S::Critical, "load or run TorchScript code"};
    if (in_module(module, "torch._C") || in_module(module, "torch.ops")) return {S::Critical, "call internal torch operations"};
    if (in_module(module, "torch.hub")) return {S::Critical, "download and run code"};
    if (module == "numpy" && name == "load") return {S::Critical, "load another file, possibly a pickle"};
    if (module == "numpy.testing._private.utils" && name == "runstring") return {S::Critical, "run arbitrary Python code"};
    return {S::Warning, "import and run " + std::string(module) + "." + std::string(name)};
}

Value* call(PickleMachine& m, Value* callee, Value* args, std::uint64_t at, CallKind kind) {
    if (callee->kind == ValueKind::Object) return opaque(m, callee, args, at);  // e.g. the result of getattr()
    if (callee->kind != ValueKind::Global)
        m.fail("the value called" + at_offset(at) + " is " + a_kind(callee) + ", not callable");
    m.mark_called(callee, at);
    const std::string what = callee->qualified_name();
    const auto& a = args->items;
    const bool is_new = kind == CallKind::New;

    switch (meaning_of(callee->module, callee->name)) {
        case Meaning::None:
        case Meaning::Opaque: return opaque(m, callee, args, at);
        case Meaning::ReferenceOnly:
            if (!m.trusted(what))
                m.add_finding(what, callee->offset, Severity::Warning, true,
                              what + " is called" + at_offset(at) + ": torch.save never calls it");
            return opaque(m, callee, args, at);
        case Meaning::OrderedDict:
        case Meaning::Dict: {
            Value* d = m.make(ValueKind::Dict, at);
            if (!is_new && !a.empty()) fill_dict(m, d, a[0], what, at);
            return d;
        }
        case Meaning::List:
            return container(m, ValueKind::List, is_new || a.empty() ? std::vector<Value*>{} : items_of(m, a[0], what, at), at);
        case Meaning::Tuple:
            return container(m, ValueKind::Tuple, a.empty() ? std::vector<Value*>{} : items_of(m, a[0], what, at), at);
        case Meaning::Set: {
            const bool empty = a.empty() || (is_new && callee->name == "set");  // set.__new__ ignores its iterable
            return container(m, ValueKind::Set, empty ? std::vector<Value*>{} : items_of(m, a[0], what, at), at);
        }
        case Meaning::Slice: {
            if (a.empty() || a.size() > 3) m.fail(what + at_offset(at) + " takes 1 to 3 arguments");
            std::vector<Value*> parts(a.begin(), a.end());
            if (parts.size() == 1) parts.insert(parts.begin(), m.make(ValueKind::None, at));  // slice(stop)
            if (parts.size() == 2) parts.push_back(m.make(ValueKind::None, at));
            return container(m, ValueKind::Tuple, std::move(parts), at);
        }
        case Meaning::Bytes: return make_bytes_from(m, a, what, at);
        case Meaning::CodecsEncode:
            if (a.empty()) m.fail(what + at_offset(at) + " needs the text to encode");
            return encode_text(m, a[0], a.size() > 1 ? a[1] : nullptr, what, at);
        case Meaning::Reconstructor: {
            // copyreg._reconstructor(cls, base, state) is how protocols 0 and 1 write cls.__new__:
            // the class it creates is what matters (and what a finding is about).
            if (a.empty()) m.fail(what + at_offset(at) + " needs a class");
            Value* obj = call(m, a[0], m.make_tuple({}, at), at, CallKind::New);
            // For subclasses of dict or list, state is the contents (base.__init__(obj, state)):
            // keep it as the object's argument rather than lose it.
            if (obj->kind == ValueKind::Object && a.size() > 2 && a[2]->kind != ValueKind::None) {
                obj->args = m.make_tuple({a[2]}, at);
                m.nest(obj, obj->args);
            }
            return obj;
        }
        case Meaning::NewObj: {
            if (a.empty()) m.fail(what + at_offset(at) + " needs a class");
            return call(m, a[0], m.make_tuple(std::vector<Value*>(a.begin() + 1, a.end()), at), at, CallKind::New);
        }
        case Meaning::NewObjEx: {
            if (a.size() < 2 || a[1]->kind != ValueKind::Tuple)
                m.fail(what + at_offset(at) + " needs a class and a tuple of arguments");
            return call(m, a[0], a[1], at, CallKind::New);
        }
        case Meaning::RebuildTensor: return rebuild_tensor(m, callee, a, at);
        case Meaning::RebuildParameter: {
            if (a.empty() || a[0]->kind != ValueKind::Tensor) m.fail(what + at_offset(at) + " needs a tensor");
            Value* p = as_parameter(m, a[0], a.size() < 2 || truthy(a[1]), at);
            if (callee->name == "_rebuild_parameter_with_state" && a.size() > 3 && !trivial_state(a[3])) {
                p->state = a[3];
                m.nest(p, a[3]);
            }
            return p;
        }
        case Meaning::Parameter:
            if (a.empty() || a[0]->kind != ValueKind::Tensor) return opaque(m, callee, args, at);
            return as_parameter(m, a[0], a.size() < 2 || truthy(a[1]), at);
        case Meaning::RebuildFromType: {
            // _rebuild_from_type_v2(func, new_type, args, state): func(*args) made into new_type.
            if (a.size() < 3) m.fail(what + at_offset(at) + " needs (func, type, args, state)");
            Value* func = a[0];
            Value* new_type = a[1];
            if (a[2]->kind != ValueKind::Tuple) m.fail(what + at_offset(at) + ": args is not a tuple");
            const Meaning fm = func->kind == ValueKind::Global ? meaning_of(func->module, func->name) : Meaning::None;
            if (fm != Meaning::RebuildTensor && fm != Meaning::RebuildParameter) {
                m.mark_called(func, at);
                return opaque(m, callee, args, at);
            }
            Value* t = call(m, func, a[2], at, CallKind::Call);  // a fresh value: safe to adjust
            if (new_type->kind == ValueKind::Global) {
                const std::string type_name = new_type->qualified_name();
                if (type_name == "torch.nn.parameter.Parameter") {
                    t->is_parameter = true;
                } else if (type_name != "torch.Tensor" && !m.trusted(type_name)) {
                    auto [severity, consequence] = classify_global(new_type->module, new_type->name);
                    m.add_finding(type_name, new_type->offset, severity, true,
                                  type_name + " is a tensor subclass rebuilt" + at_offset(at) +
                                      ": torch.load would import and run it");
                }
            }
            if (a.size() > 3 && !trivial_state(a[3])) {
                t->state = a[3];
                m.nest(t, a[3]);
            }
            return t;
        }
        case Meaning::Device: {
            if (a.empty() || a[0]->kind != ValueKind::String) return opaque(m, callee, args, at);
            std::string text = a[0]->text;
            if (a.size() > 1 && a[1]->kind == ValueKind::Int) text += ":" + std::to_string(a[1]->integer);
            m.add_bytes(text.size());
            Value* v = m.make(ValueKind::String, at);
            v->text = std::move(text);
            return v;
        }
        case Meaning::Size:
            return container(m, ValueKind::Tuple, a.empty() ? std::vector<Value*>{} : items_of(m, a[0], what, at), at);
        case Meaning::NumpyScalar:
            if (Value* v = numpy_scalar(m, a, at)) return v;
            return opaque(m, callee, args, at);
        case Meaning::DefaultDict: return make_defaultdict(m, callee, args, at, is_new);
        case Meaning::Counter: return make_counter(m, callee, args, at, is_new);
        case Meaning::DateTime: return make_datetime(m, callee, args, at);
        case Meaning::Path: return make_path(m, callee, args, at);
    }
    return opaque(m, callee, args, at);
}

void build(PickleMachine& m, Value* inst, Value* state, std::uint64_t at) {
    if (state->kind == ValueKind::None) return;
    switch (inst->kind) {
        case ValueKind::Global: {
            // Setting attributes on an imported class or function rewrites code that runs later.
            const std::string what = inst->qualified_name();
            if (!m.trusted(what))
                m.add_finding(what, at, Severity::Critical, true,
                              "BUILD" + at_offset(at) + " sets attributes of " + what +
                                  ": torch.load would modify imported code");
            break;
        }
        case ValueKind::Dict:
            if (trivial_state(state)) return;  // OrderedDict's usual empty or None state
            break;
        case ValueKind::None:
        case ValueKind::Bool:
        case ValueKind::Int:
        case ValueKind::BigInt:
        case ValueKind::Float:
        case ValueKind::String:
        case ValueKind::Bytes:
            m.fail("BUILD" + at_offset(at) + " sets state on " + a_kind(inst));
        default: break;
    }
    inst->state = state;
    m.nest(inst, state);
}

Value* persistent_load(PickleMachine& m, Value* pid, std::uint64_t at) {
    const bool is_tuple = pid->kind == ValueKind::Tuple;
    if (is_tuple && pid->items.size() >= 5 && pid->items[0]->kind == ValueKind::String &&
        pid->items[0]->text == "storage") {
        // torch.save: ('storage', storage class, key, location, numel[, legacy view metadata]).
        const auto& it = pid->items;
        const std::string where = "persistent id" + at_offset(at);
        const Value* cls = it[1];
        if (cls->kind != ValueKind::Global)
            m.fail(where + ": the storage type is " + a_kind(cls) + ", not a class");
        std::optional<DType> dtype;
        if (cls->module == "torch" || cls->module == "torch.storage")
            dtype = cls->name == "UntypedStorage" ? std::optional<DType>(DType::U8) : dtype_from_storage_class(cls->name);
        if (!dtype) m.fail(where + " names an unknown storage class " + cls->qualified_name());
        Value* s = m.make(ValueKind::Storage, at);
        s->module = cls->module;
        s->name = cls->name;
        s->dtype = *dtype;
        if (it[2]->kind == ValueKind::String) s->text = it[2]->text;
        else if (it[2]->kind == ValueKind::Int) s->text = std::to_string(it[2]->integer);
        else m.fail(where + ": the storage key is " + a_kind(it[2]));
        if (it[3]->kind != ValueKind::String) m.fail(where + ": the storage location is not a str");
        s->location = it[3]->text;
        s->integer = int_arg(m, it[4], where + ": the element count", at);
        if (s->integer < 0) m.fail(where + ": negative element count");
        s->record_numel = s->integer;
        if (it.size() > 5 && it[5]->kind != ValueKind::None) {
            // Legacy format views: (view key, offset, size) in elements of the root storage.
            const Value* view = it[5];
            if (view->kind != ValueKind::Tuple || view->items.size() != 3)
                m.fail(where + ": the view metadata is not a (key, offset, size) tuple");
            s->storage_offset = int_arg(m, view->items[1], where + ": the view offset", at);
            s->integer = int_arg(m, view->items[2], where + ": the view size", at);
            if (s->storage_offset < 0 || s->integer < 0) m.fail(where + ": negative view offset or size");
            if (s->storage_offset > s->record_numel || s->integer > s->record_numel - s->storage_offset)
                m.fail(where + ": the view of " + std::to_string(s->integer) + " elements at " +
                       std::to_string(s->storage_offset) + " runs past its root storage of " + std::to_string(s->record_numel));
        }
        m.add_bytes(s->text.size() + s->location.size());
        return s;
    }
    Value* obj = m.make(ValueKind::Object, at);
    obj->module = "persistent_id";
    if (is_tuple && !pid->items.empty() && pid->items[0]->kind == ValueKind::String) obj->name = pid->items[0]->text;
    obj->args = is_tuple ? pid : m.make_tuple({pid}, at);
    m.nest(obj, obj->args);
    return obj;
}

}  // namespace detail

bool is_allowed_global(std::string_view module, std::string_view name) {
    const auto [m, n] = detail::canonical_global(module, name);
    return detail::meaning_of(m, n) != detail::Meaning::None;
}

}  // namespace bitfsck::io
