#define UNW_LOCAL_ONLY
#include "watchdog/backtrace.hpp"

#include <libunwind.h>

namespace stallwatch::watchdog {

int backtrace_here(void** pcs, int max) noexcept {
  unw_context_t context;
  unw_cursor_t cursor;
  if (unw_getcontext(&context) != 0 || unw_init_local(&cursor, &context) != 0) return 0;
  int depth = 0;
  while (depth < max && unw_step(&cursor) > 0) {
    unw_word_t ip = 0;
    if (unw_get_reg(&cursor, UNW_REG_IP, &ip) != 0 || ip == 0) break;
    pcs[depth++] = reinterpret_cast<void*>(ip);
  }
  return depth;
}

}  // namespace stallwatch::watchdog
