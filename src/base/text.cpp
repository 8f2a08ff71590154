#include "base/text.hpp"

#include <cstdio>

namespace stallwatch::base {
namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0.
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t n;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  }
  return n;
}

void append_escaped_byte(std::string& out, unsigned char c, const char* format) {
  char buf[8];
  std::snprintf(buf, sizeof buf, format, c);
  out += buf;
}

// Appends s[0, limit) with control characters as `byte_format`, and each
// byte that is not valid UTF-8 as `invalid` (else as `byte_format` too);
// `specials` (if any) get a backslash before them.
void append_escaped(std::string& out, std::string_view s, std::size_t limit, const char* byte_format,
                    const char* invalid, std::string_view specials) {
  for (std::size_t i = 0; i < s.size() && i < limit;) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (specials.find(static_cast<char>(c)) != std::string_view::npos) {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
      ++i;
    } else if (c < 0x20 || c == 0x7f) {
      append_escaped_byte(out, c, byte_format);
      ++i;
    } else if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
    } else if (const std::size_t n = utf8_sequence(s, i); n > 0 && i + n <= limit) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      if (invalid != nullptr) out += invalid;
      else append_escaped_byte(out, c, byte_format);
      ++i;
    }
  }
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  // An invalid byte becomes U+REPLACEMENT CHARACTER: \u00ff would read as a real "ÿ".
  append_escaped(out, s, s.size(), "\\u%04x", "\\ufffd", "\"\\");
  out.push_back('"');
}

void append_quoted(std::string& out, std::string_view s, std::size_t max_shown) {
  out.push_back('"');
  append_escaped(out, s, max_shown, "\\x%02x", nullptr, "\"\\");
  if (s.size() > max_shown) out += "...";
  out.push_back('"');
}

std::string quoted(std::string_view s, std::size_t max_shown) {
  std::string out;
  append_quoted(out, s, max_shown);
  return out;
}

std::string_view cut_fiber_name(std::string_view name) {
  if (name.size() <= max_fiber_name_bytes) return name;
  std::size_t end = max_fiber_name_bytes;
  // Not inside a character: back up over its continuation bytes and its lead byte.
  while (end > 0 && (static_cast<unsigned char>(name[end]) & 0xc0) == 0x80) --end;
  return name.substr(0, end);
}

std::string one_line(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  append_escaped(out, s, s.size(), "\\x%02x", nullptr, {});
  return out;
}

}  // namespace stallwatch::base
