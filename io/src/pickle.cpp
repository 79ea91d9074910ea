// The pickle VM: every opcode of protocols 0-5, run iteratively over an explicit stack so a
// hostile pickle cannot overflow the C++ stack, with every read bounds-checked and every
// resource (values, stack, nesting, payload bytes) bounded by PickleLimits. Nothing is ever
// imported or called: globals become values, and pickle_globals.cpp gives meaning to the few
// that torch.save writes.
#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include "bitfsck/io/error.hpp"
#include "bitfsck/io/pickle.hpp"
#include "pickle_machine.hpp"
#include "pickle_opcodes.hpp"

namespace bitfsck::io {

std::string_view Value::kind_name() const {
    switch (kind) {
        case ValueKind::None: return "None";
        case ValueKind::Bool: return "bool";
        case ValueKind::Int: return "int";
        case ValueKind::BigInt: return "bigint";
        case ValueKind::Float: return "float";
        case ValueKind::String: return "str";
        case ValueKind::Bytes: return "bytes";
        case ValueKind::Tuple: return "tuple";
        case ValueKind::List: return "list";
        case ValueKind::Dict: return "dict";
        case ValueKind::Set: return "set";
        case ValueKind::Global: return "global";
        case ValueKind::Object: return "object";
        case ValueKind::Storage: return "storage";
        case ValueKind::Tensor: return "tensor";
    }
    return "?";
}

const Value* Value::get(std::string_view key) const {
    if (kind != ValueKind::Dict) return nullptr;
    for (const auto& [k, v] : entries)
        if (k && k->kind == ValueKind::String && k->text == key) return v;
    return nullptr;
}

Value* PickleDocument::make(ValueKind k, std::uint64_t offset) {
    Value& v = arena_.emplace_back();
    v.kind = k;
    v.offset = offset;
    return &v;
}

namespace {

// Python's int() of more digits than this is refused by CPython itself (sys.int_info's
// default_max_str_digits is 4300); a LONG1/LONG4 of more bytes is not something a checkpoint
// holds, and converting it to decimal would cost quadratic time.
constexpr std::size_t kMaxLongBytes = 8192;

using namespace pickle_op;

std::string_view op_name(std::uint8_t op) {
    switch (op) {
        case MARK: return "MARK"; case STOP: return "STOP"; case POP: return "POP";
        case POP_MARK: return "POP_MARK"; case DUP: return "DUP"; case FLOAT: return "FLOAT";
        case INT: return "INT"; case BININT: return "BININT"; case BININT1: return "BININT1";
        case LONG: return "LONG"; case BININT2: return "BININT2"; case NONE: return "NONE";
        case PERSID: return "PERSID"; case BINPERSID: return "BINPERSID"; case REDUCE: return "REDUCE";
        case STRING: return "STRING"; case BINSTRING: return "BINSTRING";
        case SHORT_BINSTRING: return "SHORT_BINSTRING"; case UNICODE: return "UNICODE";
        case BINUNICODE: return "BINUNICODE"; case APPEND: return "APPEND"; case BUILD: return "BUILD";
        case GLOBAL: return "GLOBAL"; case DICT: return "DICT"; case EMPTY_DICT: return "EMPTY_DICT";
        case APPENDS: return "APPENDS"; case GET: return "GET"; case BINGET: return "BINGET";
        case INST: return "INST"; case LONG_BINGET: return "LONG_BINGET"; case LIST: return "LIST";
        case EMPTY_LIST: return "EMPTY_LIST"; case OBJ: return "OBJ"; case PUT: return "PUT";
        case BINPUT: return "BINPUT"; case LONG_BINPUT: return "LONG_BINPUT"; case SETITEM: return "SETITEM";
        case TUPLE: return "TUPLE"; case EMPTY_TUPLE: return "EMPTY_TUPLE"; case SETITEMS: return "SETITEMS";
        case BINFLOAT: return "BINFLOAT"; case PROTO: return "PROTO"; case NEWOBJ: return "NEWOBJ";
        case EXT1: return "EXT1"; case EXT2: return "EXT2"; case EXT4: return "EXT4";
        case TUPLE1: return "TUPLE1"; case TUPLE2: return "TUPLE2"; case TUPLE3: return "TUPLE3";
        case NEWTRUE: return "NEWTRUE"; case NEWFALSE: return "NEWFALSE"; case LONG1: return "LONG1";
        case LONG4: return "LONG4"; case BINBYTES: return "BINBYTES"; case SHORT_BINBYTES: return "SHORT_BINBYTES";
        case SHORT_BINUNICODE: return "SHORT_BINUNICODE"; case BINUNICODE8: return "BINUNICODE8";
        case BINBYTES8: return "BINBYTES8"; case EMPTY_SET: return "EMPTY_SET"; case ADDITEMS: return "ADDITEMS";
        case FROZENSET: return "FROZENSET"; case NEWOBJ_EX: return "NEWOBJ_EX";
        case STACK_GLOBAL: return "STACK_GLOBAL"; case MEMOIZE: return "MEMOIZE"; case FRAME: return "FRAME";
        case BYTEARRAY8: return "BYTEARRAY8"; case NEXT_BUFFER: return "NEXT_BUFFER";
        case READONLY_BUFFER: return "READONLY_BUFFER";
        default: return "?";
    }
}






}  // namespace

namespace detail {

// Bounds-checked cursor over the pickle bytes.
struct PickleMachine::Reader {
    const PickleMachine& m;
    std::span<const std::byte> data;
    std::uint64_t pos = 0;

    std::uint64_t left() const { return data.size() - pos; }

    std::span<const std::byte> take(std::uint64_t n, std::string_view op, std::uint64_t at) {
        if (n > left())
            m.fail("truncated: " + std::string(op) + " at offset " + std::to_string(at) + " needs " +
                   std::to_string(n) + " bytes, only " + std::to_string(left()) + " left");
        auto s = data.subspan(pos, n);
        pos += n;
        return s;
    }
    // A length read from the pickle itself: a claim checked against what is there.
    std::span<const std::byte> take_claimed(std::uint64_t n, std::string_view op, std::uint64_t at) {
        if (n > left())
            m.fail(std::string(op) + " at offset " + std::to_string(at) + " claims " + std::to_string(n) +
                   " bytes but only " + std::to_string(left()) + " remain (truncated or corrupt)");
        return take(n, op, at);
    }
    std::uint64_t le(std::size_t n, std::string_view op, std::uint64_t at) {
        auto b = take(n, op, at);
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(std::to_integer<std::uint8_t>(b[i])) << (8 * i);
        return v;
    }
    std::string_view line(std::string_view op, std::uint64_t at) {
        const auto* begin = reinterpret_cast<const char*>(data.data()) + pos;
        const void* nl = std::memchr(begin, '\n', left());
        if (!nl)
            m.fail("truncated: " + std::string(op) + " at offset " + std::to_string(at) +
                   " has no end of line before the end of the data");
        std::size_t len = static_cast<const char*>(nl) - begin;
        pos += len + 1;
        std::string_view s(begin, len);
        if (!s.empty() && s.back() == '\r') s.remove_suffix(1);  // pickles written on Windows in text mode
        return s;
    }
};


namespace {

std::string shown(std::string_view s) {
    return "'" + std::string(s.substr(0, 40)) + (s.size() > 40 ? "...'" : "'");
}

}  // namespace



void PickleMachine::run(std::span<const std::byte> data, std::uint64_t start) {
    Reader r{*this, data, std::min<std::uint64_t>(start, data.size())};
    const auto& limits = options_.limits;
    for (;;) {
        if (r.left() == 0)
            fail("truncated: no STOP opcode before the end of the data at offset " + std::to_string(r.pos));
        const std::uint64_t at = r.pos;
        const auto op = std::to_integer<std::uint8_t>(data[r.pos]);
        ++r.pos;
        const std::string_view name = op_name(op);
        const std::string where = std::string(name) + " at offset " + std::to_string(at);

        auto push_text = [&](ValueKind kind, std::string text) {
            add_bytes(text.size());
            Value* v = make(kind, at);
            v->text = std::move(text);
            push(v);
        };
        auto push_raw = [&](ValueKind kind, std::span<const std::byte> b) {
            push_text(kind, std::string(reinterpret_cast<const char*>(b.data()), b.size()));
        };
        auto memo_get = [&](std::uint64_t key) {
            auto it = memo_.find(key);
            if (it == memo_.end()) fail("memo key " + std::to_string(key) + " not found (" + where + ")");
            push(it->second);
        };
        auto memo_put = [&](std::uint64_t key) { memo_[key] = top(name, at); };
        auto memo_index = [&](std::string_view text, bool put) -> std::uint64_t {
            std::int64_t v = 0;
            auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
            if (ec != std::errc() || p != text.data() + text.size())
                fail(where + ": " + shown(text) + " is not a memo index");
            if (v < 0) fail(where + ": negative " + (put ? "PUT" : "GET") + " argument " + std::to_string(v));
            return static_cast<std::uint64_t>(v);
        };
        auto signed_length = [&](std::int64_t n) -> std::uint64_t {
            if (n < 0) fail(where + " has a negative length " + std::to_string(n));
            return static_cast<std::uint64_t>(n);
        };
        auto push_long = [&](std::span<const std::byte> b) {
            if (b.size() > kMaxLongBytes)
                fail(where + ": an integer of " + std::to_string(b.size()) + " bytes is larger than the " +
                     std::to_string(kMaxLongBytes) + "-byte limit");
            add_bytes(b.size());
            Value* v = make(ValueKind::Int, at);
            decode_long(v, b);
            push(v);
        };
        auto push_decimal = [&](std::string_view text) {
            add_bytes(text.size());
            Value* v = make(ValueKind::Int, at);
            if (!parse_decimal(text, v)) fail(where + ": " + shown(text) + " is not an integer");
            push(v);
        };
        auto container = [&](ValueKind kind, std::vector<Value*> items) {
            Value* v = make(kind, at);
            for (Value* item : items) nest(v, item);
            v->items = std::move(items);
            push(v);
        };

        switch (op) {
            case PROTO: {
                const auto v = r.le(1, name, at);
                if (v > 5) fail("unsupported pickle protocol " + std::to_string(v) + " (" + where + ")");
                doc_.protocol = static_cast<int>(v);
                break;
            }
            case FRAME: {
                const auto n = r.le(8, name, at);
                if (n > r.left())
                    fail(where + " claims " + std::to_string(n) + " bytes but only " + std::to_string(r.left()) +
                         " remain (truncated or corrupt)");
                break;  // frames only group the opcodes that follow inline
            }
            case STOP: {
                if (!marks_.empty()) fail(where + " leaves an unclosed MARK");
                doc_.root = pop(name, at);
                doc_.end_offset = r.pos;
                return;
            }
            case MARK:
                if (marks_.size() >= limits.max_depth)
                    fail("nesting deeper than " + std::to_string(limits.max_depth) + " (" + where + ")");
                marks_.push_back(stack_.size());
                break;
            case POP:
                if (available() > 0) stack_.pop_back();
                else if (!marks_.empty()) marks_.pop_back();  // CPython's POP discards an empty MARK
                else need(1, name, at);
                break;
            case POP_MARK: pop_mark(name, at); break;
            case DUP: push(top(name, at)); break;

            case NONE: push(make(ValueKind::None, at)); break;
            case NEWTRUE:
            case NEWFALSE: {
                Value* v = make(ValueKind::Bool, at);
                v->boolean = op == NEWTRUE;
                push(v);
                break;
            }
            case INT: {
                const auto text = r.line(name, at);
                if (text == "00" || text == "01") {  // how protocol 0 spells False and True
                    Value* v = make(ValueKind::Bool, at);
                    v->boolean = text == "01";
                    push(v);
                } else {
                    push_decimal(text);
                }
                break;
            }
            case LONG: {
                auto text = r.line(name, at);
                if (!text.empty() && text.back() == 'L') text.remove_suffix(1);
                push_decimal(text);
                break;
            }
            case BININT:
            case BININT1:
            case BININT2: {
                Value* v = make(ValueKind::Int, at);
                if (op == BININT) v->integer = static_cast<std::int32_t>(static_cast<std::uint32_t>(r.le(4, name, at)));
                else v->integer = static_cast<std::int64_t>(r.le(op == BININT1 ? 1 : 2, name, at));
                push(v);
                break;
            }
            case LONG1: push_long(r.take_claimed(r.le(1, name, at), name, at)); break;
            case LONG4: {
                const auto n = signed_length(static_cast<std::int32_t>(static_cast<std::uint32_t>(r.le(4, name, at))));
                push_long(r.take_claimed(n, name, at));
                break;
            }
            case FLOAT: {
                auto text = r.line(name, at);
                std::string_view body = text;
                if (!body.empty() && body[0] == '+') body.remove_prefix(1);
                double d = 0;
                auto [p, ec] = std::from_chars(body.data(), body.data() + body.size(), d);
                // from_chars reports out-of-range for 1e999; Python gives inf there.
                if (ec == std::errc::result_out_of_range && p == body.data() + body.size())
                    d = body[0] == '-' ? -HUGE_VAL : HUGE_VAL;
                else if (ec != std::errc() || p != body.data() + body.size() || body.empty())
                    fail(where + ": " + shown(text) + " is not a number");
                Value* v = make(ValueKind::Float, at);
                v->real = d;
                push(v);
                break;
            }
            case BINFLOAT: {
                std::uint64_t bits = 0;
                for (auto b : r.take(8, name, at)) bits = (bits << 8) | std::to_integer<std::uint8_t>(b);
                Value* v = make(ValueKind::Float, at);
                v->real = std::bit_cast<double>(bits);
                push(v);
                break;
            }

            case STRING: {
                const auto text = r.line(name, at);
                if (text.size() < 2 || text.front() != text.back() || (text.front() != '\'' && text.front() != '"'))
                    fail(where + ": the argument " + shown(text) + " must be quoted");
                push_text(ValueKind::String, escape_decode(*this, text.substr(1, text.size() - 2), at));
                break;
            }
            case BINSTRING:
                push_raw(ValueKind::String,
                         r.take_claimed(signed_length(static_cast<std::int32_t>(
                                            static_cast<std::uint32_t>(r.le(4, name, at)))),
                                        name, at));
                break;
            case SHORT_BINSTRING: push_raw(ValueKind::String, r.take_claimed(r.le(1, name, at), name, at)); break;
            case UNICODE: push_text(ValueKind::String, raw_unicode_escape_decode(*this, r.line(name, at), at)); break;
            case SHORT_BINUNICODE: push_raw(ValueKind::String, r.take_claimed(r.le(1, name, at), name, at)); break;
            case BINUNICODE: push_raw(ValueKind::String, r.take_claimed(r.le(4, name, at), name, at)); break;
            case BINUNICODE8: push_raw(ValueKind::String, r.take_claimed(r.le(8, name, at), name, at)); break;
            case SHORT_BINBYTES: push_raw(ValueKind::Bytes, r.take_claimed(r.le(1, name, at), name, at)); break;
            case BINBYTES: push_raw(ValueKind::Bytes, r.take_claimed(r.le(4, name, at), name, at)); break;
            case BINBYTES8:
            case BYTEARRAY8: push_raw(ValueKind::Bytes, r.take_claimed(r.le(8, name, at), name, at)); break;

            case EMPTY_TUPLE: container(ValueKind::Tuple, {}); break;
            case EMPTY_LIST: container(ValueKind::List, {}); break;
            case EMPTY_DICT: container(ValueKind::Dict, {}); break;
            case EMPTY_SET: container(ValueKind::Set, {}); break;
            case TUPLE: container(ValueKind::Tuple, pop_mark(name, at)); break;
            case LIST: container(ValueKind::List, pop_mark(name, at)); break;
            case FROZENSET: container(ValueKind::Set, pop_mark(name, at)); break;
            case TUPLE1:
            case TUPLE2:
            case TUPLE3: {
                const std::size_t n = op - TUPLE1 + 1;
                need(n, name, at);
                std::vector<Value*> items(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
                stack_.resize(stack_.size() - n);
                container(ValueKind::Tuple, std::move(items));
                break;
            }
            case DICT: {
                auto items = pop_mark(name, at);
                if (items.size() % 2) fail(where + " has an odd number of items (" + std::to_string(items.size()) + ")");
                Value* d = make(ValueKind::Dict, at);
                for (std::size_t i = 0; i < items.size(); i += 2) dict_set(d, items[i], items[i + 1]);
                push(d);
                break;
            }
            case APPEND: {
                Value* item = pop(name, at);
                append_to(top(name, at), item, name, at);
                break;
            }
            case APPENDS: {
                auto items = pop_mark(name, at);
                Value* target = top(name, at);
                for (Value* item : items) append_to(target, item, name, at);
                break;
            }
            case SETITEM: {
                Value* value = pop(name, at);
                Value* key = pop(name, at);
                set_item(top(name, at), key, value, name, at);
                break;
            }
            case SETITEMS: {
                auto items = pop_mark(name, at);
                if (items.size() % 2) fail(where + " has an odd number of items (" + std::to_string(items.size()) + ")");
                Value* target = top(name, at);
                for (std::size_t i = 0; i < items.size(); i += 2) set_item(target, items[i], items[i + 1], name, at);
                break;
            }
            case ADDITEMS: {
                auto items = pop_mark(name, at);
                Value* target = top(name, at);
                for (Value* item : items) add_to_set(target, item, name, at);
                break;
            }

            case PUT: memo_put(memo_index(r.line(name, at), true)); break;
            case BINPUT: memo_put(r.le(1, name, at)); break;
            case LONG_BINPUT: memo_put(r.le(4, name, at)); break;
            case MEMOIZE: memo_put(memo_.size()); break;
            case GET: memo_get(memo_index(r.line(name, at), false)); break;
            case BINGET: memo_get(r.le(1, name, at)); break;
            case LONG_BINGET: memo_get(r.le(4, name, at)); break;

            case GLOBAL: {
                const std::string module(r.line(name, at));
                const std::string attr(r.line(name, at));
                push(make_global(module, attr, at));
                break;
            }
            case STACK_GLOBAL: {
                Value* attr = pop(name, at);
                Value* module = pop(name, at);
                if (module->kind != ValueKind::String || attr->kind != ValueKind::String)
                    fail(where + " needs the module and name as str, got " + a_kind(module) +
                         " and " + a_kind(attr));
                push(make_global(module->text, attr->text, at));
                break;
            }
            case INST: {
                const std::string module(r.line(name, at));
                const std::string attr(r.line(name, at));
                auto items = pop_mark(name, at);
                Value* cls = make_global(module, attr, at);
                push(call(*this, cls, make_tuple(std::move(items), at), at, CallKind::Call));
                break;
            }
            case OBJ: {
                auto items = pop_mark(name, at);
                if (items.empty()) fail("stack underflow: " + where + " needs a class after its MARK");
                Value* cls = items.front();
                items.erase(items.begin());
                push(call(*this, cls, make_tuple(std::move(items), at), at, CallKind::Call));
                break;
            }
            case REDUCE:
            case NEWOBJ: {
                Value* args = pop(name, at);
                Value* callee = pop(name, at);
                if (args->kind != ValueKind::Tuple)
                    fail(where + ": the arguments are " + a_kind(args) + ", not a tuple");
                push(call(*this, callee, args, at, op == REDUCE ? CallKind::Call : CallKind::New));
                break;
            }
            case NEWOBJ_EX: {
                Value* kwargs = pop(name, at);
                Value* args = pop(name, at);
                Value* cls = pop(name, at);
                if (args->kind != ValueKind::Tuple || kwargs->kind != ValueKind::Dict)
                    fail(where + ": expects a tuple and a dict, got " + a_kind(args) + " and " + a_kind(kwargs));
                // Keyword arguments to __new__ carry no meaning for any allowed class; the class
                // itself is what a finding is about.
                push(call(*this, cls, args, at, CallKind::New));
                break;
            }
            case BUILD: {
                Value* state = pop(name, at);
                build(*this, top(name, at), state, at);
                break;
            }
            case PERSID: {
                const auto text = r.line(name, at);
                add_bytes(text.size());
                Value* pid = make(ValueKind::String, at);
                pid->text = std::string(text);
                push(persistent_load(*this, pid, at));
                break;
            }
            case BINPERSID: push(persistent_load(*this, pop(name, at), at)); break;

            case EXT1:
            case EXT2:
            case EXT4: fail(where + ": the copyreg extension registry not supported"); break;
            case NEXT_BUFFER:
            case READONLY_BUFFER: fail(where + ": out-of-band buffers unsupported"); break;
            default: {
                static const char* hex = "0123456789abcdef";
                fail("unknown opcode 0x" + std::string{hex[op >> 4], hex[op & 15]} + " at offset " + std::to_string(at));
            }
        }
    }
}

}  // namespace detail

PickleDocument parse_pickle(std::span<const std::byte> data, const PickleOptions& options) {
    PickleDocument doc;
    detail::PickleMachine machine(doc, options);
    machine.run(data);
    return doc;
}

namespace {

// At most this many further pickles are read after a STOP; the rest is summarised.
constexpr std::size_t kMaxPicklesAfterStop = 64;

std::string hex_head(std::span<const std::byte> bytes) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < std::min<std::size_t>(bytes.size(), 8); ++i) {
        const auto b = std::to_integer<unsigned>(bytes[i]);
        out += (i ? " " : "");
        out += digits[b >> 4];
        out += digits[b & 15];
    }
    return out;
}

void add_prefixed(PickleDocument& doc, const SecurityFinding& f, const std::string& prefix) {
    SecurityFinding copy = f;
    copy.reason = prefix + f.reason;
    doc.findings.push_back(std::move(copy));
}

}  // namespace

std::string check_bytes_after_stop(PickleDocument& doc, std::span<const std::byte> data, std::uint64_t from,
                                   const PickleOptions& options, std::string_view what) {
    if (from >= data.size()) return {};
    const std::uint64_t left = data.size() - from;
    const std::string head = std::string(what) + ": " + std::to_string(left) + " byte(s) from offset " + std::to_string(from);
    if (std::all_of(data.begin() + static_cast<std::ptrdiff_t>(from), data.end(), [](std::byte b) { return b == std::byte{0}; }))
        return head + ": zero padding";
    std::uint64_t pos = from;
    std::size_t pickles = 0, values = 0;
    std::set<std::string> named;
    std::string stopped;
    while (pos < data.size() && pickles < kMaxPicklesAfterStop) {
        // Parsed, never run, like the first pickle; a loader that reads on would run them.
        PickleDocument next;
        detail::PickleMachine machine(next, options);
        const std::string prefix = "in a further pickle at offset " + std::to_string(pos) + " of " + std::string(what) + ": ";
        bool complete = true;
        try {
            machine.run(data, pos);
        } catch (const FormatError& e) {
            complete = false;
            // The globals met before the error are findings all the same: an unpickler runs
            // opcodes as it reads them, so what precedes a malformed tail still executes.
            stopped = e.what();
        }
        for (const auto& f : next.findings) {
            add_prefixed(doc, f, prefix);
            named.insert(f.global);
        }
        if (!complete) break;
        ++pickles;
        values += next.size();
        pos = next.end_offset;
    }
    std::string out = head + ": ";
    if (pickles) out += std::to_string(pickles) + " further pickle(s) of " + std::to_string(values) + " value(s)";
    if (!stopped.empty()) {
        if (pickles) out += ", then ";
        const std::string reason = stopped.substr(stopped.find(": ") == std::string::npos ? 0 : stopped.find(": ") + 2);
        out += (pickles ? std::string("bytes that are ") : std::string("")) + "not a pickle (" + reason + "; starts with " +
               hex_head(data.subspan(static_cast<std::size_t>(pos))) + ")";
    } else if (pos < data.size()) {
        out += ", and " + std::to_string(data.size() - pos) + " more byte(s) not read";
    }
    if (!named.empty()) {
        out += "; they name";
        for (const auto& g : named) out += " " + g;
        out += " (see the security findings)";
    }
    return out;
}

void adopt_findings(PickleDocument& doc, const PickleDocument& other, std::string_view where) {
    for (const auto& f : other.findings) add_prefixed(doc, f, "in " + std::string(where) + ": ");
}

}  // namespace bitfsck::io
