#include "emit/culprit.hpp"

#include "base/text.hpp"
#include "config/module_names.hpp"

namespace stallwatch::emit {

CulpritRules default_culprit_rules() {
  return CulpritRules{
      .modules = {"libc", "libm", "libstdc++", "libgcc_s", "ld-linux-x86-64", "ld-linux-aarch64", "libpthread",
                  "libunwind", "linux-vdso", "libstallwatch", "libstallwatch-probes"},
      .path_prefixes = {"/usr/include/", "/usr/local/include/", "/usr/lib/gcc/"},
      // libcurl, libsqlite3, libpq …: the system's libraries, multiarch directories included.
      .module_dirs = {"/lib/", "/usr/lib/", "/lib64/", "/usr/lib64/"},
      // stallwatch's own templates, wherever its headers are installed.
      .path_parts = {"/include/stallwatch/"},
  };
}

CulpritRules culprit_rules(const std::vector<std::string>& not_app) {
  CulpritRules rules = default_culprit_rules();
  for (const std::string& entry : not_app) {
    (entry.starts_with('/') ? rules.path_prefixes : rules.modules).push_back(entry);
  }
  return rules;
}

namespace {

// The vDSO as libdw names it, "[vdso: 22234]" (as a file, linux-vdso.so.1).
bool is_vdso(const std::string& module) { return module.starts_with("[vdso"); }

bool belongs_to_application(const Frame& f, const CulpritRules& rules) {
  if (is_vdso(f.module)) return false;
  for (const std::string& name : rules.modules) {
    if (config::module_matches(f.module, name)) return false;
  }
  for (const std::string& dir : rules.module_dirs) {
    if (f.module_path.starts_with(dir)) return false;
  }
  for (const std::string& prefix : rules.path_prefixes) {
    if (f.file.starts_with(prefix)) return false;
  }
  for (const std::string& part : rules.path_parts) {
    if (f.file.find(part) != std::string::npos) return false;
  }
  // No module at all: an address no mapping covers (a JIT, a corrupt stack).
  return !f.module.empty();
}

}  // namespace

const Frame* find_culprit(const std::vector<Frame>& frames, const CulpritRules& rules) {
  for (const Frame& f : frames) {
    if (belongs_to_application(f, rules)) return &f;
  }
  return nullptr;
}

std::string culprit_text(const Frame* culprit) {
  if (culprit == nullptr) return "(no application frame)";
  std::string out = culprit->short_name();
  if (!culprit->file.empty()) out += " at " + culprit->file + ":" + std::to_string(culprit->line);
  return base::one_line(out);
}

void append_culprit_json(std::string& out, const Frame* culprit) {
  out += ",\"culprit\":";
  if (culprit == nullptr) {
    out += "null";
    return;
  }
  out += "{\"function\":";
  base::append_json_string(out, culprit->function);
  out += ",\"file\":";
  base::append_json_string(out, culprit->file);
  out += ",\"line\":" + std::to_string(culprit->line) + ",\"module\":";
  base::append_json_string(out, culprit->module);
  out += "}";
}

}  // namespace stallwatch::emit
