// may run in a signal handler: no malloc, locks or exceptions.
//
// The SIGSEGV/SIGBUS handler that recognises a fiber running into the guard
// page below its stack. src/stack/overflow_handler.cpp installs it.
#pragma once

#include <csignal>
#include <cstddef>
#include <cstdint>

namespace stallwatch::stack::sigsafe {

// What the handler needs, written once by the installer before the handler is
// installed and never changed after.
struct FaultChain {
  struct sigaction previous_segv;
  struct sigaction previous_bus;
  std::size_t page_size;
  std::uintptr_t canary_tripwire;  // the page a switch stores into on an overwritten canary
};
extern FaultChain fault_chain;

// SA_SIGINFO handler for SIGSEGV and SIGBUS. A fault in the page just below
// the running fiber's stack writes "stallwatch: stack overflow in fiber ..."
// to stderr, restores the default action and returns, so the faulting
// instruction faults again and the process dies by the signal (core dump
// possible). Any other fault goes to the handler installed before ours, or
// to the default action. Async-signal-safe.
// A fault counts as this overflow when it hits that page, when it hits the
// canary tripwire (a switch found the fiber's canary overwritten, see
// stack_canary.hpp), or when the interrupted stack pointer has left the
// running fiber's stack downwards (a stack without a guard page, overflowed
// until it met unmapped memory).
void on_fault(int signo, siginfo_t* info, void* ucontext);

}  // namespace stallwatch::stack::sigsafe
