#pragma once
// Internal to the pickle reader: the VM state that pickle.cpp runs and that
// pickle_globals.cpp (the meaning of allowed globals) needs to create values and findings.
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bitfsck/io/pickle.hpp"

namespace bitfsck::io::detail {

// REDUCE, INST and OBJ call cls(*args); NEWOBJ runs cls.__new__(cls, *args), which for the
// mutable containers ignores args (their items come later through APPENDS/SETITEMS).
enum class CallKind : std::uint8_t { Call, New };

class PickleMachine {
public:
    PickleMachine(PickleDocument& doc, const PickleOptions& options) : doc_(doc), options_(options) {}

    // Runs from data[start] to the STOP opcode; fills doc.root, doc.protocol, doc.end_offset.
    // Offsets (in findings, errors and values) are positions in data.
    void run(std::span<const std::byte> data, std::uint64_t start = 0);

    // --- for pickle_globals.cpp ---------------------------------------------------------
    Value* make(ValueKind kind, std::uint64_t offset);
    Value* make_tuple(std::vector<Value*> items, std::uint64_t offset);
    [[noreturn]] void fail(const std::string& what) const;
    // Records that `child` now sits inside `container`; throws past limits.max_depth.
    void nest(Value* container, const Value* child);
    // Counts string/bytes payload against limits.max_bytes.
    void add_bytes(std::uint64_t n);
    // Dict insertion with Python's semantics for equal scalar keys (the later value wins).
    void dict_set(Value* dict, Value* key, Value* value);

    // A GLOBAL (or INST's implicit one): a Global value, reported unless allowed or trusted.
    Value* make_global(std::string module, std::string name, std::uint64_t offset);
    // The pickle calls `callee` at call_offset: a reported global becomes called = true.
    void mark_called(const Value* callee, std::uint64_t call_offset);
    // A finding not tied to a GLOBAL opcode (a tensor subclass, BUILD on a class, ...).
    void add_finding(const std::string& global, std::uint64_t offset, Severity severity, bool called,
                     std::string reason);
    bool trusted(const std::string& qualified) const { return options_.trusted_globals.count(qualified) > 0; }

    PickleDocument& doc() { return doc_; }
    const PickleOptions& options() const { return options_; }

private:
    struct Reader;
    std::vector<Value*> pop_mark(std::string_view op, std::uint64_t at);
    std::size_t available() const { return stack_.size() - (marks_.empty() ? 0 : marks_.back()); }
    void need(std::size_t n, std::string_view op, std::uint64_t at) const;
    void push(Value* v);
    Value* pop(std::string_view op, std::uint64_t at);
    Value* top(std::string_view op, std::uint64_t at);
    void append_to(Value* target, Value* item, std::string_view op, std::uint64_t at);
    void add_to_set(Value* target, Value* item, std::string_view op, std::uint64_t at);
    void set_item(Value* target, Value* key, Value* value, std::string_view op, std::uint64_t at);

    PickleDocument& doc_;
    const PickleOptions& options_;
    std::vector<Value*> stack_;
    std::vector<std::size_t> marks_;  // stack sizes at each open MARK
    std::unordered_map<std::uint64_t, Value*> memo_;
    std::unordered_map<const Value*, std::uint32_t> depth_;  // containers that hold anything
    // Per dict: scalar key signature -> entry index, so a repeated key replaces its value.
    std::unordered_map<const Value*, std::unordered_map<std::string, std::size_t>> dict_keys_;
    std::unordered_map<const Value*, std::size_t> global_finding_;  // Global value -> finding
    std::map<std::pair<std::string, std::uint64_t>, std::size_t> finding_at_;
    std::uint64_t payload_bytes_ = 0;
};

// "an int", "a str": a value's kind for error messages.
inline std::string a_kind(const Value* v) {
    const std::string_view k = v->kind_name();
    return (k.find_first_of("aeiou") == 0 ? "an " : "a ") + std::string(k);
}

// --- pickle_text.cpp ------------------------------------------------------------------

void append_utf8(std::string& out, std::uint32_t code_point);
int hex_digit(char c);  // -1 when c is not a hex digit
// UTF-8 text to Latin-1 bytes; false when a character is beyond U+00FF (or the text is not UTF-8).
bool latin1_encode(std::string_view utf8, std::string& out);
// LONG1/LONG4's two's complement little-endian bytes: v becomes an Int or a BigInt (decimal).
void decode_long(Value* v, std::span<const std::byte> bytes);
// Protocol 0's INT/LONG text (sign and decimal digits) into v; false when it is not that.
bool parse_decimal(std::string_view text, Value* v);
// STRING's quoted Python 2 literal (codecs.escape_decode), without the quotes.
std::string escape_decode(const PickleMachine& m, std::string_view s, std::uint64_t at);
// UNICODE's raw-unicode-escape text, to UTF-8.
std::string raw_unicode_escape_decode(const PickleMachine& m, std::string_view s, std::uint64_t at);

// --- pickle_globals.cpp -------------------------------------------------------------------

// callee(*args) for REDUCE/INST/OBJ (kind Call) or NEWOBJ (kind New); args is a Tuple.
Value* call(PickleMachine& m, Value* callee, Value* args, std::uint64_t offset, CallKind kind);
// BUILD: state onto inst.
void build(PickleMachine& m, Value* inst, Value* state, std::uint64_t offset);
// BINPERSID / PERSID: torch's storage records, anything else as an opaque object.
Value* persistent_load(PickleMachine& m, Value* pid, std::uint64_t offset);

// An Object of callee's class with these arguments: what every class outside the meanings becomes.
Value* opaque(PickleMachine& m, const Value* callee, Value* args, std::uint64_t at);

// --- pickle_stdlib.cpp ----------------------------------------------------------------------

// The standard library's data types (docs/allow-list.md). is_new: NEWOBJ's cls.__new__(cls, *args).
Value* make_defaultdict(PickleMachine& m, const Value* callee, Value* args, std::uint64_t at, bool is_new);
Value* make_counter(PickleMachine& m, const Value* callee, Value* args, std::uint64_t at, bool is_new);
Value* make_datetime(PickleMachine& m, const Value* callee, Value* args, std::uint64_t at);  // date, time, datetime, timedelta, timezone
Value* make_path(PickleMachine& m, const Value* callee, Value* args, std::uint64_t at);      // pathlib's path classes

// Severity of a non-allowed global and what importing/calling it would do ("run a shell command").
std::pair<Severity, std::string> classify_global(std::string_view module, std::string_view name);
// Python 2 names that Python 3's unpickler maps (fix_imports): __builtin__.long, copy_reg, commands, ...
std::pair<std::string, std::string> canonical_global(std::string_view module, std::string_view name);

}  // namespace bitfsck::io::detail
