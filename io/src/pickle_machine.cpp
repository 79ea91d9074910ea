// The pickle VM's bookkeeping: value creation within limits, nesting depth, dict keys,
// security findings and the stack discipline around MARKs (CPython's metastack).
#include <algorithm>
#include <bit>
#include <cmath>
#include <optional>
#include <tuple>

#include "bitfsck/io/error.hpp"
#include "pickle_machine.hpp"

namespace bitfsck::io::detail {

void PickleMachine::fail(const std::string& what) const { throw FormatError(options_.source_name, what); }

Value* PickleMachine::make(ValueKind kind, std::uint64_t offset) {
    if (doc_.size() >= options_.limits.max_values)
        fail("more than " + std::to_string(options_.limits.max_values) + " values (limit) at pickle offset " +
             std::to_string(offset));
    return doc_.make(kind, offset);
}

Value* PickleMachine::make_tuple(std::vector<Value*> items, std::uint64_t offset) {
    Value* t = make(ValueKind::Tuple, offset);
    for (Value* item : items) nest(t, item);
    t->items = std::move(items);
    return t;
}

void PickleMachine::nest(Value* container, const Value* child) {
    auto it = depth_.find(child);
    const std::uint32_t d = (it == depth_.end() ? 0u : it->second) + 1u;
    if (d > options_.limits.max_depth)
        fail("nesting deeper than " + std::to_string(options_.limits.max_depth) + " at pickle offset " +
             std::to_string(container->offset));
    auto& cd = depth_[container];
    cd = std::max(cd, d);
}

void PickleMachine::add_bytes(std::uint64_t n) {
    payload_bytes_ += n;
    if (payload_bytes_ > options_.limits.max_bytes)
        fail("strings and bytes exceed the limit of " + std::to_string(options_.limits.max_bytes) + " bytes");
}

namespace {
// Keys that Python would find equal by value (1 == 1.0 == True), so a repeated one replaces.
std::optional<std::string> key_signature(const Value* k) {
    switch (k->kind) {
        case ValueKind::None: return "N";
        case ValueKind::Bool: return k->boolean ? "i1" : "i0";
        case ValueKind::Int: return "i" + std::to_string(k->integer);
        case ValueKind::BigInt: return "i" + k->text;
        case ValueKind::Float:
            if (std::isfinite(k->real) && k->real == std::trunc(k->real) && std::abs(k->real) < 9.2e18)
                return "i" + std::to_string(static_cast<std::int64_t>(k->real));
            if (std::isnan(k->real)) return std::nullopt;  // nan != nan: never equal
            return "f" + std::to_string(std::bit_cast<std::uint64_t>(k->real));
        case ValueKind::String: return "s" + k->text;
        case ValueKind::Bytes: return "y" + k->text;
        default: return std::nullopt;  // identity-compared (tuples of values are rare as repeated keys)
    }
}
}  // namespace

void PickleMachine::dict_set(Value* dict, Value* key, Value* value) {
    nest(dict, key);
    nest(dict, value);
    if (auto sig = key_signature(key)) {
        auto& index = dict_keys_[dict];
        auto [it, inserted] = index.try_emplace(std::move(*sig), dict->entries.size());
        if (!inserted && it->second < dict->entries.size()) {
            dict->entries[it->second].second = value;
            return;
        }
    }
    dict->entries.emplace_back(key, value);
}

Value* PickleMachine::make_global(std::string module, std::string name, std::uint64_t offset) {
    std::tie(module, name) = canonical_global(module, name);
    add_bytes(module.size() + name.size());
    Value* g = make(ValueKind::Global, offset);
    g->module = std::move(module);
    g->name = std::move(name);
    const std::string qualified = g->qualified_name();
    if (!is_allowed_global(g->module, g->name) && !trusted(qualified)) {
        auto [severity, consequence] = classify_global(g->module, g->name);
        std::string reason = qualified + " is referenced at pickle offset " + std::to_string(offset) +
                             ": torch.load would import it";
        reason += severity == Severity::Critical ? ", and calling it would " + consequence
                                                 : " (not on the allow-list)";
        add_finding(qualified, offset, severity, false, std::move(reason));
        global_finding_[g] = finding_at_.at({qualified, offset});
    }
    return g;
}

void PickleMachine::add_finding(const std::string& global, std::uint64_t offset, Severity severity, bool called,
                                std::string reason) {
    auto [it, inserted] = finding_at_.try_emplace({global, offset}, doc_.findings.size());
    if (!inserted) {
        auto& f = doc_.findings[it->second];
        if (called && !f.called) {
            f.called = true;
            f.reason = std::move(reason);
        }
        return;
    }
    doc_.findings.push_back({offset, global, severity, called, std::move(reason)});
}

void PickleMachine::mark_called(const Value* callee, std::uint64_t call_offset) {
    auto it = global_finding_.find(callee);
    if (it == global_finding_.end()) return;
    auto& f = doc_.findings[it->second];
    if (f.called) return;
    f.called = true;
    auto [severity, consequence] = classify_global(callee->module, callee->name);
    f.reason = f.global + " is called at pickle offset " + std::to_string(call_offset) + ": torch.load would " +
               (severity == Severity::Critical ? consequence : "import and run it (not on the allow-list)");
}

void PickleMachine::need(std::size_t n, std::string_view op, std::uint64_t at) const {
    if (available() < n)
        fail("stack underflow: " + std::string(op) + " at offset " + std::to_string(at) + " needs " +
             std::to_string(n) + " value(s), " + std::to_string(available()) + " available" +
             (marks_.empty() ? "" : " above the last MARK"));
}

void PickleMachine::push(Value* v) {
    if (stack_.size() >= options_.limits.max_stack)
        fail("VM stack exceeds the limit of " + std::to_string(options_.limits.max_stack) + " entries");
    stack_.push_back(v);
}

Value* PickleMachine::pop(std::string_view op, std::uint64_t at) {
    need(1, op, at);
    Value* v = stack_.back();
    stack_.pop_back();
    return v;
}

Value* PickleMachine::top(std::string_view op, std::uint64_t at) {
    need(1, op, at);
    return stack_.back();
}

std::vector<Value*> PickleMachine::pop_mark(std::string_view op, std::uint64_t at) {
    if (marks_.empty())
        fail("stack underflow: " + std::string(op) + " at offset " + std::to_string(at) + " has no MARK to pop to");
    const std::size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<Value*> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
}

void PickleMachine::append_to(Value* target, Value* item, std::string_view op, std::uint64_t at) {
    if (target->kind != ValueKind::List && target->kind != ValueKind::Object)
        fail(std::string(op) + " at offset " + std::to_string(at) + " appends to " + a_kind(target) + ", not a list");
    nest(target, item);
    target->items.push_back(item);
}

void PickleMachine::add_to_set(Value* target, Value* item, std::string_view op, std::uint64_t at) {
    if (target->kind != ValueKind::Set && target->kind != ValueKind::Object)
        fail(std::string(op) + " at offset " + std::to_string(at) + " adds to " + a_kind(target) + ", not a set");
    nest(target, item);
    target->items.push_back(item);
}

void PickleMachine::set_item(Value* target, Value* key, Value* value, std::string_view op, std::uint64_t at) {
    if (target->kind == ValueKind::Dict) return dict_set(target, key, value);
    if (target->kind != ValueKind::Object)
        fail(std::string(op) + " at offset " + std::to_string(at) + " sets an item on " + a_kind(target) + ", not a dict");
    nest(target, key);
    nest(target, value);
    target->entries.emplace_back(key, value);
}

}  // namespace bitfsck::io::detail
