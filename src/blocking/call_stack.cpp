#include "blocking/call_stack.hpp"

#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <cstring>

#include "base/hash.hpp"
#include "blocking/blocking_calls.hpp"
#include "watchdog/backtrace.hpp"

namespace stallwatch::blocking {
namespace {

// The frames that tell one call site from another.
constexpr int call_site_frames = 8;

// Base address of the module holding addr, or null.
const void* module_base(const void* addr) {
  Dl_info info;
  if (addr == nullptr || dladdr(addr, &info) == 0) return nullptr;
  return info.dli_fbase;
}

const void* probes_module_base() {
  static const void* base = module_base(dlsym(RTLD_DEFAULT, "stallwatch_probes_active"));
  return base;
}

const void* shared_library_base() {
  Dl_info info;
  link_map* own = nullptr;
  if (dladdr1(reinterpret_cast<const void*>(&stallwatch_probe_record), &info, reinterpret_cast<void**>(&own),
              RTLD_DL_LINKMAP) == 0) {
    return nullptr;
  }
  link_map* program = nullptr;
  void* self = dlopen(nullptr, RTLD_LAZY | RTLD_NOLOAD);
  if (self != nullptr) {
    dlinfo(self, RTLD_DI_LINKMAP, &program);
    dlclose(self);
  }
  return own != program ? info.dli_fbase : nullptr;
}

std::string base_name(const char* path) {
  if (path == nullptr) return {};
  const char* slash = std::strrchr(path, '/');
  return slash != nullptr ? slash + 1 : path;
}

}  // namespace

const void* libstallwatch_shared_base() {
  static const void* base = shared_library_base();
  return base;
}

// The stack of the code that made the blocking call: the frames from
// `return_address` (where stallwatch_probe_record returns to) outward, minus
// the interposer's own frame in libstallwatch-probes.
CallStack capture_caller_stack(const void* return_address) {
  CallStack all;
  all.size = watchdog::backtrace_here(all.pcs, CallStack::max_frames);
  int first = 0;
  for (int i = 0; i < all.size; ++i) {
    if (all.pcs[i] == return_address) {
      first = i;
      break;
    }
  }
  const void* probes = probes_module_base();
  while (probes != nullptr && first < all.size && module_base(all.pcs[first]) == probes) ++first;
  CallStack stack;
  for (int i = first; i < all.size; ++i) stack.pcs[stack.size++] = all.pcs[i];
  return stack;
}

// libstallwatch's own calls are internal even where no base::InternalBlockingScope
// marks them: a log line written to stderr by an ending fiber, a contended
// lock of the offload pool's queue. pc: the caller's return address.
bool made_by_libstallwatch(const void* pc) {
  const void* own = libstallwatch_shared_base();
  return own != nullptr &&
         module_base(reinterpret_cast<const void*>(reinterpret_cast<std::uintptr_t>(pc) - 1)) == own;
}

std::uint64_t call_site_key(std::string_view function, const CallStack& stack) {
  base::Fnv1a hash;
  hash.add(function);
  for (int i = 0; i < std::min(stack.size, call_site_frames); ++i) {
    hash.add(reinterpret_cast<std::uintptr_t>(stack.pcs[i]));
  }
  return hash.value();
}

// The file names of the modules holding the stack's frames (dladdr: cheap,
// no debug information read), for STALLWATCH_ALLOW's function@module.
std::vector<std::string> stack_modules(const CallStack& stack) {
  std::vector<std::string> modules;
  for (int i = 0; i < stack.size; ++i) {
    Dl_info info;
    if (dladdr(reinterpret_cast<const void*>(reinterpret_cast<std::uintptr_t>(stack.pcs[i]) - 1), &info) != 0) {
      modules.push_back(base_name(info.dli_fname));
    }
  }
  return modules;
}


}  // namespace stallwatch::blocking
