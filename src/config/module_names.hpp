// Module names as STALLWATCH_ALLOW and STALLWATCH_NOT_APP write them, and
// how a list's entries are cut: one set of rules for both. Pure; any thread.
#pragma once

#include <algorithm>
#include <string_view>

namespace stallwatch::config {

// A file name such as "libcurl" or "libsqlite3.so.0": letters, digits, . _ - +.
inline bool is_module_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-' || c == '+';
  });
}

// True when a module file name such as "libcurl.so.4" is `name` or continues
// it with '.' ("libcurl" matches it, "libc" does not).
inline bool module_matches(std::string_view module, std::string_view name) {
  return module.starts_with(name) && (module.size() == name.size() || module[name.size()] == '.');
}

// s without the blanks (spaces, tabs) around it.
inline std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace stallwatch::config
