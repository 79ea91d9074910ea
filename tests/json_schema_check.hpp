#pragma once
// A checker for the subset of JSON Schema that docs/*.schema.json use (type, enum, const,
// required, properties, items, minimum, maximum, minItems, maxItems, local $ref into $defs),
// because python3-jsonschema is not installed here. Keywords it does not know are ignored,
// so a schema using one would be checked less strictly, never more.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace bitfsck::test {

class SchemaChecker {
public:
    explicit SchemaChecker(nlohmann::json schema) : root_(std::move(schema)) {}

    // Every violation, as "<json pointer>: <what>"; empty when the document conforms.
    std::vector<std::string> check(const nlohmann::json& doc) const {
        std::vector<std::string> errors;
        check(root_, doc, "", errors, 0);
        return errors;
    }

private:
    static bool has_type(const nlohmann::json& v, const std::string& t) {
        if (t == "object") return v.is_object();
        if (t == "array") return v.is_array();
        if (t == "string") return v.is_string();
        if (t == "boolean") return v.is_boolean();
        if (t == "null") return v.is_null();
        if (t == "integer") return v.is_number_integer() || (v.is_number_float() && v.get<double>() == static_cast<double>(static_cast<long long>(v.get<double>())));
        if (t == "number") return v.is_number();
        return false;
    }

    const nlohmann::json& resolve(const nlohmann::json& s) const {
        if (!s.is_object() || !s.contains("$ref")) return s;
        std::string ref = s["$ref"].get<std::string>();
        if (ref.rfind("#/", 0) != 0) throw std::runtime_error("only local $ref supported: " + ref);
        return root_.at(nlohmann::json::json_pointer(ref.substr(1)));
    }

    void check(const nlohmann::json& schema_in, const nlohmann::json& v, const std::string& at, std::vector<std::string>& errors, int depth) const {
        if (depth > 64) throw std::runtime_error("schema too deep (recursive $ref?)");
        const nlohmann::json& s = resolve(schema_in);
        if (!s.is_object()) return;
        if (s.contains("type")) {
            bool ok = false;
            if (s["type"].is_string()) ok = has_type(v, s["type"].get<std::string>());
            else
                for (const auto& t : s["type"]) ok = ok || has_type(v, t.get<std::string>());
            if (!ok) {
                errors.push_back(at + ": expected type " + s["type"].dump() + ", got " + v.dump().substr(0, 80));
                return;
            }
        }
        if (s.contains("const") && s["const"] != v) errors.push_back(at + ": expected " + s["const"].dump() + ", got " + v.dump().substr(0, 80));
        if (s.contains("enum")) {
            bool found = false;
            for (const auto& e : s["enum"]) found = found || e == v;
            if (!found) errors.push_back(at + ": " + v.dump().substr(0, 80) + " not in " + s["enum"].dump());
        }
        if (v.is_number()) {
            if (s.contains("minimum") && v.get<double>() < s["minimum"].get<double>()) errors.push_back(at + ": below minimum");
            if (s.contains("maximum") && v.get<double>() > s["maximum"].get<double>()) errors.push_back(at + ": above maximum");
        }
        if (v.is_object()) {
            if (s.contains("required"))
                for (const auto& k : s["required"])
                    if (!v.contains(k.get<std::string>())) errors.push_back(at + ": missing required key " + k.get<std::string>());
            if (s.contains("properties"))
                for (const auto& [k, sub] : s["properties"].items())
                    if (v.contains(k)) check(sub, v[k], at + "/" + k, errors, depth + 1);
        }
        if (v.is_array()) {
            if (s.contains("minItems") && v.size() < s["minItems"].get<std::size_t>()) errors.push_back(at + ": too few items");
            if (s.contains("maxItems") && v.size() > s["maxItems"].get<std::size_t>()) errors.push_back(at + ": too many items");
            if (s.contains("items"))
                for (std::size_t i = 0; i < v.size(); ++i) check(s["items"], v[i], at + "/" + std::to_string(i), errors, depth + 1);
        }
    }

    nlohmann::json root_;
};

}  // namespace bitfsck::test
