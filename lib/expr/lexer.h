// Tokens of the expression language, with the column each starts at for error carets.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mh::expr {

enum class Token : uint8_t {
    end, number_int, number_float, duration, string, name, quoted_name,
    lparen, rparen, lbracket, rbracket, comma,
    plus, minus, star, slash, percent,
    eq, ne, lt, le, gt, ge, match, not_match,
    kw_and, kw_or, kw_not, kw_in, kw_like, kw_true, kw_false,
};

struct Lexeme {
    Token token;
    size_t column;         // byte offset of the token in the expression
    std::string_view text; // the token as written
    std::string value;     // strings and quoted names: unescaped
    int64_t integer = 0;   // integers and durations (ns)
    double floating = 0;
};

struct LexError {
    size_t column;
    std::string message;
};

// Splits `text` into lexemes ending with Token::end; the first bad token is an error.
bool tokenize(std::string_view text, std::vector<Lexeme>& out, LexError& error);

// How a token reads in an error message: 'and', '(', "end of expression", ...
std::string describe(const Lexeme& lexeme);

}  // namespace mh::expr
