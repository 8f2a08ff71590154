#include "symbolize/symbolizer.hpp"

#include <cxxabi.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <link.h>
#include <sys/auxv.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
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

// A PT_LOAD segment of an object the dynamic loader mapped.
struct LoadedRange {
  std::uintptr_t low, high;
};

std::vector<LoadedRange> loaded_ranges() {
  std::vector<LoadedRange> ranges;
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* out) {
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD) continue;
          const std::uintptr_t low = info->dlpi_addr + ph.p_vaddr;
          static_cast<std::vector<LoadedRange>*>(out)->push_back({low, low + ph.p_memsz});
        }
        return 0;
      },
      &ranges);
  return ranges;
}

// /proc/self/maps with only the mappings of files the dynamic loader mapped.
// libelf maps each ELF and debug file it reads, so /proc lists libc.so.6 a
// second time, libdw's own copy; reported as it is, libdw may take that copy
// for the module's start and give every frame in it the wrong offset (seen:
// every libc frame unnamed after a second symbolizer or a re-report).
std::string loaded_mappings() {
  const std::vector<LoadedRange> loaded = loaded_ranges();
  std::FILE* maps = std::fopen("/proc/self/maps", "re");
  if (maps == nullptr) return {};
  std::string kept;
  char* line = nullptr;
  std::size_t capacity = 0;
  while (getline(&line, &capacity, maps) > 0) {
    unsigned long low = 0, high = 0;
    if (std::sscanf(line, "%lx-%lx", &low, &high) != 2) continue;
    const bool from_loader = std::any_of(loaded.begin(), loaded.end(), [&](const LoadedRange& r) {
      return r.low < high && low < r.high;
    });
    if (from_loader) kept += line;
  }
  std::free(line);
  std::fclose(maps);
  return kept;
}

// The vDSO's extent: its ELF header's program headers, as mapped.
std::uintptr_t vdso_size(std::uintptr_t base) {
  const auto* header = reinterpret_cast<const ElfW(Ehdr)*>(base);
  const auto* ph = reinterpret_cast<const ElfW(Phdr)*>(base + header->e_phoff);
  std::uintptr_t end = 0;
  for (int i = 0; i < header->e_phnum; ++i) {
    if (ph[i].p_type == PT_LOAD) end = std::max<std::uintptr_t>(end, ph[i].p_vaddr + ph[i].p_memsz);
  }
  return end;
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

// A function DIE's linkage (mangled) name, found on the DIE or on the DIEs it
// refers to (abstract origin, specification); null when none has one.
const char* linkage_name(Dwarf_Die* die) {
  Dwarf_Attribute attr;
  const char* name = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_linkage_name, &attr));
  return name != nullptr ? name : dwarf_formstring(dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &attr));
}

// A function DIE's DW_AT_name, found as linkage_name is; null when none has one.
const char* plain_name(Dwarf_Die* die) {
  Dwarf_Attribute attr;
  return dwarf_formstring(dwarf_attr_integrate(die, DW_AT_name, &attr));
}

// Whether the CU's language mangles its function names (C++ and its kin).
// Elsewhere (C, assembly) the plain name is the linkage name, as addr2line
// takes it.
bool mangles_names(Dwarf_Die* cu) {
  switch (dwarf_srclang(cu)) {
    case DW_LANG_C_plus_plus:
    case DW_LANG_C_plus_plus_03:
    case DW_LANG_C_plus_plus_11:
    case DW_LANG_C_plus_plus_14:
    case DW_LANG_ObjC_plus_plus:
    case DW_LANG_D:
    case DW_LANG_Rust:
      return true;
    default:
      return false;
  }
}

bool is_function(Dwarf_Die* die) {
  const int tag = dwarf_tag(die);
  return tag == DW_TAG_subprogram || tag == DW_TAG_inlined_subroutine || tag == DW_TAG_entry_point;
}

// The function DIEs that hold lookup, innermost first: each inlined
// subroutine, then the subprogram whose code it is. dwarf_getscopes alone
// stops at the innermost inlined subroutine and continues with the scopes of
// its abstract definition (where it was written, not where it was inlined);
// dwarf_getscopes_die on that DIE gives the chain of the concrete code, as
// elfutils' addr2line -i does.
std::vector<Dwarf_Die> function_chain(Dwarf_Die* cu, Dwarf_Addr address) {
  std::vector<Dwarf_Die> chain;
  Dwarf_Die* scopes = nullptr;
  const int n = dwarf_getscopes(cu, address, &scopes);
  if (n <= 0) return chain;
  Dwarf_Die innermost = scopes[0];
  std::free(scopes);
  scopes = nullptr;
  const int depth = dwarf_getscopes_die(&innermost, &scopes);
  for (int i = 0; i < depth; ++i) {
    if (!is_function(&scopes[i])) continue;
    chain.push_back(scopes[i]);
    if (dwarf_tag(&scopes[i]) != DW_TAG_inlined_subroutine) break;
  }
  std::free(scopes);
  return chain;
}

// Where an inlined subroutine was called from (DW_AT_call_file/call_line),
// as the file of the CU's line table; false when the DIE does not say.
bool call_site(Dwarf_Die* inlined, Dwarf_Files* files, std::string& file, int& line) {
  Dwarf_Attribute attr;
  Dwarf_Word value = 0;
  file.clear();
  line = 0;
  if (files != nullptr && dwarf_formudata(dwarf_attr(inlined, DW_AT_call_file, &attr), &value) == 0) {
    if (const char* name = dwarf_filesrc(files, value, nullptr, nullptr)) file = name;
  }
  if (dwarf_formudata(dwarf_attr(inlined, DW_AT_call_line, &attr), &value) == 0) line = static_cast<int>(value);
  return !file.empty();
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
  const std::string maps = loaded_mappings();
  FILE* lines = fmemopen(const_cast<char*>(maps.data()), maps.size(), "r");
  if (lines == nullptr) return false;
  dwfl_report_begin(dwfl_->handle);
  int rc = dwfl_linux_proc_maps_report(dwfl_->handle, lines);
  std::fclose(lines);
  // The vDSO has no file: libdw reads it from memory under this name.
  const auto vdso = static_cast<std::uintptr_t>(getauxval(AT_SYSINFO_EHDR));
  if (rc == 0 && vdso != 0) {
    const std::string name = "[vdso: " + std::to_string(getpid()) + "]";
    dwfl_report_module(dwfl_->handle, name.c_str(), vdso, vdso + vdso_size(vdso));
  }
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
  frame.module_path = main_file != nullptr ? main_file : (name != nullptr ? name : "");
  frame.module = base_name(frame.module_path.c_str());
  frame.module_offset = pc - static_cast<std::uintptr_t>(start);

  // Loads the ELF file: the build-id is unknown until then.
  Dwarf_Addr elf_bias = 0;
  dwfl_module_getelf(module, &elf_bias);
  const unsigned char* id_bits = nullptr;
  GElf_Addr id_vaddr = 0;
  const int id_len = dwfl_module_build_id(module, &id_bits, &id_vaddr);
  if (id_len > 0) frame.build_id = hex(id_bits, id_len);

  GElf_Off offset = 0;
  GElf_Sym sym;
  const char* symbol = dwfl_module_addrinfo(module, lookup, &offset, &sym, nullptr, nullptr, nullptr);

  // The innermost position, from the line table.
  std::string file;
  int line = 0;
  if (::Dwfl_Line* row = dwfl_module_getsrc(module, lookup)) {
    const char* source = dwfl_lineinfo(row, nullptr, &line, nullptr, nullptr, nullptr);
    if (source != nullptr && line > 0) file = source;
  }
  std::string comp_dir;
  std::vector<Dwarf_Die> chain;
  Dwarf_Files* files = nullptr;
  bool mangled = true;
  Dwarf_Addr bias = 0;
  if (Dwarf_Die* cu = dwfl_module_addrdie(module, lookup, &bias)) {
    mangled = mangles_names(cu);
    Dwarf_Attribute attr;
    if (const char* dir = dwarf_formstring(dwarf_attr(cu, DW_AT_comp_dir, &attr))) comp_dir = dir;
    if (dwarf_getsrcfiles(cu, &files, nullptr) != 0) files = nullptr;
    chain = function_chain(cu, lookup - bias);
  }

  // One frame per function of the chain, each at its position: the
  // innermost at the line-table row, every outer one at the call into the
  // level inside it. Names as addr2line -f -i -C gives them: the innermost
  // by its linkage name, else by the ELF symbol covering the address; the
  // outer levels by linkage name, else DW_AT_name. (A lambda's operator()
  // has no linkage name in GCC's DWARF: inlined innermost, it is named by
  // the function it was inlined into, at the lambda's own line.)
  std::vector<Frame> frames;
  for (std::size_t i = 0; i < chain.size(); ++i) {
    Frame f = frame;
    const char* linkage = linkage_name(&chain[i]);
    if (linkage == nullptr && !mangled) linkage = plain_name(&chain[i]);
    const char* function = linkage;
    if (function == nullptr) function = i == 0 && symbol != nullptr ? symbol : plain_name(&chain[i]);
    f.function = function != nullptr ? demangle(function) : std::string("??");
    if (!file.empty() && line > 0) {
      f.file = normalize_path(comp_dir, file);
      f.line = line;
    }
    f.inlined = dwarf_tag(&chain[i]) == DW_TAG_inlined_subroutine;
    frames.push_back(std::move(f));
    if (frames.back().inlined && !call_site(&chain[i], files, file, line)) line = 0;
  }
  if (frames.empty()) {
    // No DWARF for this code: the ELF symbol, and the line table if it has a row.
    if (symbol != nullptr) frame.function = demangle(symbol);
    if (!file.empty() && line > 0) {
      frame.file = normalize_path(comp_dir, file);
      frame.line = line;
    }
    frames.push_back(std::move(frame));
  }
  return frames;
}

}  // namespace stallwatch::symbolize
