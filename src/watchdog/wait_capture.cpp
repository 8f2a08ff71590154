// Unwinds a published wait (core::WaitContext) on the watchdog thread. The
// registers are a copy of those the interposer saved; the stack memory they
// lead to is the loop thread's own, which does not change while the context
// is held for reading: the thread is in the wait, or spins until the read
// ends before it leaves the interposer's frame.
#include "watchdog/wait_capture.hpp"

#include <dlfcn.h>
#include <sys/auxv.h>

#include <algorithm>
#include <cstring>

#include "base/thread_state.hpp"
#include "core/wait_context.hpp"

namespace stallwatch::watchdog {
namespace {

constexpr int max_frames = 64;
// The interposer's frame and the interceptors before it (the probes', a
// sanitizer's) are searched for the interposer's return address this far.
constexpr int max_interposer_frames = 4;

// Base address of the module holding addr, or null.
const void* module_base(const void* addr) {
  Dl_info info;
  if (addr == nullptr || dladdr(addr, &info) == 0) return nullptr;
  return info.dli_fbase;
}

// The shared objects whose functions stand between the application and
// libc for the same call: libstallwatch-probes and the sanitizer runtimes.
// A runtime linked into the program itself (clang's static ASan) is not
// told apart from the program's own code, and is not skipped.
struct InterceptorModules {
  const void* bases[3] = {};

  InterceptorModules() {
    const void* program = module_base(reinterpret_cast<const void*>(getauxval(AT_PHDR)));
    int n = 0;
    for (const char* marker : {"stallwatch_probes_active", "__asan_init", "__tsan_init"}) {
      const void* base = module_base(dlsym(RTLD_DEFAULT, marker));
      if (base != nullptr && base != program) bases[n++] = base;
    }
  }

  bool holds(std::uintptr_t pc) const {
    const void* base = module_base(reinterpret_cast<const void*>(pc - 1));
    return base != nullptr && std::find(std::begin(bases), std::end(bases), base) != std::end(bases);
  }
};

const InterceptorModules& interceptor_modules() {
  static const InterceptorModules modules;
  return modules;
}

// Walks the stack from registers saved in the interposer
// (core::save_unwind_registers); pcs[0] lies in the interposer, the rest are
// return addresses. Returns how many.
int unwind_from(unw_context_t& registers, std::uintptr_t* pcs, int max) {
  unw_cursor_t cursor;
  if (unw_init_local(&cursor, &registers) < 0) return 0;
  int depth = 0;
  do {
    unw_word_t ip = 0;
    if (unw_get_reg(&cursor, UNW_REG_IP, &ip) < 0 || ip == 0) break;
    pcs[depth++] = static_cast<std::uintptr_t>(ip);
  } while (depth < max && unw_step(&cursor) > 0);
  return depth;
}

// The first frame that belongs to the wait's caller: past the interposer's
// own (pcs[0]), up to its return address, then past interceptors.
int first_caller_frame(const std::uintptr_t* pcs, int depth, const void* caller_return) {
  int first = 1;
  const auto ret = reinterpret_cast<std::uintptr_t>(caller_return);
  for (int i = 1; i < std::min(depth, 1 + max_interposer_frames); ++i) {
    if (pcs[i] == ret) {
      first = i;
      break;
    }
  }
  while (first < depth && interceptor_modules().holds(pcs[first])) ++first;
  return first;
}

}  // namespace

bool unwind_published_wait(core::LoopRecord& record, std::uint64_t slice_seq, PublishedWaitStack& out) {
  core::WaitContext& wait = record.wait;
  if (!wait.begin_read()) return false;
  if (wait.slice_seq != slice_seq) {
    wait.end_read();
    return false;
  }
  unw_context_t registers;
  std::memcpy(&registers, &wait.registers, sizeof registers);
  const void* caller_return = wait.caller_return;
  const base::FiberIdentity* fiber = wait.fiber;
  out.fiber_id = fiber != nullptr ? fiber->id : 0;
  out.fiber_name.assign(fiber != nullptr && fiber->name != nullptr ? fiber->name : "",
                        fiber != nullptr && fiber->name != nullptr ? fiber->name_len : 0);
  std::uintptr_t pcs[max_frames + 1 + max_interposer_frames];
  const int depth = unwind_from(registers, pcs, static_cast<int>(std::size(pcs)));
  wait.end_read();

  // dladdr only now: the loader's lock is not taken while the thread is held.
  const int first = first_caller_frame(pcs, depth, caller_return);
  out.pcs.assign(pcs + first, pcs + std::min(depth, first + max_frames));
  return true;
}

}  // namespace stallwatch::watchdog
