// libstdc++'s per-thread exception state (__cxa_get_globals): the chain of
// exceptions being handled (std::current_exception, rethrow) and the count
// of exceptions thrown and not yet caught (std::uncaught_exceptions). Each
// fiber has its own, swapped at every switch: a fiber that parks in a
// destructor while its exception unwinds, or inside a catch block, leaves
// the others' state alone, as a thread would. (Seastar's threads do the same.)
// Loop thread; the copy is two words each way.
#pragma once

#include <cxxabi.h>

namespace stallwatch::core {

// Laid out as libstdc++'s __cxa_eh_globals (cxxabi_init_exception.h, unwind-cxx.h)
// on targets without ARM EHABI.
struct ExceptionState {
  void* caught = nullptr;     // caughtExceptions
  unsigned int uncaught = 0;  // uncaughtExceptions
};

// The calling thread's state, where libstdc++ keeps it.
inline ExceptionState* thread_exception_state() noexcept {
  return reinterpret_cast<ExceptionState*>(abi::__cxa_get_globals());
}

}  // namespace stallwatch::core
