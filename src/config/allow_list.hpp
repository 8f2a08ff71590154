// The STALLWATCH_ALLOW grammar: which probed blocking calls a service
// permits, and from which modules. Pure; any thread.
//
//   STALLWATCH_ALLOW="getaddrinfo,*@libcurl,read@libsqlite3.so.0"
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace stallwatch::config {

// One entry: `function` (a probed name, or "*" for all) made from code in
// `module` (empty: from anywhere).
struct AllowEntry {
  std::string function;
  std::string module;
  bool operator==(const AllowEntry&) const = default;
};

// Parses a STALLWATCH_ALLOW value: "function,function@module,*@module".
// Blanks around entries are ignored; an empty value allows nothing. Throws
// config_error naming the variable, the value, the bad entry and what is
// accepted.
std::vector<AllowEntry> parse_allow_list(std::string_view text);

// STALLWATCH_ALLOW from the environment, parsed (empty when unset).
std::vector<AllowEntry> allow_list_from_environment();

// True when an entry permits `function` called from a stack whose frames lie
// in the modules named (file base names such as "libcurl.so.4"). An entry's
// module matches a base name that equals it or continues it with '.'
// ("libcurl" matches "libcurl.so.4").
bool allow_list_permits(const std::vector<AllowEntry>& allow, std::string_view function,
                        const std::vector<std::string>& modules);

}  // namespace stallwatch::config
