// Decoders for pickle's textual and variable-length arguments: protocol 0's escaped
// strings and decimal numbers, LONG1/LONG4's two's complement integers, and UTF-8/Latin-1.
#include <algorithm>
#include <charconv>

#include "pickle_machine.hpp"

namespace bitfsck::io::detail {

void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {  // lone surrogates included, as Python's surrogatepass keeps them
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool latin1_encode(std::string_view utf8, std::string& out) {
    out.clear();
    out.reserve(utf8.size());
    for (std::size_t i = 0; i < utf8.size();) {
        const auto c = static_cast<unsigned char>(utf8[i]);
        if (c < 0x80) {
            out += static_cast<char>(c);
            ++i;
        } else if ((c & 0xE0) == 0xC0 && i + 1 < utf8.size() && c <= 0xC3) {  // U+0080..U+00FF only
            out += static_cast<char>(((c & 0x1F) << 6) | (static_cast<unsigned char>(utf8[i + 1]) & 0x3F));
            i += 2;
        } else {
            return false;
        }
    }
    return true;
}

// Two's complement little-endian (LONG1/LONG4) to int64 or decimal text.
void decode_long(Value* v, std::span<const std::byte> bytes) {
    const std::size_t n = bytes.size();
    if (n == 0) return;  // zero
    const bool negative = (std::to_integer<std::uint8_t>(bytes[n - 1]) & 0x80) != 0;
    const std::uint8_t fill = negative ? 0xFF : 0x00;
    std::size_t significant = n;  // drop sign-extension bytes that carry no value
    while (significant > 1 && std::to_integer<std::uint8_t>(bytes[significant - 1]) == fill &&
           ((std::to_integer<std::uint8_t>(bytes[significant - 2]) & 0x80) == (fill & 0x80)))
        --significant;
    if (significant <= 8) {
        std::uint64_t u = negative ? ~0ull : 0ull;
        for (std::size_t i = 0; i < significant; ++i) {
            u &= ~(0xFFull << (8 * i));
            u |= static_cast<std::uint64_t>(std::to_integer<std::uint8_t>(bytes[i])) << (8 * i);
        }
        v->kind = ValueKind::Int;
        v->integer = static_cast<std::int64_t>(u);
        return;
    }
    // Magnitude as 32-bit limbs (two's complement negated for negatives), then base 1e9 digits.
    std::vector<std::uint32_t> limbs((significant + 3) / 4, 0);
    for (std::size_t i = 0; i < significant; ++i)
        limbs[i / 4] |= static_cast<std::uint32_t>(std::to_integer<std::uint8_t>(bytes[i])) << (8 * (i % 4));
    if (negative) {
        const std::size_t top_bytes = significant % 4;
        if (top_bytes) limbs.back() |= ~0u << (8 * top_bytes);  // sign-extend the top limb
        std::uint64_t carry = 1;
        for (auto& l : limbs) {
            std::uint64_t s = static_cast<std::uint64_t>(~l) + carry;
            l = static_cast<std::uint32_t>(s);
            carry = s >> 32;
        }
    }
    std::vector<std::uint32_t> chunks;  // base 1e9, least significant first
    while (!limbs.empty()) {
        std::uint64_t rem = 0;
        for (std::size_t i = limbs.size(); i-- > 0;) {
            std::uint64_t cur = (rem << 32) | limbs[i];
            limbs[i] = static_cast<std::uint32_t>(cur / 1'000'000'000u);
            rem = cur % 1'000'000'000u;
        }
        chunks.push_back(static_cast<std::uint32_t>(rem));
        while (!limbs.empty() && limbs.back() == 0) limbs.pop_back();
    }
    std::string text = negative ? "-" : "";
    text += std::to_string(chunks.back());
    for (std::size_t i = chunks.size() - 1; i-- > 0;) {
        std::string part = std::to_string(chunks[i]);
        text.append(9 - part.size(), '0');
        text += part;
    }
    v->kind = ValueKind::BigInt;
    v->text = std::move(text);
}

// Protocol 0 INT/LONG text: an optional sign and decimal digits. False when it is not that.
bool parse_decimal(std::string_view s, Value* v) {
    std::string_view digits = s;
    bool negative = false;
    if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) {
        negative = digits[0] == '-';
        digits.remove_prefix(1);
    }
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return false;
    std::int64_t value = 0;
    std::string_view body = s[0] == '+' ? s.substr(1) : s;
    auto [ptr, ec] = std::from_chars(body.data(), body.data() + body.size(), value);
    if (ec == std::errc() && ptr == body.data() + body.size()) {
        v->kind = ValueKind::Int;
        v->integer = value;
        return true;
    }
    while (digits.size() > 1 && digits[0] == '0') digits.remove_prefix(1);
    v->kind = ValueKind::BigInt;
    v->text = (negative ? "-" : "") + std::string(digits);
    return true;
}

// STRING's argument: a quoted Python 2 str literal with backslash escapes (codecs.escape_decode).
std::string escape_decode(const PickleMachine& m, std::string_view s, std::uint64_t at) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\\') {
            out += s[i];
            continue;
        }
        if (++i == s.size()) m.fail("STRING at offset " + std::to_string(at) + " ends with a lone backslash");
        const char c = s[i];
        switch (c) {
            case '\n': break;
            case '\\': case '\'': case '"': out += c; break;
            case 'a': out += '\a'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'v': out += '\v'; break;
            case 'x': {
                const int hi = i + 1 < s.size() ? hex_digit(s[i + 1]) : -1;
                const int lo = i + 2 < s.size() ? hex_digit(s[i + 2]) : -1;
                if (hi < 0 || lo < 0) m.fail("STRING at offset " + std::to_string(at) + " has an invalid \\x escape");
                out += static_cast<char>(hi * 16 + lo);
                i += 2;
                break;
            }
            default:
                if (c >= '0' && c <= '7') {
                    int v = c - '0';
                    for (int k = 0; k < 2 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7'; ++k)
                        v = v * 8 + (s[++i] - '0');
                    out += static_cast<char>(v & 0xFF);
                } else {  // Python keeps unknown escapes as written
                    out += '\\';
                    out += c;
                }
        }
    }
    return out;
}

// UNICODE's argument: raw-unicode-escape. Bytes are Latin-1 code points, and \uXXXX or
// \UXXXXXXXX are escapes only after an odd number of backslashes (CPython's decoder rule).
std::string raw_unicode_escape_decode(const PickleMachine& m, std::string_view s, std::uint64_t at) {
    std::string out;
    out.reserve(s.size());
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c != '\\') {
            append_utf8(out, c);
            ++i;
            continue;
        }
        std::size_t run = 0;
        while (i < s.size() && s[i] == '\\') {
            out += '\\';
            ++i;
            ++run;
        }
        if (run % 2 == 0 || i >= s.size() || (s[i] != 'u' && s[i] != 'U')) continue;
        out.pop_back();  // the backslash that starts the escape
        const std::size_t count = s[i] == 'u' ? 4 : 8;
        ++i;
        if (s.size() - i < count)
            m.fail("UNICODE at offset " + std::to_string(at) + " has a truncated \\u escape");
        std::uint32_t cp = 0;
        for (std::size_t k = 0; k < count; ++k) {
            const int d = hex_digit(s[i + k]);
            if (d < 0) m.fail("UNICODE at offset " + std::to_string(at) + " has an invalid \\u escape");
            cp = cp * 16 + static_cast<std::uint32_t>(d);
        }
        if (cp > 0x10FFFF) m.fail("UNICODE at offset " + std::to_string(at) + " escapes a code point past U+10FFFF");
        append_utf8(out, cp);
        i += count;
    }
    return out;
}

}  // namespace bitfsck::io::detail
