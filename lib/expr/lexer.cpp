#include "expr/lexer.h"

#include "message/time.h"

#include <fmt/format.h>

#include <charconv>
#include <cstdlib>

namespace mh::expr {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_word(char c) { return is_alpha(c) || is_digit(c); }

Token keyword(std::string_view word) {
    if (word == "and") return Token::kw_and;
    if (word == "or") return Token::kw_or;
    if (word == "not") return Token::kw_not;
    if (word == "in") return Token::kw_in;
    if (word == "like") return Token::kw_like;
    if (word == "true") return Token::kw_true;
    if (word == "false") return Token::kw_false;
    return Token::name;
}

void append_utf8(std::string& out, uint32_t code) {
    if (code < 0x80) {
        out += static_cast<char>(code);
    } else if (code < 0x800) {
        out += static_cast<char>(0xC0 | code >> 6);
        out += static_cast<char>(0x80 | (code & 0x3F));
    } else {
        out += static_cast<char>(0xE0 | code >> 12);
        out += static_cast<char>(0x80 | (code >> 6 & 0x3F));
        out += static_cast<char>(0x80 | (code & 0x3F));
    }
}

}  // namespace

std::string describe(const Lexeme& lexeme) {
    if (lexeme.token == Token::end) return "the end of the expression";
    return fmt::format("'{}'", lexeme.text);
}

bool tokenize(std::string_view text, std::vector<Lexeme>& out, LexError& error) {
    size_t pos = 0;
    auto fail = [&](size_t column, std::string message) {
        error = {column, std::move(message)};
        return false;
    };
    while (true) {
        while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\t' || text[pos] == '\n' || text[pos] == '\r'))
            ++pos;
        size_t start = pos;
        Lexeme lexeme{Token::end, start, {}, {}, 0, 0};
        if (pos >= text.size()) {
            out.push_back(std::move(lexeme));
            return true;
        }
        char c = text[pos];
        auto two = [&](char next) { return pos + 1 < text.size() && text[pos + 1] == next; };

        if (is_digit(c) || (c == '.' && pos + 1 < text.size() && is_digit(text[pos + 1]))) {
            bool is_float = false;
            while (pos < text.size() && is_digit(text[pos])) ++pos;
            if (pos < text.size() && text[pos] == '.') {
                is_float = true;
                ++pos;
                while (pos < text.size() && is_digit(text[pos])) ++pos;
            }
            if (pos < text.size() && (text[pos] == 'e' || text[pos] == 'E')) {
                size_t exp = pos + 1;
                if (exp < text.size() && (text[exp] == '+' || text[exp] == '-')) ++exp;
                if (exp < text.size() && is_digit(text[exp])) {
                    is_float = true;
                    pos = exp;
                    while (pos < text.size() && is_digit(text[pos])) ++pos;
                }
            }
            if (pos < text.size() && is_alpha(text[pos])) {
                // A duration: number-unit pairs, as in 5m or 1h30m.
                while (pos < text.size() && (is_word(text[pos]) || text[pos] == '.')) ++pos;
                lexeme.text = text.substr(start, pos - start);
                auto ns = parse_duration_ns(lexeme.text);
                if (!ns)
                    return fail(start, fmt::format("bad duration '{}': write a number and a unit "
                                                   "(ns, us, ms, s, m, h, d), as in 5m or 1h30m",
                                                   lexeme.text));
                lexeme.token = Token::duration;
                lexeme.integer = *ns;
            } else {
                lexeme.text = text.substr(start, pos - start);
                if (is_float) {
                    lexeme.token = Token::number_float;
                    lexeme.floating = std::strtod(std::string(lexeme.text).c_str(), nullptr);
                } else {
                    lexeme.token = Token::number_int;
                    auto [end, ec] = std::from_chars(lexeme.text.data(), lexeme.text.data() + lexeme.text.size(),
                                                     lexeme.integer);
                    if (ec != std::errc())
                        return fail(start, fmt::format("integer '{}' does not fit in 64 bits (write {}.0 for a float)",
                                                       lexeme.text, lexeme.text));
                }
            }
            out.push_back(std::move(lexeme));
            continue;
        }

        if (is_alpha(c)) {
            // Names may be dotted (motor.rpm), the flattened form of nested JSON.
            while (pos < text.size()) {
                if (is_word(text[pos])) {
                    ++pos;
                } else if (text[pos] == '.' && pos + 1 < text.size() && is_word(text[pos + 1])) {
                    ++pos;
                } else {
                    break;
                }
            }
            lexeme.text = text.substr(start, pos - start);
            lexeme.token = keyword(lexeme.text);
            out.push_back(std::move(lexeme));
            continue;
        }

        if (c == '"' || c == '\'') {
            char quote = c;
            ++pos;
            std::string value;
            while (true) {
                if (pos >= text.size()) return fail(start, "unterminated string: add the closing quote");
                char d = text[pos++];
                if (d == quote) break;
                if (d != '\\') {
                    value += d;
                    continue;
                }
                if (pos >= text.size()) return fail(start, "unterminated string: add the closing quote");
                char e = text[pos++];
                switch (e) {
                    case '"': value += '"'; break;
                    case '\'': value += '\''; break;
                    case '\\': value += '\\'; break;
                    case 'n': value += '\n'; break;
                    case 't': value += '\t'; break;
                    case 'r': value += '\r'; break;
                    case 'u': {
                        uint32_t code = 0;
                        if (pos + 4 > text.size() ||
                            std::from_chars(text.data() + pos, text.data() + pos + 4, code, 16).ptr != text.data() + pos + 4)
                            return fail(pos - 2, "bad escape: \\u takes four hex digits");
                        append_utf8(value, code);
                        pos += 4;
                        break;
                    }
                    default:
                        // Regular expressions keep their own escapes (\d, \.): pass them on.
                        value += '\\';
                        value += e;
                }
            }
            lexeme.token = Token::string;
            lexeme.text = text.substr(start, pos - start);
            lexeme.value = std::move(value);
            out.push_back(std::move(lexeme));
            continue;
        }

        if (c == '`') {
            size_t close = text.find('`', pos + 1);
            if (close == std::string_view::npos) return fail(start, "unterminated `name`: add the closing backquote");
            if (close == pos + 1) return fail(start, "empty `name`");
            lexeme.token = Token::quoted_name;
            lexeme.value = std::string(text.substr(pos + 1, close - pos - 1));
            pos = close + 1;
            lexeme.text = text.substr(start, pos - start);
            out.push_back(std::move(lexeme));
            continue;
        }

        size_t length = 1;
        switch (c) {
            case '(': lexeme.token = Token::lparen; break;
            case ')': lexeme.token = Token::rparen; break;
            case '[': lexeme.token = Token::lbracket; break;
            case ']': lexeme.token = Token::rbracket; break;
            case ',': lexeme.token = Token::comma; break;
            case '+': lexeme.token = Token::plus; break;
            case '-': lexeme.token = Token::minus; break;
            case '*': lexeme.token = Token::star; break;
            case '/': lexeme.token = Token::slash; break;
            case '%': lexeme.token = Token::percent; break;
            case '<':
                lexeme.token = two('=') ? Token::le : Token::lt;
                length = two('=') ? 2 : 1;
                break;
            case '>':
                lexeme.token = two('=') ? Token::ge : Token::gt;
                length = two('=') ? 2 : 1;
                break;
            case '=':
                if (two('=')) {
                    lexeme.token = Token::eq;
                } else if (two('~')) {
                    lexeme.token = Token::match;
                } else {
                    return fail(start, "a single '=' is not an operator: compare with '=='");
                }
                length = 2;
                break;
            case '!':
                if (two('=')) {
                    lexeme.token = Token::ne;
                    length = 2;
                } else if (two('~')) {
                    lexeme.token = Token::not_match;
                    length = 2;
                } else {
                    lexeme.token = Token::kw_not;
                }
                break;
            case '&':
                if (!two('&')) return fail(start, "a single '&' is not an operator: use 'and' or '&&'");
                lexeme.token = Token::kw_and;
                length = 2;
                break;
            case '|':
                if (!two('|')) return fail(start, "a single '|' is not an operator: use 'or' or '||'");
                lexeme.token = Token::kw_or;
                length = 2;
                break;
            default:
                return fail(start, fmt::format("unexpected character '{}'", c));
        }
        pos += length;
        lexeme.text = text.substr(start, length);
        out.push_back(std::move(lexeme));
    }
}

}  // namespace mh::expr
