#include "symbolize/symbolizer.hpp"

#include <cxxabi.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "base/coarse_clock.hpp"

namespace stallwatch::symbolize {
namespace {

constexpr std::size_t cache_limit = 1 << 16;
// After a miss (an address no known module covers, e.g. a library dlopen'd
// since the last report) the mappings are read again, at most this often.
constexpr std::uint64_t rereport_interval_ns = 1'000'000'000;

std::string demangle(const char* name) {
  int status = 0;
  char* out = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  if (status != 0 || out == nullptr) return name;
  std::string result(out);
  std::free(out);
  return result;
}

std::string hex(const unsigned char* bytes, int len) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  s.reserve(static_cast<std::size_t>(len) * 2);
  for (int i = 0; i < len; ++i) {
    s.push_back(digits[bytes[i] >> 4]);
    s.push_back(digits[bytes[i] & 0xf]);
  }
  return s;
}

std::string base_name(const char* path) {
  if (path == nullptr) return {};
  std::string_view p(path);
  const auto slash = p.rfind('/');
  return std::string(slash == std::string_view::npos ? p : p.substr(slash + 1));
}

// Separate debug info only from this machine (/usr/lib/debug/.build-id):
// dwfl_standard_find_debuginfo would also ask debuginfod servers, which means
// loading libcurl and OpenSSL and reaching the network from a service's
// watchdog. Debug info inside the file itself is read first either way.
int find_local_debuginfo(Dwfl_Module* module, void** userdata, const char* modname, Dwarf_Addr base,
                         const char* file_name, const char* debuglink_file, GElf_Word debuglink_crc,
                         char** debuginfo_file_name) {
  return dwfl_build_id_find_debuginfo(module, userdata, modname, base, file_name, debuglink_file, debuglink_crc,
                                      debuginfo_file_name);
}

const Dwfl_Callbacks proc_callbacks = {
    .find_elf = dwfl_linux_proc_find_elf,
    .find_debuginfo = find_local_debuginfo,
    .section_address = nullptr,
    .debuginfo_path = nullptr,
};

}  // namespace

std::string normalize_path(const std::string& comp_dir, const std::string& path);

namespace {

// The name of a subprogram or inlined-subroutine DIE, demangled.
std::string die_name(Dwarf_Die* die) {
  Dwarf_Attribute attr;
  if (const char* linkage = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_linkage_name, &attr))) {
    return demangle(linkage);
  }
  const char* name = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_name, &attr));
  return name != nullptr ? name : "??";
}

// The functions inlined at lookup, innermost first, each at its position in
// the code; file/line come in as the innermost position and leave as the
// call site in the function that holds the code.
std::vector<Frame> inline_frames(Dwfl_Module* module, std::uintptr_t lookup, const Frame& base, std::string& file,
                                 int& line, std::string& comp_dir) {
  std::vector<Frame> frames;
  Dwarf_Addr bias = 0;
  Dwarf_Die* cu = dwfl_module_addrdie(module, lookup, &bias);
  if (cu == nullptr) return frames;
  Dwarf_Attribute dir_attr;
  if (const char* dir = dwarf_formstring(dwarf_attr(cu, DW_AT_comp_dir, &dir_attr))) comp_dir = dir;
  Dwarf_Die* scopes = nullptr;
  const int n = dwarf_getscopes(cu, lookup - bias, &scopes);
  Dwarf_Files* files = nullptr;
  const bool have_files = dwarf_getsrcfiles(cu, &files, nullptr) == 0;
  for (int i = 0; i < n; ++i) {
    if (dwarf_tag(&scopes[i]) != DW_TAG_inlined_subroutine) continue;
    Frame f = base;
    f.function = die_name(&scopes[i]);
    f.file = file.empty() ? std::string() : normalize_path(comp_dir, file);
    f.line = line;
    f.inlined = true;
    frames.push_back(std::move(f));
    Dwarf_Attribute attr;
    Dwarf_Word value = 0;
    if (dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_line, &attr), &value) == 0) line = static_cast<int>(value);
    if (have_files && dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_file, &attr), &value) == 0) {
      if (const char* name = dwarf_filesrc(files, value, nullptr, nullptr)) file = name;
    }
  }
  std::free(scopes);
  return frames;
}

}  // namespace

std::string normalize_path(const std::string& comp_dir, const std::string& path) {
  std::filesystem::path p(path);
  if (p.is_relative() && !comp_dir.empty()) p = std::filesystem::path(comp_dir) / p;
  return p.lexically_normal().string();
}

std::string Frame::short_name() const {
  if (!function.empty()) return function;
  char buf[32];
  std::snprintf(buf, sizeof buf, "+0x%zx", static_cast<std::size_t>(module_offset));
  return (module.empty() ? std::string("??") : module) + buf;
}

struct Symbolizer::DwflHandle {
  ::Dwfl* handle = nullptr;
  ~DwflHandle() {
    if (handle != nullptr) dwfl_end(handle);
  }
};

Symbolizer::Symbolizer() : dwfl_(std::make_unique<DwflHandle>()) {
  dwfl_->handle = dwfl_begin(&proc_callbacks);
  report_mappings();
}

Symbolizer::~Symbolizer() = default;

bool Symbolizer::report_mappings() {
  if (dwfl_->handle == nullptr) return false;
  last_report_ns_ = base::monotonic_ns();
  dwfl_report_begin(dwfl_->handle);
  const int rc = dwfl_linux_proc_report(dwfl_->handle, getpid());
  dwfl_report_end(dwfl_->handle, nullptr, nullptr);
  return rc == 0;
}

std::vector<std::uintptr_t> Symbolizer::module_starts() {
  std::vector<std::uintptr_t> starts;
  if (dwfl_->handle == nullptr) return starts;
  auto collect = [](Dwfl_Module*, void**, const char*, Dwarf_Addr start, void* arg) -> int {
    static_cast<std::vector<std::uintptr_t>*>(arg)->push_back(static_cast<std::uintptr_t>(start));
    return DWARF_CB_OK;
  };
  dwfl_getmodules(dwfl_->handle, collect, &starts, 0);
  return starts;
}

void Symbolizer::warm_up_module(std::uintptr_t start) {
  if (dwfl_->handle == nullptr) return;
  Dwfl_Module* module = dwfl_addrmodule(dwfl_->handle, start);
  if (module == nullptr) return;
  Dwarf_Addr bias = 0;
  dwfl_module_getelf(module, &bias);
  dwfl_module_getsymtab(module);
  if (dwfl_module_getdwarf(module, &bias) != nullptr) {
    // Builds the address → CU index.
    dwfl_module_addrdie(module, start, &bias);
  }
}

const std::vector<Frame>& Symbolizer::symbolize(std::uintptr_t pc, bool return_address) {
  const std::uintptr_t lookup = return_address && pc > 0 ? pc - 1 : pc;
  auto it = cache_.find(lookup);
  if (it != cache_.end()) return it->second;
  if (cache_.size() >= cache_limit) cache_.clear();
  return cache_.emplace(lookup, resolve(pc, lookup)).first->second;
}

std::vector<Frame> Symbolizer::resolve(std::uintptr_t pc, std::uintptr_t lookup) {
  Frame frame;
  frame.pc = pc;
  frame.module_offset = pc;
  if (dwfl_->handle == nullptr) return {frame};
  ::Dwfl_Module* module = dwfl_addrmodule(dwfl_->handle, lookup);
  if (module == nullptr && base::monotonic_ns() - last_report_ns_ >= rereport_interval_ns) {
    report_mappings();
    module = dwfl_addrmodule(dwfl_->handle, lookup);
  }
  if (module == nullptr) return {frame};

  Dwarf_Addr start = 0;
  const char* main_file = nullptr;
  const char* name = dwfl_module_info(module, nullptr, &start, nullptr, nullptr, nullptr, &main_file, nullptr);
  frame.module = base_name(main_file != nullptr ? main_file : name);
  frame.module_offset = pc - static_cast<std::uintptr_t>(start);

  // Loads the ELF file: the build-id is unknown until then.
  Dwarf_Addr bias = 0;
  dwfl_module_getelf(module, &bias);
  const unsigned char* id_bits = nullptr;
  GElf_Addr id_vaddr = 0;
  const int id_len = dwfl_module_build_id(module, &id_bits, &id_vaddr);
  if (id_len > 0) frame.build_id = hex(id_bits, id_len);

  GElf_Off offset = 0;
  GElf_Sym sym;
  const char* symbol = dwfl_module_addrinfo(module, lookup, &offset, &sym, nullptr, nullptr, nullptr);
  if (symbol != nullptr) frame.function = demangle(symbol);

  std::string file;
  int lineno = 0;
  if (::Dwfl_Line* line = dwfl_module_getsrc(module, lookup)) {
    const char* name = dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr);
    if (name != nullptr && lineno > 0) file = name;
  }
  std::string comp_dir;
  std::vector<Frame> frames = inline_frames(module, lookup, frame, file, lineno, comp_dir);
  if (!file.empty() && lineno > 0) {
    frame.file = normalize_path(comp_dir, file);
    frame.line = lineno;
  }
  frames.push_back(std::move(frame));
  return frames;
}

}  // namespace stallwatch::symbolize
