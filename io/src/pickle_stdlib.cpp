// Standard-library data types that PyTorch users save in checkpoints: collections.defaultdict and
// Counter, datetime's date, time, datetime, timedelta and timezone, and pathlib's paths. They are
// read as data (docs/allow-list.md): a defaultdict is a dict that remembers its factory, a Counter
// a dict, a date or a path an object with a readable text. Each constructor takes data only; a
// callable passed where data belongs (or a defaultdict factory that is not a builtin type) stays a
// security finding, since torch.load would hand it to code that may call it.
#include <array>
#include <cstdio>
#include <optional>

#include "bitfsck/io/pickle.hpp"
#include "pickle_machine.hpp"

namespace bitfsck::io::detail {
namespace {

std::string at_offset(std::uint64_t at) { return " at pickle offset " + std::to_string(at); }

// The builtin types a defaultdict may use as its factory: calling one with no arguments makes an
// empty value and runs nothing else.
bool is_builtin_factory(const Value* f) {
    if (f->kind == ValueKind::None) return true;
    if (f->kind != ValueKind::Global) return false;
    static constexpr std::array<std::string_view, 12> builtins = {"list", "dict",  "set",   "frozenset", "tuple",  "int",
                                                                  "float", "str", "bytes", "bytearray", "bool", "complex"};
    if (f->module == "builtins")
        for (auto name : builtins)
            if (f->name == name) return true;
    return f->module == "collections" && (f->name == "OrderedDict" || f->name == "Counter" || f->name == "defaultdict");
}

// An allowed class used where it does not belong is a warning; anything else as classified.
Severity severity_of(const Value* global) {
    return is_allowed_global(global->module, global->name) ? Severity::Warning
                                                            : classify_global(global->module, global->name).first;
}

// A class or function handed to a constructor that takes data: torch.load would pass it on, and
// the value it builds may call it later. Reported under the callable's name.
void report_callable_arguments(PickleMachine& m, const Value* callee, const Value* args, std::uint64_t at) {
    if (!args) return;
    for (const Value* a : args->items) {
        if (a->kind != ValueKind::Global) continue;
        const std::string what = a->qualified_name();
        if (m.trusted(what)) continue;
        m.add_finding(what, a->offset, severity_of(a), false,
                      what + " is passed to " + callee->qualified_name() + at_offset(at) +
                          ", which takes data, not a callable: torch.load would import it and hand it on");
    }
}

const Value* arg(const Value* args, std::size_t i) {
    return args && i < args->items.size() ? args->items[i] : nullptr;
}

std::optional<std::int64_t> int_at(const Value* args, std::size_t i, std::int64_t fallback) {
    const Value* v = arg(args, i);
    if (!v) return fallback;
    if (v->kind != ValueKind::Int) return std::nullopt;
    return v->integer;
}

std::string two(std::int64_t v) {
    char b[24];
    std::snprintf(b, sizeof b, "%02lld", static_cast<long long>(v));
    return b;
}

std::string clock_text(std::int64_t h, std::int64_t mi, std::int64_t s, std::int64_t us) {
    std::string t = two(h) + ":" + two(mi) + ":" + two(s);
    if (us) {
        char b[16];
        std::snprintf(b, sizeof b, ".%06lld", static_cast<long long>(us));
        t += b;
    }
    return t;
}

// A UTC offset in seconds from a timedelta (what a timezone holds), within a day as timezone requires.
std::optional<std::int64_t> delta_seconds(const Value* delta) {
    if (!delta || delta->kind != ValueKind::Object || delta->qualified_name() != "datetime.timedelta") return std::nullopt;
    const auto days = int_at(delta->args, 0, 0), seconds = int_at(delta->args, 1, 0);
    if (!days || !seconds || *days < -1 || *days > 0 || *seconds < 0 || *seconds >= 86400) return std::nullopt;
    return *days * 86400 + *seconds;
}

std::optional<std::int64_t> utc_offset(const Value* tz) {
    if (!tz || tz->kind != ValueKind::Object || tz->qualified_name() != "datetime.timezone") return std::nullopt;
    return delta_seconds(arg(tz->args, 0));
}

std::string offset_text(std::int64_t seconds) {
    const char sign = seconds < 0 ? '-' : '+';
    if (seconds < 0) seconds = -seconds;
    std::string t = std::string(1, sign) + two(seconds / 3600) + ":" + two(seconds / 60 % 60);
    if (seconds % 60) t += ":" + two(seconds % 60);
    return t;
}

// The tzinfo argument of a datetime or time: None, or a timezone (anything else is left unrendered).
std::optional<std::string> tz_suffix(const Value* tz) {
    if (!tz || tz->kind == ValueKind::None) return std::string();
    if (auto off = utc_offset(tz)) return offset_text(*off);
    return std::nullopt;
}

// CPython's pickled state of a date, time or datetime: big-endian fields in a bytes value; since
// protocol 4 the top bit of a datetime's month byte and of a time's hour byte is the fold flag.
const std::string* state_bytes(const Value* args, std::size_t size) {
    const Value* s = arg(args, 0);
    return s && (s->kind == ValueKind::Bytes || s->kind == ValueKind::String) && s->text.size() == size ? &s->text : nullptr;
}

unsigned byte_at(const std::string& s, std::size_t i) { return static_cast<unsigned char>(s[i]); }

// Python's str() of the value, or nothing when the arguments are not what CPython pickles.
std::optional<std::string> datetime_text(const std::string& name, const Value* args) {
    if (name == "date") {
        if (const std::string* s = state_bytes(args, 4))
            return std::to_string(byte_at(*s, 0) * 256 + byte_at(*s, 1)) + "-" + two(byte_at(*s, 2)) + "-" + two(byte_at(*s, 3));
        const auto y = int_at(args, 0, -1), mo = int_at(args, 1, -1), d = int_at(args, 2, -1);
        if (!y || !mo || !d || *y < 0 || *mo < 0 || *d < 0) return std::nullopt;
        return std::to_string(*y) + "-" + two(*mo) + "-" + two(*d);
    }
    if (name == "time") {
        if (const std::string* s = state_bytes(args, 6)) {
            const auto tz = tz_suffix(arg(args, 1));
            if (!tz) return std::nullopt;
            const std::int64_t us = (byte_at(*s, 3) << 16) | (byte_at(*s, 4) << 8) | byte_at(*s, 5);
            return clock_text(byte_at(*s, 0) & 0x7f, byte_at(*s, 1), byte_at(*s, 2), us) + *tz;
        }
        return std::nullopt;
    }
    if (name == "datetime") {
        if (const std::string* s = state_bytes(args, 10)) {
            const auto tz = tz_suffix(arg(args, 1));
            if (!tz) return std::nullopt;
            const std::int64_t us = (byte_at(*s, 7) << 16) | (byte_at(*s, 8) << 8) | byte_at(*s, 9);
            return std::to_string(byte_at(*s, 0) * 256 + byte_at(*s, 1)) + "-" + two(byte_at(*s, 2) & 0x7f) + "-" +
                   two(byte_at(*s, 3)) + " " + clock_text(byte_at(*s, 4), byte_at(*s, 5), byte_at(*s, 6), us) + *tz;
        }
        std::array<std::optional<std::int64_t>, 7> f = {int_at(args, 0, -1), int_at(args, 1, -1), int_at(args, 2, -1),
                                                        int_at(args, 3, 0),  int_at(args, 4, 0),  int_at(args, 5, 0),
                                                        int_at(args, 6, 0)};
        for (const auto& v : f)
            if (!v || *v < 0 || *v > 999999999) return std::nullopt;
        const auto tz = tz_suffix(arg(args, 7));
        if (!tz) return std::nullopt;
        return std::to_string(*f[0]) + "-" + two(*f[1]) + "-" + two(*f[2]) + " " + clock_text(*f[3], *f[4], *f[5], *f[6]) + *tz;
    }
    if (name == "timedelta") {
        const auto days = int_at(args, 0, 0), seconds = int_at(args, 1, 0), us = int_at(args, 2, 0);
        // CPython pickles the normalised fields; anything else is not rendered.
        if (!days || !seconds || !us || *seconds < 0 || *seconds >= 86400 || *us < 0 || *us >= 1000000 ||
            *days < -999999999 || *days > 999999999)
            return std::nullopt;
        std::string t;
        if (*days) t = std::to_string(*days) + (*days == 1 || *days == -1 ? " day, " : " days, ");
        std::string clock = clock_text(*seconds / 3600, *seconds / 60 % 60, *seconds % 60, *us);
        if (clock[0] == '0') clock.erase(0, 1);  // Python writes 0:00:05, not 00:00:05
        return t + clock;
    }
    if (name == "timezone") {
        const Value* tz_name = arg(args, 1);
        if (tz_name && tz_name->kind == ValueKind::String) return tz_name->text;
        const auto off = delta_seconds(arg(args, 0));
        if (!off) return std::nullopt;
        return *off == 0 ? std::string("UTC") : "UTC" + offset_text(*off);
    }
    return std::nullopt;
}

// PurePath(*parts) joined as Python does: a part that is absolute starts the path again.
std::optional<std::string> path_text(const std::string& name, const Value* args) {
    const bool windows = name.find("Windows") != std::string::npos;
    const char sep = windows ? '\\' : '/';
    std::string out;
    for (const Value* a : args ? args->items : std::vector<Value*>{}) {
        const std::string* part = nullptr;
        if (a->kind == ValueKind::String) part = &a->text;
        else if (a->kind == ValueKind::Object && a->module.starts_with("pathlib") && !a->text.empty()) part = &a->text;
        if (!part) return std::nullopt;
        if (part->empty()) continue;
        const bool absolute = (*part)[0] == '/' || (windows && ((*part)[0] == '\\' || (part->size() > 1 && (*part)[1] == ':')));
        if (absolute || out.empty()) out = *part;
        else out += (out.back() == sep ? "" : std::string(1, sep)) + *part;
    }
    return out.empty() ? std::string(".") : out;
}

}  // namespace

Value* make_defaultdict(PickleMachine& m, const Value* callee, Value* args, std::uint64_t at, bool is_new) {
    Value* d = m.make(ValueKind::Dict, at);
    d->module = callee->module;
    d->name = callee->name;
    const Value* factory = is_new ? nullptr : arg(args, 0);
    d->args = m.make_tuple(factory ? std::vector<Value*>{args->items[0]} : std::vector<Value*>{}, at);
    m.nest(d, d->args);
    if (factory && !is_builtin_factory(factory)) {
        // Calling the factory is what a defaultdict does on every missing key.
        const bool global = factory->kind == ValueKind::Global;
        const std::string what = global ? factory->qualified_name() : callee->qualified_name();
        if (!m.trusted(what)) {
            const Severity severity = global ? severity_of(factory) : Severity::Warning;
            m.add_finding(what, global ? factory->offset : at, severity, false,
                          (global ? what : "a " + std::string(factory->kind_name()) + " value") +
                              " is the default factory of a collections.defaultdict" + at_offset(at) +
                              ": reading a missing key would call it (only builtin types are accepted as factories)");
        }
    }
    if (!is_new && args->items.size() > 1) {
        const Value* source = args->items[1];
        if (source->kind == ValueKind::Dict)
            for (const auto& [k, v] : source->entries) m.dict_set(d, k, v);
    }
    return d;
}

Value* make_counter(PickleMachine& m, const Value* callee, Value* args, std::uint64_t at, bool is_new) {
    const Value* source = is_new ? nullptr : arg(args, 0);
    if (source && source->kind != ValueKind::Dict) {
        // Counter(iterable) counts; pickle always writes Counter(dict). Kept as an object.
        report_callable_arguments(m, callee, args, at);
        return opaque(m, callee, args, at);
    }
    Value* d = m.make(ValueKind::Dict, at);
    d->module = callee->module;
    d->name = callee->name;
    if (source)
        for (const auto& [k, v] : source->entries) m.dict_set(d, k, v);
    return d;
}

namespace {

// An object of callee's class whose readable text (str() in Python) `text_of` works out from the
// arguments, or leaves empty when they are not what CPython pickles.
template <typename TextOf>
Value* data_value(PickleMachine& m, const Value* callee, Value* args, std::uint64_t at, TextOf text_of) {
    report_callable_arguments(m, callee, args, at);
    Value* obj = opaque(m, callee, args, at);
    if (auto text = text_of(callee->name, args)) {
        m.add_bytes(text->size());
        obj->text = std::move(*text);
    }
    return obj;
}

}  // namespace

Value* make_datetime(PickleMachine& m, const Value* callee, Value* args, std::uint64_t at) {
    return data_value(m, callee, args, at, datetime_text);
}

Value* make_path(PickleMachine& m, const Value* callee, Value* args, std::uint64_t at) {
    return data_value(m, callee, args, at, path_text);
}

}  // namespace bitfsck::io::detail
