// Escaping for every text stallwatch writes: log lines (text and JSON) and
// the values echoed in error messages. One set of rules, so a fiber name, a
// path or an exception message can never break a line or forge another.
// Pure functions: any thread; NOT async-signal-safe (they allocate).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace stallwatch::base {

// Appends s as a JSON string: quotes, backslash and control characters
// escaped (\uXXXX), each byte that is not valid UTF-8 as \ufffd (U+FFFD,
// the replacement character), so the line stays valid and such a byte is
// never read as a real character (\u00ff would be "ÿ").
void append_json_string(std::string& out, std::string_view s);

// Appends s in double quotes for a text line: quotes and backslashes
// escaped, control characters and bytes that are not valid UTF-8 as \xNN.
// Past max_shown bytes the rest is cut and "..." ends the quoted text.
void append_quoted(std::string& out, std::string_view s, std::size_t max_shown = std::string_view::npos);
std::string quoted(std::string_view s, std::size_t max_shown = std::string_view::npos);

// A fiber keeps at most this many bytes of the name it was spawned with,
// cut on a character boundary, so every line that shows it (stall and
// blocking-call reports, exception lines, the overflow message) shows the
// same name, and a megabyte name gives no megabyte line.
constexpr std::size_t max_fiber_name_bytes = 64;
std::string_view cut_fiber_name(std::string_view name);

// Free text for one text line: control characters (a newline above all) and
// bytes that are not valid UTF-8 as \xNN; everything else as it is.
std::string one_line(std::string_view s);

}  // namespace stallwatch::base
