#include "config/allow_list.hpp"

#include <cstdlib>

#include "base/text.hpp"
#include "config/module_names.hpp"
#include "config/probed_functions.hpp"
#include "stallwatch/errors.hpp"

namespace stallwatch::config {
namespace {

[[noreturn]] void throw_allow_error(std::string_view text, std::string_view entry, std::string_view problem) {
  std::string accepted = "*";
  for (const ProbedFunction& f : probed_functions) accepted += ", " + std::string(f.name);
  throw config_error("stallwatch: STALLWATCH_ALLOW=" + base::quoted(text) + ": entry " + base::quoted(entry) + " " +
                     std::string(problem) +
                     "; accepted: a comma-separated list of function or function@module (module: a file name "
                     "such as libcurl or libcurl.so.4), function one of: " +
                     accepted);
}

}  // namespace

std::vector<AllowEntry> parse_allow_list(std::string_view text) {
  std::vector<AllowEntry> entries;
  if (trim_blanks(text).empty()) return entries;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view entry = trim_blanks(text.substr(start, end - start));
    start = end + 1;
    if (entry.empty()) throw_allow_error(text, entry, "is empty");
    const std::size_t at = entry.find('@');
    const std::string_view function = at == std::string_view::npos ? entry : entry.substr(0, at);
    if (function.empty()) throw_allow_error(text, entry, "has no function before '@'");
    if (function != "*" && !find_probed(function)) throw_allow_error(text, entry, "names a function not probed");
    AllowEntry parsed{std::string(function), {}};
    if (at != std::string_view::npos) {
      const std::string_view module = entry.substr(at + 1);
      if (module.empty()) throw_allow_error(text, entry, "has no module after '@'");
      if (!is_module_name(module)) {
        throw_allow_error(text, entry, "has a module that is not a file name (letters, digits, . _ - +)");
      }
      parsed.module = std::string(module);
    } else if (function == "*") {
      throw_allow_error(text, entry, "allows every call everywhere: name a module (*@module)");
    }
    entries.push_back(std::move(parsed));
  }
  return entries;
}

bool allow_list_permits(const std::vector<AllowEntry>& allow, std::string_view function,
                        const std::vector<std::string>& modules) {
  for (const AllowEntry& entry : allow) {
    if (entry.function != "*" && entry.function != function) continue;
    if (entry.module.empty()) return true;
    for (const std::string& m : modules) {
      if (module_matches(m, entry.module)) {
        return true;
      }
    }
  }
  return false;
}

std::vector<AllowEntry> allow_list_from_environment() {
  const char* value = std::getenv("STALLWATCH_ALLOW");
  return parse_allow_list(value != nullptr ? value : "");
}

}  // namespace stallwatch::config
